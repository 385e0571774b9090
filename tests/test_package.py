"""The package works without the checkout: a wheel built from the repository, installed into a fresh
virtual environment, gives the console command ``hf-segcompare`` (every verb's --help runs), trains
through ``hf-segcompare train`` (accelerate's launcher running ``python -m hf_segcompare.cli.run_seg``,
as experiments launch it, tests/test_experiments.py) and compares through ``hf-segcompare compare``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from .conftest import REPO_ROOT, script_env

# Run by the fresh venv's Python: the console script's function (from the wheel's entry points) with VERB --help.
HELP_OF_EACH_VERB = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
(main,) = [point.load() for point in entry_points(group="console_scripts") if point.name == "hf-segcompare"]
answers = []
for verb in sys.argv[1:]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            status = main([verb, "--help"])
        except SystemExit as stop:
            status = stop.code or 0
    answers.append((status, printed.getvalue()))
print(json.dumps(answers))
"""


def _build_wheel(folder: Path) -> Path:
    """The wheel of a copy of the checkout: setuptools builds in the source tree, whose leftover build/
    would otherwise stay in the checkout (and could carry files deleted since into a later wheel)."""
    source = folder / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "outputs", "*.egg-info", "__pycache__", ".pytest_cache", "model_cards", "bench"))
    # No build isolation: the setuptools of this environment builds it, with nothing downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(folder), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = folder.glob("hf_segcompare-*.whl")
    return wheel


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment that sees this one's dependencies (a path in a .pth file: the
    directory is added, its own .pth files, the checkout's editable install among them, are not read)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_a_wheel_installed_outside_the_checkout_gives_the_command_that_trains_and_compares(voc_tree, tmp_path):
    from hf_segcompare.cli.main import VERBS

    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    for packaged in ("hf_segcompare/report/templates/model_card.md", "hf_segcompare/report/templates/comparison.md",
                     "hf_segcompare/evaluation/evaluate_modules/mean_iou.py", "hf_segcompare/cli/run_seg.py"):
        assert packaged in names, packaged
    assert not [name for name in names if name.startswith(("tests/", "scripts/", "bench/"))]
    assert "hf-segcompare = hf_segcompare.cli.main:main" in entry_points

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in script_env(work).items() if key != "PYTHONPATH"}

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(tmp_path / "venv" / "bin" / "hf-segcompare"), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)

    version = command("--version")
    assert version.returncode == 0 and f"from {tmp_path / 'venv'}" in version.stdout, version.stdout + version.stderr
    top = command("--help")
    assert top.returncode == 0 and top.stdout.startswith("usage: hf-segcompare VERB"), top.stderr[-2000:]
    # Each verb's --help through the installed entry point's own function, in one interpreter (one start-up
    # instead of seven): the status and the usage line of each.
    helps = subprocess.run([str(python), "-c", HELP_OF_EACH_VERB, *VERBS], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
    assert helps.returncode == 0, helps.stderr[-3000:]
    for verb, (status, printed) in zip(VERBS, json.loads(helps.stdout.splitlines()[-1])):
        assert status == 0 and f"usage: hf-segcompare {verb}" in printed and "--help" in printed, (verb, printed[:300])

    output_dir = work / "out"
    completed = command("train", "--launch", "--num_processes 1 --num_machines 1 --mixed_precision no "
                        "--dynamo_backend no", "--model", "segformer-tiny", "--from_scratch", "--recipe", "demo",
                        "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir", str(output_dir),
                        "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"results: {output_dir / 'results.json'}" in completed.stdout
    results = json.loads((output_dir / "results.json").read_text())
    assert results["status"] == "complete" and results["train"]["steps"] == 2
    assert "## Results" in (output_dir / "README.md").read_text()  # the card, from the wheel's template
    # bad input found only inside the launched run: its one line and its status 2 come back, not the launcher's 1
    refused = command("train", "--model", "segformer-tiny", "--from_scratch", "--dataset_name", "voc",
                      "--data_dir", str(work / "nowhere"), "--output_dir", str(work / "other"))
    assert refused.returncode == 2 and refused.stderr.rstrip().splitlines()[-1].startswith(
        f"error: VOC data {work / 'nowhere'} does not exist"), refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr

    compared = command("compare", str(output_dir), "--output_dir", str(work / "page"))
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (work / "page" / "comparison.md").is_file()

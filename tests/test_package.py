"""The package works without the checkout: a wheel built from the repository, installed into a fresh
virtual environment, trains through ``python -m hf_segcompare.cli.run_seg`` (what ``accelerate launch
-m`` runs in each process; experiments launch it so, tests/test_experiments.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from .conftest import REPO_ROOT, script_env


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


def test_a_wheel_installed_outside_the_checkout_trains_through_python_m(voc_tree, tmp_path):
    wheel = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in ("hf_segcompare/report/templates/model_card.md", "hf_segcompare/report/templates/comparison.md",
                     "hf_segcompare/evaluation/evaluate_modules/mean_iou.py", "hf_segcompare/cli/run_seg.py"):
        assert packaged in names, packaged
    assert not [name for name in names if name.startswith(("tests/", "scripts/", "bench/"))]

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in script_env(work).items() if key != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import hf_segcompare; print(hf_segcompare.__file__)"], cwd=work,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where  # the wheel's copy, not the checkout's

    output_dir = work / "out"
    completed = subprocess.run(
        [str(python), "-m", "hf_segcompare.cli.run_seg",
         "--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
         "--data_dir", str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--save_strategy", "no"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["status"] == "complete" and results["train"]["steps"] == 2
    assert "## Results" in (output_dir / "README.md").read_text()  # the card, from the wheel's template

    compared = subprocess.run([str(python), "-m", "hf_segcompare.cli.compare", str(output_dir), "--output_dir",
                               str(work / "page")], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (work / "page" / "comparison.md").is_file()

"""The README and docs/: the Python snippet runs as written, every command uses the project's venv,
every link and linked image is tracked, and the README stays a front page."""

from __future__ import annotations

import re

from .conftest import REPO_ROOT


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):readme.index("## Reference")]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "from_recipe(" in snippet and "parse_args" not in snippet
    monkeypatch.chdir(tmp_path)  # it writes outputs/api where it runs
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme_snippet"})
    printed = capsys.readouterr().out
    miou = float(re.search(r"mean IoU after 10 steps: ([0-9.]+)", printed).group(1))
    assert 0.0 <= miou <= 1.0
    assert (tmp_path / "outputs" / "api").is_dir()


def _shell_commands(readme: str) -> list[str]:
    """Every command of the README: the lines of its ```bash blocks (continuations joined) and the
    inline code that runs a script or a tool of the project."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.strip().startswith("#"):
                commands.append(command.strip())
    for code in re.findall(r"`([^`\n]+)`", readme):
        runs_something = re.search(r"scripts/|bench/|-c |-m ", code)
        if runs_something and re.match(r"(\S+=\S+ )?(python|accelerate|\.venv/bin/)", code):
            commands.append(code)
    return commands


def test_every_readme_command_runs_in_the_venv_its_set_up_creates():
    """A bare `python` or `accelerate` is not the project's: it fails with ModuleNotFoundError."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    commands = [command for page in pages for command in _shell_commands(page.read_text())]
    assert len(commands) > 20
    for command in commands:
        for part in command.split("&&"):
            program = [word for word in part.split() if "=" not in word][0]
            assert program.startswith(".venv/bin/") or part.split()[:3] == ["python3", "-m", "venv"] or \
                program == "curl", command


def test_the_quick_start_run_twice_is_quiet(tmp_path):
    """As the README runs it (tiny model, few steps): accelerate configured by `accelerate config default`,
    then the same launch twice. Nothing in either output reads as a failure."""
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import script_env

    accelerate = str(Path(sys.executable).parent / "accelerate")
    env = script_env(tmp_path)
    subprocess.run([accelerate, "config", "default"], cwd=tmp_path, env=env, check=True, capture_output=True)
    outputs = []
    for _ in range(2):
        completed = subprocess.run([accelerate, "launch", str(REPO_ROOT / "scripts" / "run_seg.py"), "--model",
                                    "segformer-tiny", "--from_scratch", "--max_steps", "6"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr[-3000:]
        outputs.append(completed.stdout + completed.stderr)
    assert "nothing left to train" in outputs[1]
    for output in outputs:
        for noise in ("missing keys", "unexpected keys", "Traceback", "were not passed to `accelerate launch`",
                      "mtime may not be reliable"):
            assert noise not in output, noise


def _tracked() -> set[str]:
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(listed.stdout.splitlines())


def _relative_links(page) -> list[str]:
    """The targets of a markdown page's links and images that are files of this repository."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [target.split("#")[0] for target in targets
            if not target.startswith(("http://", "https://", "#", "mailto:")) and target.split("#")[0]]


def test_every_link_and_linked_image_is_tracked_by_git():
    """The README's and docs/' relative links, and every image a committed card or page shows, are
    files git tracks: a clone shows no broken image (a .gitignore pattern once hid two)."""
    tracked = _tracked()
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
             *sorted(REPO_ROOT.glob("model_cards/**/*.md"))]
    broken = []
    for page in pages:
        if str(page.relative_to(REPO_ROOT)) not in tracked:
            continue  # written by a run into a folder git ignores
        for target in _relative_links(page):
            path = (page.parent / target).resolve().relative_to(REPO_ROOT)
            if str(path) not in tracked:
                broken.append(f"{page.relative_to(REPO_ROOT)} -> {target}")
    assert not broken, broken
    assert any(name.endswith("comparison/miou_vs_flops.png") for name in tracked)


def test_the_readme_is_a_front_page_and_links_every_reference_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 260
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name}" in readme, page.name


def test_the_benchmark_tables_are_what_bench_report_renders_from_the_committed_json():
    """Every marked table of the README and docs/benchmarks.md is bench/report.py's rendering of the
    JSON in bench/results/: a figure typed by hand, or a JSON committed without its tables, fails."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report", REPO_ROOT / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    rendered = report.tables()
    assert {"eval", "eval-summary", "train", "padding", "bootstrap"} <= set(rendered)
    readme = (REPO_ROOT / "README.md").read_text()
    assert "<!-- bench:eval-summary -->" in readme and "`--protocol mmseg`" in rendered["eval-summary"]
    for page in report.PAGES:
        text = (REPO_ROOT / page).read_text()
        assert report.render_page(text, rendered) == text, (
            f"{page}'s benchmark tables differ from bench/results/: run .venv/bin/python bench/report.py --write "
            f"{' '.join(report.PAGES)}")
    # The check can fail: a figure changed by hand is put back.
    tampered = readme.replace("| `--protocol native` | **", "| `--protocol native` | **9")
    assert tampered != readme and report.render_page(tampered, rendered) == readme

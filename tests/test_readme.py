"""The README's Python snippet runs as written, and uses a recipe without parse_args."""

from __future__ import annotations

import re

from .conftest import REPO_ROOT


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):readme.index("## Running")]
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
    commands = _shell_commands((REPO_ROOT / "README.md").read_text())
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

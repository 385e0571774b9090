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

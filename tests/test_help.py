"""Every command's --help prints its usage and exits 0: the first thing a new user types (a bare
percent sign in an argparse help string makes --help crash with a TypeError)."""

from __future__ import annotations

import pytest

from .conftest import REPO_ROOT, run_script_in_process

# HfArgumentParser builds run_seg.py's help from the dataclasses: a library surface, so in the fast subset too.
pytestmark = pytest.mark.fast

COMMANDS = sorted(path.name for path in (REPO_ROOT / "scripts").glob("*.py"))


def test_every_command_is_tested():
    assert {"run_seg.py", "run_experiment.py", "compare.py", "push.py", "predict.py", "export.py"} <= set(COMMANDS)


@pytest.mark.parametrize("script", COMMANDS)
def test_help_prints_the_usage_and_exits_0(script, capsys):
    with pytest.raises(SystemExit) as exited:
        run_script_in_process(REPO_ROOT / "scripts" / script, ["--help"], capsys)
    assert exited.value.code in (0, None)
    printed = capsys.readouterr().out
    assert printed.startswith("usage:") and "--help" in printed


@pytest.mark.parametrize("script", COMMANDS)
def test_help_as_python_m_prints_the_usage_and_exits_0(script, capsys, monkeypatch):
    """`python -m hf_segcompare.cli.NAME --help`: the installed package's commands, without the checkout."""
    import runpy
    import sys
    import warnings

    module = f"hf_segcompare.cli.{script.removesuffix('.py')}"
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exited, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before, by the other test
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exited.value.code in (0, None)
    printed = capsys.readouterr().out
    assert printed.startswith("usage:") and "--help" in printed

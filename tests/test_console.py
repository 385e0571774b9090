"""The one console command, ``hf-segcompare VERB``: dispatch and its mistakes, in this process (the
command as a wheel installs it, every verb's --help and a launched run: tests/test_package.py)."""

from __future__ import annotations

import pytest

from hf_segcompare.cli.main import LAUNCH_OPTION, VERBS, main
from hf_segcompare.config.option_names import known_options
from hf_segcompare.models import list_models

pytestmark = pytest.mark.fast  # in this process, the registry only: seconds


def test_bare_command_prints_the_verbs_and_exits_2(capsys):
    assert main([]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("usage: hf-segcompare VERB") and all(f"\n  {verb} " in printed for verb in VERBS)


def test_an_unknown_verb_is_one_line_with_the_nearest(capsys):
    assert main(["trian", "--model", "unet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: hf-segcompare: no verb 'trian' (did you mean train?)") and error.count("\n") == 1


def test_train_refuses_a_mistyped_option_before_launching_anything(capsys, monkeypatch):
    import accelerate.commands.launch as accelerate_launch

    def no_launch(*args, **kwargs):
        raise AssertionError("nothing may be launched for a mistyped option")

    monkeypatch.setattr(accelerate_launch, "launch_command", no_launch)
    assert main(["train", "--launch", "--num_processes 2", "--model", "segformer-b0", "--num_train_epoch", "1"]) == 2
    assert "--num_train_epoch (did you mean --num_train_epochs?)" in capsys.readouterr().err
    assert main(["train", "--model", "segformer-b0", LAUNCH_OPTION]) == 2
    assert f"{LAUNCH_OPTION} needs a value" in capsys.readouterr().err
    # accelerate's own options, checked before its launcher would print its whole usage
    for launch, said in (("--bogus 3", "accelerate launch has no option --bogus"),
                         ("--num_processes x", "invalid int value: 'x'")):
        assert main(["train", LAUNCH_OPTION, launch, "--model", "segformer-b0"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: {LAUNCH_OPTION} '{launch}': ") and said in error and error.count("\n") == 1


def test_the_launch_option_is_no_run_option():
    """``--launch`` is taken out of train's arguments: no run option may ever have that name."""
    assert LAUNCH_OPTION[2:] not in known_options()


def test_models_lists_every_registered_model_with_its_family(capsys):
    assert main(["models", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models(include_test_variants=True)
    assert all(line.split()[1] in ("cnn", "transformer") for line in lines)
    assert main(["models"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list_models()

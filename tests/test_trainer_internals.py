"""The private Trainer methods SegTrainer overrides are checked against the installed transformers,
and the #43701 resume workaround reloads nothing where the checkpoint holds the model's own names."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import Trainer

from hf_segcompare.engine import trainer as trainer_module
from hf_segcompare.engine.trainer_internals import (
    CALLED,
    OVERRIDDEN,
    check_trainer_internals,
    saved_under_model_names,
)
from hf_segcompare.errors import IncompatibleTransformers
from hf_segcompare.models import create_model

from .conftest import run_seg_in_process

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


def test_the_installed_transformers_has_every_overridden_method_as_expected():
    import inspect

    from hf_segcompare.engine import divergence, exact_resume

    check_trainer_internals()
    assert {"_load_from_checkpoint", "_maybe_log_save_evaluate", "_save_checkpoint", "_load_best_model",
            "evaluate", "prediction_step"} <= set(OVERRIDDEN)
    overridden = {name for cls in trainer_module.SegTrainer.__mro__ if cls is not Trainer and issubclass(cls, object)
                  and cls.__module__.startswith("hf_segcompare") for name in vars(cls)}
    for name in OVERRIDDEN:  # SegTrainer (or one of its mixins) does override each one it checks
        assert name in overridden, name
    # every private Trainer method the package overrides or calls is one it checks
    code = "".join(inspect.getsource(module) for module in (trainer_module, divergence, exact_resume))
    relied_on = {name for name in dir(Trainer) if name.startswith("_") and not name.startswith("__")
                 and (f"def {name}(" in code or f"self.{name}(" in code or f"super().{name}(" in code)}
    assert relied_on <= set(OVERRIDDEN) | set(CALLED), relied_on - set(OVERRIDDEN) - set(CALLED)


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and f"transformers {transformers.__version__}:" in message
    return message


def test_a_changed_signature_a_removed_method_and_a_method_no_longer_called_each_stop_with_one_line():
    class Changed(Trainer):
        def _save_checkpoint(self, checkpoint_folder, model, trial):  # a new first parameter
            pass

    with pytest.raises(IncompatibleTransformers) as error:
        check_trainer_internals(Changed)
    message = _one_line(error)
    assert "Trainer._save_checkpoint takes (checkpoint_folder, model, trial)" in message
    assert "expects (model, trial) first" in message and "whole, finite checkpoints" in message

    class Removed(Trainer):
        _load_best_model = None

    with pytest.raises(IncompatibleTransformers, match="Trainer._load_best_model no longer exists") as error:
        check_trainer_internals(Removed)
    _one_line(error)

    with pytest.raises(IncompatibleTransformers, match="Trainer no longer calls _load_from_checkpoint") as error:
        check_trainer_internals(Trainer, source="def train(self): pass")
    _one_line(error)

    class Renamed(Trainer):
        _get_output_dir = None

    with pytest.raises(IncompatibleTransformers, match="Trainer._get_output_dir no longer exists") as error:
        check_trainer_internals(Renamed)
    _one_line(error)

    calls = " ".join(f"self.{name}(" for name in OVERRIDDEN)
    with pytest.raises(IncompatibleTransformers, match="Trainer no longer reads model_accepts_loss_kwargs"):
        check_trainer_internals(Trainer, source=calls)

    class Barless:  # a ProgressCallback that keeps its bars under other names
        def __init__(self):
            self.train_bar = None

    with pytest.raises(IncompatibleTransformers, match="ProgressCallback no longer keeps training_bar, prediction_bar"):
        check_trainer_internals(Trainer, progress_callback=Barless)


def test_a_changed_private_method_stops_the_command_before_anything_is_written(voc_tree, tmp_path, monkeypatch,
                                                                               capsys):
    def renamed_parameters(self, loss, norm, model, trial, epoch, ignore_keys_for_eval, start_time,
                           learning_rate=None):
        pass

    monkeypatch.setattr(Trainer, "_maybe_log_save_evaluate", renamed_parameters)
    output = tmp_path / "run"
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output), "--max_steps", "1"], capsys)
    assert status == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: transformers {transformers.__version__}: Trainer._maybe_log_save_evaluate "
                           "takes (loss, norm, ") and "the divergence stop" in last
    assert "Traceback" not in stderr and not (output / "results.json").exists()
    assert not output.exists() or not list(output.glob("checkpoint-*"))


@pytest.mark.parametrize("name", ["unet-tiny", "segformer-tiny"])
def test_the_resume_workaround_reloads_only_a_checkpoint_saved_under_other_names(tmp_path, monkeypatch, name):
    """smp's U-Net saves its own weight names: Trainer's load restores it whole and the #43701 reload
    is not run. transformers 5.24 saves SegFormer under legacy names: the reload runs and restores it
    (a release that saves its own names, as 5.2 did, skips the reload for SegFormer too)."""
    from hf_segcompare.config.arguments import from_recipe
    from hf_segcompare.engine.trainer import SegTrainer

    torch.manual_seed(0)
    saved = create_model(name)
    saved.save_pretrained(tmp_path / "checkpoint")
    own_names = saved_under_model_names(saved, tmp_path / "checkpoint")
    if name == "unet-tiny" or transformers.__version__ == "5.24.0":  # the cases this suite was written on
        assert own_names is (name == "unet-tiny")

    torch.manual_seed(1)  # other weights, to be overwritten by the resume
    model = create_model(name)
    args = from_recipe(name, "demo", output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
                       eval_strategy="no")
    trainer = SegTrainer(model, args, None, None)
    reloads = []
    from hf_segcompare.engine import exact_resume

    original = exact_resume.restore_checkpoint_weights
    monkeypatch.setattr(exact_resume, "restore_checkpoint_weights",
                        lambda *a, **k: (reloads.append(a[1]), original(*a, **k)))
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint"))
    assert len(reloads) == (0 if own_names else 1)
    expected, restored = saved.state_dict(), model.state_dict()
    assert set(expected) == set(restored)
    assert all(torch.equal(expected[key], restored[key]) for key in expected)

"""The `Trainer` internals `SegTrainer` relies on, checked against the installed transformers.

Four of the toolkit's guarantees hang on private `Trainer` methods: exact resume
(``_load_from_checkpoint``, transformers issue #43701), the divergence stop
(``_maybe_log_save_evaluate``), whole and finite checkpoints (``_save_checkpoint``, which asks
``_get_output_dir`` where the checkpoint goes) and the published best model (``_load_best_model``).
It also overrides public methods whose parameters it takes by position (``evaluate``,
``prediction_step``, ``training_step``, ``compute_loss``), sets one attribute Trainer reads
(``model_accepts_loss_kwargs``) and closes the progress bars `ProgressCallback` keeps (its
``training_bar`` and ``prediction_bar``). A transformers release may rename one, change what it
takes, or stop using it; the override would then break with a stack trace from deep inside
Trainer, or, worse, never run, and the guarantee would be gone without a word.
`check_trainer_internals` runs when a `SegTrainer` is built and stops with one line naming the
installed transformers and what to do instead.

It also answers whether the #43701 workaround is needed for a checkpoint: `saved_under_model_names`
is true when the checkpoint's weight names are the model's own, which Trainer's plain
``load_state_dict`` then loads whole (the smp adapters always; SegFormer and ViT once transformers
saves or converts their names itself), so `SegTrainer` reloads nothing.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import transformers
from safetensors import safe_open
from transformers import ProgressCallback, Trainer

from ..errors import IncompatibleTransformers

# name -> (the parameters SegTrainer relies on, in order after self; what the override guarantees).
# Each must exist, take those parameters first, and still be called by Trainer's code.
OVERRIDDEN = {
    "_load_from_checkpoint": (("resume_from_checkpoint", "model"), "exact resume (transformers issue #43701)"),
    "_maybe_log_save_evaluate": (("tr_loss", "grad_norm"), "the divergence stop"),
    "_save_checkpoint": (("model", "trial"), "whole, finite checkpoints"),
    "_load_best_model": ((), "the published best model's weights checked"),
    "evaluate": (("eval_dataset", "ignore_keys", "metric_key_prefix"), "each evaluation's per-image counts"),
    "prediction_step": (("model", "inputs", "prediction_loss_only", "ignore_keys"), "the evaluation protocols"),
    "training_step": (("model", "inputs", "num_items_in_batch"), "the divergence stop"),
    "compute_loss": (("model", "inputs", "return_outputs", "num_items_in_batch"), "the chosen loss"),
}
# Private methods SegTrainer calls: each must exist and take these parameters first.
CALLED = {"_get_output_dir": (("trial",), "whole checkpoints (where a failed one is removed from)")}
# Attributes: set on the trainer and read by Trainer's code; kept by ProgressCallback, closed before an error line.
TRAINER_ATTRIBUTES = {"model_accepts_loss_kwargs": "the loss averaged over accumulation steps"}
PROGRESS_BARS = ("training_bar", "prediction_bar")


@functools.lru_cache(maxsize=None)
def _module_source(trainer_class: type) -> str:
    return inspect.getsource(inspect.getmodule(trainer_class))


def check_trainer_internals(trainer_class: type = Trainer, source: str | None = None,
                            progress_callback: type = ProgressCallback) -> None:
    """Stop unless every method in `OVERRIDDEN` and `CALLED` exists on `trainer_class` and takes the
    parameters `SegTrainer` relies on first, every overridden one is still called by Trainer's code
    (`source`: that code; default: the module of transformers' `Trainer`), Trainer still reads the
    attributes of `TRAINER_ATTRIBUTES`, and `progress_callback` still keeps its bars as `PROGRESS_BARS`.

    Raises:
        IncompatibleTransformers: one line naming the transformers version, what changed and the way out.
    """
    source = _module_source(Trainer) if source is None else source
    for name, (parameters, guarantee) in {**OVERRIDDEN, **CALLED}.items():
        problem = _method_problem(trainer_class, name, parameters)
        if problem is None and name in OVERRIDDEN and f"self.{name}(" not in source:
            problem = f"Trainer no longer calls {name}"
        if problem is not None:
            raise _incompatible(problem, guarantee)
    for name, guarantee in TRAINER_ATTRIBUTES.items():
        if f"self.{name}" not in source:
            raise _incompatible(f"Trainer no longer reads {name}", guarantee)
    bars = vars(progress_callback())
    missing = [name for name in PROGRESS_BARS if name not in bars]
    if missing:
        raise _incompatible(f"ProgressCallback no longer keeps {', '.join(missing)}",
                            "an error line of its own after a stopped run")


def _method_problem(trainer_class: type, name: str, parameters: tuple[str, ...]) -> str | None:
    """What is wrong with `trainer_class`'s method `name` for a caller passing `parameters` first (None: nothing)."""
    method = getattr(trainer_class, name, None)
    if method is None:
        return f"Trainer.{name} no longer exists"
    found = tuple(list(inspect.signature(method).parameters)[1:])
    if found[: len(parameters)] != parameters:
        return (f"Trainer.{name} takes ({', '.join(found)}) where hf_segcompare expects "
                f"({', '.join(parameters) or 'nothing'}) first")
    return None


def _incompatible(problem: str, guarantee: str) -> IncompatibleTransformers:
    return IncompatibleTransformers(
        f"transformers {transformers.__version__}: {problem}; hf_segcompare relies on it for {guarantee}, "
        "which would be lost silently. Install a transformers 5 release this hf_segcompare was tested with "
        "(its README's Dependencies says which), or an hf_segcompare that supports this one.")


def saved_under_model_names(model, checkpoint: str | Path) -> bool:
    """Whether `checkpoint` (a safetensors checkpoint folder) holds exactly the weight names of
    `model`'s state dict: then a plain ``load_state_dict`` restores every weight, and the #43701
    reload (`restore_checkpoint_weights`) has nothing to add."""
    folder = Path(checkpoint)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = set(json.loads(index.read_text())["weight_map"])
    elif (folder / "model.safetensors").is_file():
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            names = set(weights.keys())
    else:
        return False
    return names == set(model.state_dict())


__all__ = ["CALLED", "OVERRIDDEN", "PROGRESS_BARS", "TRAINER_ATTRIBUTES", "check_trainer_internals",
           "saved_under_model_names"]

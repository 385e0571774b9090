"""The private `Trainer` methods `SegTrainer` overrides, checked against the installed transformers.

Four of the toolkit's guarantees hang on private `Trainer` methods: exact resume
(``_load_from_checkpoint``, transformers issue #43701), the divergence stop
(``_maybe_log_save_evaluate``), whole and finite checkpoints (``_save_checkpoint``) and the
published best model (``_load_best_model``). A transformers release may rename one, change what it
takes, or stop calling it; the override would then break with a stack trace from deep inside
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
from transformers import Trainer

from ..errors import IncompatibleTransformers

# name -> (the parameters SegTrainer relies on, in order after self; what the override guarantees)
OVERRIDDEN = {
    "_load_from_checkpoint": (("resume_from_checkpoint", "model"), "exact resume (transformers issue #43701)"),
    "_maybe_log_save_evaluate": (("tr_loss", "grad_norm"), "the divergence stop"),
    "_save_checkpoint": (("model", "trial"), "whole, finite checkpoints"),
    "_load_best_model": ((), "the published best model's weights checked"),
}


@functools.lru_cache(maxsize=None)
def _module_source(trainer_class: type) -> str:
    return inspect.getsource(inspect.getmodule(trainer_class))


def check_trainer_internals(trainer_class: type = Trainer, source: str | None = None) -> None:
    """Stop unless every private method in `OVERRIDDEN` exists on `trainer_class`, takes the
    parameters `SegTrainer` relies on first, and is still called by Trainer's code (`source`:
    that code; default: the module of transformers' `Trainer`).

    Raises:
        IncompatibleTransformers: one line naming the transformers version, the method and the way out.
    """
    source = _module_source(Trainer) if source is None else source
    for name, (parameters, guarantee) in OVERRIDDEN.items():
        method = getattr(trainer_class, name, None)
        if method is None:
            problem = f"Trainer.{name} no longer exists"
        else:
            found = tuple(list(inspect.signature(method).parameters)[1:])
            if found[: len(parameters)] != parameters:
                problem = (f"Trainer.{name} takes ({', '.join(found)}) where hf_segcompare expects "
                           f"({', '.join(parameters) or 'nothing'}) first")
            elif f"self.{name}(" not in source:
                problem = f"Trainer no longer calls {name}"
            else:
                continue
        raise IncompatibleTransformers(
            f"transformers {transformers.__version__}: {problem}; hf_segcompare overrides it for {guarantee}, "
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


__all__ = ["OVERRIDDEN", "check_trainer_internals", "saved_under_model_names"]

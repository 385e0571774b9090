"""Parameter groups for a recipe: per-group learning-rate multipliers and weight-decay exemptions.

`Trainer` builds its optimizer from `TrainingArguments` with two groups (decay / no decay). The
published recipes need more: SegFormer and SETR train the decode head at 10× the learning rate,
and mmsegmentation's SGD recipes decay every parameter. `trainer_optimizer` hands `Trainer` an
optimizer *factory* (its ``optimizer_cls_and_kwargs`` hook), so Trainer still chooses the
optimizer class and keyword arguments from ``--optim``/``--optim_args``/``--learning_rate``, still
creates it at the moment it always does (after wrapping the model for DDP/FSDP), and builds its
learning-rate schedule on top; only the grouping is ours. A scheduler like transformers'
polynomial one scales each group's own initial learning rate, so multipliers hold all the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UsageError

# Trainer's own rule (Trainer.get_decay_parameter_names): no decay for biases and normalisation.
_TRANSFORMERS_NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def parse_lr_multipliers(text: str | None) -> dict[str, float]:
    """``"decode_head=10,encoder=0.1"`` -> ``{"decode_head": 10.0, "encoder": 0.1}``; empty -> {}."""
    multipliers: dict[str, float] = {}
    for item in (text or "").replace(" ", "").split(","):
        if not item:
            continue
        name, _, factor = item.partition("=")
        try:
            multipliers[name] = float(factor)
        except ValueError:
            raise UsageError(f"--lr_multipliers {text!r}: {item!r} is not NAME=FACTOR (e.g. decode_head=10)") from None
        if not name or multipliers[name] <= 0:
            raise UsageError(f"--lr_multipliers {text!r}: {item!r} needs a parameter-name part and a factor > 0")
    return multipliers


def no_decay_parameter_names(model: nn.Module, no_decay: str) -> set[str]:
    """Names of the parameters trained without weight decay.

    `no_decay` is ``"transformers"`` (Trainer's rule: biases and normalisation weights), ``"none"``
    (everything decays, as in mmsegmentation's SGD recipes), or comma-separated parts of
    parameter names (``"layer_norm"``: SegFormer's LayerNorms, as mmsegmentation's ``norm`` key).
    """
    names = [name for name, _ in model.named_parameters()]
    if no_decay == "transformers":
        from transformers.trainer_pt_utils import get_parameter_names

        decayed = set(get_parameter_names(model, [nn.LayerNorm], _TRANSFORMERS_NO_DECAY_PATTERNS))
        return {name for name in names if name not in decayed}
    if no_decay in ("none", ""):
        return set()
    parts = [part for part in no_decay.replace(" ", "").split(",") if part]
    return {name for name in names if any(part in name for part in parts)}


def _multiplier_for(name: str, multipliers: dict[str, float]) -> tuple[str | None, float]:
    # As mmengine's custom_keys: the longest matching key wins.
    for key in sorted(multipliers, key=len, reverse=True):
        if key in name:
            return key, multipliers[key]
    return None, 1.0


def param_groups(model: nn.Module, learning_rate: float, weight_decay: float,
                 lr_multipliers: dict[str, float], no_decay: str) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per (multiplier, decay) combination that occurs.

    Each group carries ``lr`` (base × multiplier), ``weight_decay`` and a readable ``name``.

    Raises:
        UsageError: a multiplier key matches no parameter (a typo would otherwise do nothing).
    """
    exempt = no_decay_parameter_names(model, no_decay)
    groups: dict[tuple[str | None, bool], dict[str, Any]] = {}
    matched: set[str] = set()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key, factor = _multiplier_for(name, lr_multipliers)
        if key is not None:
            matched.add(key)
        decays = name not in exempt and weight_decay > 0
        group = groups.setdefault((key, decays), {
            "params": [],
            "lr": learning_rate * factor,
            "weight_decay": weight_decay if decays else 0.0,
            "name": f"{key or 'rest'} (lr ×{factor:g}, {'decay' if decays else 'no decay'})",
        })
        group["params"].append(parameter)
    unmatched = sorted(set(lr_multipliers) - matched)
    if unmatched:
        raise UsageError(f"--lr_multipliers: no parameter name contains {unmatched}; "
                          f"names look like {[name for name, _ in model.named_parameters()][-2:]}")
    return list(groups.values())


@dataclass
class GroupedOptimizer:
    """A Trainer optimizer factory: the optimizer class Trainer chose, over `param_groups`."""

    optimizer_cls: type[torch.optim.Optimizer]
    weight_decay: float
    lr_multipliers: dict[str, float]
    no_decay: str

    def groups(self, model: nn.Module, learning_rate: float) -> list[dict[str, Any]]:
        """`param_groups` of `model` under this factory's settings (raises UsageError)."""
        return param_groups(model, learning_rate, self.weight_decay, self.lr_multipliers, self.no_decay)

    def __call__(self, model: nn.Module, **optimizer_kwargs) -> torch.optim.Optimizer:
        return self.optimizer_cls(self.groups(model, optimizer_kwargs["lr"]), **optimizer_kwargs)


def trainer_optimizer(
    args, model: nn.Module | None = None
) -> tuple[Callable[[], GroupedOptimizer], dict[str, Any]] | None:
    """`Trainer(optimizer_cls_and_kwargs=...)` for `args` (a SegTrainingArguments), or None where
    ``--optim`` names an optimizer that builds its own groups (GaLore, LOMO, Muon, ...)."""
    from transformers import Trainer
    from transformers.trainer_optimizer import is_optimizer_factory

    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    if is_optimizer_factory(optimizer_cls) or set(optimizer_kwargs) & {"params", "model", "optimizer_dict"}:
        return None
    factory = GroupedOptimizer(optimizer_cls, args.weight_decay, parse_lr_multipliers(args.lr_multipliers),
                               args.no_decay)
    # Trainer calls the first element with no arguments to get the factory, then the factory
    # with (model, **kwargs).
    return (lambda: factory), optimizer_kwargs


__all__ = ["GroupedOptimizer", "no_decay_parameter_names", "param_groups", "parse_lr_multipliers",
           "trainer_optimizer"]

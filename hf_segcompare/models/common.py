"""Pieces the toolkit's own model classes share."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput


def init_conv_bn(layer: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs with zero bias, unit BatchNorm: torchvision ResNet's and
    mmsegmentation ConvModule's init."""
    if isinstance(layer, nn.Conv2d):
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.BatchNorm2d):
        nn.init.ones_(layer.weight)
        nn.init.zeros_(layer.bias)


def segmenter_output(logits: torch.Tensor, labels: torch.Tensor | None, ignore_index: int,
                     hidden_states: tuple[torch.Tensor, ...] | None = None) -> SemanticSegmenterOutput:
    """Full-resolution logits plus, with labels, cross-entropy over the pixels not equal to `ignore_index`
    (and the encoder's `hidden_states` when the caller asked for them)."""
    loss = None if labels is None else nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index)
    return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states)


def wants_hidden_states(model: nn.Module, output_hidden_states: bool | None) -> bool:
    """transformers' rule: the argument if given, else the config's ``output_hidden_states``."""
    if output_hidden_states is not None:
        return output_hidden_states
    return bool(getattr(model.config, "output_hidden_states", False))


class CheckpointedSequential(nn.Sequential):
    """An `nn.Sequential` stage that recomputes its activations in the backward pass when
    transformers' gradient checkpointing is on (`PreTrainedModel.gradient_checkpointing_enable` sets
    ``gradient_checkpointing`` and ``_gradient_checkpointing_func`` on every module that has the
    attribute). Its children, and so its state-dict names, are the stage's own.

    BatchNorm layers run twice under checkpointing: the recomputation restores their running
    statistics, so a checkpointed run keeps exactly the statistics (and the gradients) of a plain one.
    """

    gradient_checkpointing = False

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not (self.gradient_checkpointing and self.training and torch.is_grad_enabled()):
            return super().forward(features)
        calls = 0

        def stage(inputs: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:
                return nn.Sequential.forward(self, inputs)
            with _running_statistics_kept(self):  # the backward pass's recomputation
                return nn.Sequential.forward(self, inputs)

        return self._gradient_checkpointing_func(stage, features)


@contextmanager
def _running_statistics_kept(module: nn.Module):
    norms = [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)
             and layer.track_running_stats]
    kept = [(layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone())
            for layer in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, (mean, var, count) in zip(norms, kept):
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.num_batches_tracked.copy_(count)


def checkpoint_sequential_stages(encoder: nn.Module) -> None:
    """Make the encoder's outermost `nn.Sequential` modules (ResNet's ``layer1``..``layer4``, in smp's
    own encoders and in timm's alike) checkpointable stages (`CheckpointedSequential`). Names and
    weights are unchanged."""
    stages: list[nn.Module] = []
    for module in encoder.modules():
        if type(module) is nn.Sequential and not any(contains_layer(stage, module) for stage in stages):
            stages.append(module)
    for stage in stages:
        stage.__class__ = CheckpointedSequential


def contains_layer(part: nn.Module, layer: nn.Module) -> bool:
    """Whether `layer` is `part` or one of its submodules (by identity)."""
    return any(candidate is layer for candidate in part.modules())

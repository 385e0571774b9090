"""Pieces the toolkit's own model classes share."""

from __future__ import annotations

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


def segmenter_output(logits: torch.Tensor, labels: torch.Tensor | None, ignore_index: int) -> SemanticSegmenterOutput:
    """Full-resolution logits plus, with labels, cross-entropy over the pixels not equal to `ignore_index`."""
    loss = None if labels is None else nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index)
    return SemanticSegmenterOutput(loss=loss, logits=logits)

"""SegFormer (MiT encoder + all-MLP decoder): transformers' own model, and its encoder loader.

`SegformerConfig()` defaults are the MiT-b0 encoder (hidden sizes 32/64/160/256, depths 2/2/2/2)
with a 256-channel decoder: 3,719,541 parameters at 21 classes. Its loss already upsamples the
1/4-resolution logits to the label size and ignores `semantic_loss_ignore_index`.
"""

from __future__ import annotations

from transformers import SegformerForSemanticSegmentation, SegformerModel

from .pretrained import load_hf_encoder
from .registry import Normalization


def load_segformer_encoder(model: SegformerForSemanticSegmentation, source: str) -> Normalization | None:
    """The MiT encoder of a `SegformerModel` or SegFormer segmentation checkpoint (folder or Hub id)."""
    return load_hf_encoder(model, source, SegformerModel, model.segformer)


__all__ = ["SegformerForSemanticSegmentation", "load_segformer_encoder"]

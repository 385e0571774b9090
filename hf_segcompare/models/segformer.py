"""SegFormer (MiT encoder + all-MLP decoder), transformers' own model, configured for VOC.

`SegformerConfig()` defaults are the MiT-b0 encoder (hidden sizes 32/64/160/256, depths 2/2/2/2)
with a 256-channel decoder: 3,719,541 parameters at 21 classes. Its loss already upsamples the
1/4-resolution logits to the label size and ignores `semantic_loss_ignore_index` (255).
"""

from __future__ import annotations

from transformers import SegformerConfig, SegformerForSemanticSegmentation

from ..data.voc import IGNORE_INDEX

MIT_B0 = {}  # SegformerConfig's defaults are MiT-b0
SEGFORMER_TINY = {
    "depths": [1, 1, 1, 1],
    "hidden_sizes": [8, 16, 32, 64],
    "num_attention_heads": [1, 1, 2, 4],
    "decoder_hidden_size": 32,
}


def segformer_config(id2label: dict[int, str], **overrides) -> SegformerConfig:
    """A SegFormer config with VOC labels and 255 as the ignored mask value."""
    return SegformerConfig(
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        semantic_loss_ignore_index=IGNORE_INDEX,
        **overrides,
    )


__all__ = ["MIT_B0", "SEGFORMER_TINY", "SegformerForSemanticSegmentation", "segformer_config"]

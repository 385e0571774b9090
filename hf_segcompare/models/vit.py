"""ViT-B/16 encoder + SETR progressive-upsampling ("PUP") head as a `PreTrainedModel`.

The encoder is transformers' `ViTModel` without its pooler (85,798,656 parameters for ViT-B/16
at 224 px). The head follows SETR-PUP (Zheng et al., CVPR 2021; mmsegmentation `SETRUPHead`):
the patch tokens are reshaped to a 1/16 feature map, then four stages of 3x3 conv + BN + ReLU,
each followed by a 2x bilinear upsampling, bring it back to full resolution, where a 1x1 conv
classifies every pixel. With 256 head channels and 21 classes the head adds 3,546,389
parameters: 89,345,045 in all.

Position embeddings are kept at the checkpoint's 224 px grid and interpolated on the fly for
other input sizes, so a 224 px ImageNet checkpoint fine-tunes on 512 px crops unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSemanticSegmentation, ViTConfig, ViTModel
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.models.vit.modeling_vit import ViTPreTrainedModel
from transformers.utils import can_return_tuple

from ..labels import IGNORE_INDEX
from .common import init_conv_bn, segmenter_output, wants_hidden_states
from .pretrained import load_hf_encoder
from .registry import Normalization


class ViTSegConfig(ViTConfig):
    """`ViTConfig` plus the segmentation head.

    Args:
        decoder_channels: channels of every progressive-upsampling stage (SETR: 256).
        semantic_loss_ignore_index: mask value ignored by the loss (VOC: 255).
        **kwargs: `ViTConfig` arguments (defaults: ViT-B/16 at 224 px).
    """

    model_type = "vit-seg"

    def __init__(self, decoder_channels: int = 256, semantic_loss_ignore_index: int = IGNORE_INDEX, **kwargs):
        self.decoder_channels = decoder_channels
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        super().__init__(**kwargs)


class ProgressiveUpsamplingHead(nn.Module):
    """SETR-PUP: log2(patch_size) x (3x3 conv, BN, ReLU, 2x upsample), then a 1x1 classifier."""

    def __init__(self, in_channels: int, channels: int, num_labels: int, patch_size: int):
        super().__init__()
        num_stages = int(math.log2(patch_size))
        if 2**num_stages != patch_size:
            raise ValueError(f"the PUP head needs a power-of-two patch size, got {patch_size}")
        stages = []
        for stage in range(num_stages):
            stages += [
                nn.Conv2d(in_channels if stage == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ]
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Conv2d(channels, num_labels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(features))


class ViTSegForSemanticSegmentation(ViTPreTrainedModel):
    """ViT encoder + PUP head with `forward(pixel_values, labels=None) -> SemanticSegmenterOutput`.

    Logits come out at the input resolution (H and W must be multiples of the patch size).
    """

    config_class = ViTSegConfig

    def __init__(self, config: ViTSegConfig):
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.decode_head = ProgressiveUpsamplingHead(
            config.hidden_size, config.decoder_channels, config.num_labels, config.patch_size
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Layer by layer, because from_pretrained calls this only on the layers it did not load.
        if any(layer is module for layer in self.decode_head.modules()):
            init_conv_bn(module)  # mmsegmentation's ConvModule init
        else:
            super()._init_weights(module)

    @property
    def input_multiple(self) -> int:
        """What the input's height and width must be multiples of: the patch size."""
        return self.config.patch_size

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SemanticSegmenterOutput:
        """Logits ``[B, num_labels, H, W]``; with `labels` ``[B, H, W]``, cross-entropy ignoring 255;
        with `output_hidden_states`, `ViTModel`'s hidden states (the embeddings, then every layer's
        tokens, [CLS] first), as transformers' ViT models give them."""
        height, width = pixel_values.shape[-2:]
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(f"input of {width}x{height} px is not a multiple of the patch size {patch}")
        image_size = self.config.image_size
        grid_matches = (height, width) == (
            (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        )
        hidden = wants_hidden_states(self, output_hidden_states)
        encoded = self.vit(pixel_values, interpolate_pos_encoding=not grid_matches, output_hidden_states=hidden,
                           return_dict=True)  # whatever the config says: the tuple is made once, above
        patch_tokens = encoded.last_hidden_state[:, 1:]  # drop [CLS]
        features = patch_tokens.transpose(1, 2).reshape(pixel_values.shape[0], -1, height // patch, width // patch)
        return segmenter_output(self.decode_head(features), labels, self.config.semantic_loss_ignore_index,
                                encoded.hidden_states if hidden else None)


def load_vit_encoder(model: ViTSegForSemanticSegmentation, source: str) -> Normalization | None:
    """The encoder of a `ViTModel` checkpoint (folder or Hub id, e.g. ``google/vit-base-patch16-224-in21k``)."""
    return load_hf_encoder(model, source, ViTModel, model.vit, add_pooling_layer=False)


# A saved folder loads through the Auto classes (no trust_remote_code).
AutoConfig.register(ViTSegConfig.model_type, ViTSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(ViTSegConfig, ViTSegForSemanticSegmentation, exist_ok=True)

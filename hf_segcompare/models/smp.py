"""segmentation-models-pytorch CNNs (U-Net, DeepLabV3+) as `transformers` models.

`SmpSegConfig` + `SmpForSemanticSegmentation` make an smp model a real `PreTrainedModel`:
`save_pretrained` writes config.json + model.safetensors, and after ``import hf_segcompare``
``AutoModelForSemanticSegmentation.from_pretrained(folder)`` rebuilds it, with no
`trust_remote_code`. The forward follows the transformers semantic-segmentation contract, so
`Trainer` treats these CNNs exactly like SegFormer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ..data.voc import IGNORE_INDEX
from .common import init_conv_bn, segmenter_output

SMP_ARCHITECTURES = {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus"}


def _contains(part: nn.Module, layer: nn.Module) -> bool:
    return any(candidate is layer for candidate in part.modules())


class SmpSegConfig(PretrainedConfig):
    """Configuration of an smp encoder-decoder.

    Args:
        arch: ``"unet"`` or ``"deeplabv3plus"``.
        encoder_name: any smp encoder name (``"resnet50"``, ``"resnet18"``, ``"tu-..."``).
        arch_kwargs: further keyword arguments of the smp architecture
            (e.g. ``decoder_channels``, ``encoder_output_stride``, ``decoder_atrous_rates``).
        semantic_loss_ignore_index: mask value ignored by the loss (VOC: 255).
    """

    model_type = "smp-seg"

    def __init__(
        self,
        arch: str = "unet",
        encoder_name: str = "resnet50",
        arch_kwargs: dict[str, Any] | None = None,
        semantic_loss_ignore_index: int = IGNORE_INDEX,
        **kwargs,
    ):
        if arch not in SMP_ARCHITECTURES:
            raise ValueError(f"arch={arch!r} is not an smp architecture here; choose one of {sorted(SMP_ARCHITECTURES)}")
        self.arch = arch
        self.encoder_name = encoder_name
        self.arch_kwargs = dict(arch_kwargs or {})
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        super().__init__(**kwargs)


class SmpForSemanticSegmentation(PreTrainedModel):
    """An smp U-Net / DeepLabV3+ with `forward(pixel_values, labels=None) -> SemanticSegmenterOutput`.

    Logits come out at the input resolution. The signature is explicit (no ``**kwargs``) on
    purpose: `Trainer` would otherwise pass `num_items_in_batch` and stop averaging the loss.
    """

    config_class = SmpSegConfig
    base_model_prefix = "smp"
    main_input_name = "pixel_values"

    def __init__(self, config: SmpSegConfig):
        super().__init__(config)
        import segmentation_models_pytorch as smp

        architecture = getattr(smp, SMP_ARCHITECTURES[config.arch])
        # Weights never download here: from_pretrained builds on the meta device, and pretrained
        # encoders are loaded by the factory after construction.
        self.smp = architecture(
            encoder_name=config.encoder_name,
            encoder_weights=None,
            classes=config.num_labels,
            **config.arch_kwargs,
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers' default would redraw every conv from N(0, 0.02), erasing smp's scheme.
        # Re-apply smp's own init to each layer according to the part it belongs to. It works
        # layer by layer because from_pretrained calls this only on the layers the checkpoint
        # lacked (e.g. a head resized for other labels), leaving loaded weights alone.
        from segmentation_models_pytorch.base import initialization

        if next(module.children(), None) is not None:
            return  # containers: their layers get their own call
        if _contains(self.smp.segmentation_head, module):
            initialization.initialize_head(module)
        elif _contains(self.smp.decoder, module):
            initialization.initialize_decoder(module)
        else:  # encoder: torchvision ResNet's init
            init_conv_bn(module)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SemanticSegmenterOutput:
        """Logits ``[B, num_labels, H, W]``; with `labels` ``[B, H, W]``, cross-entropy ignoring 255."""
        return segmenter_output(self.smp(pixel_values), labels, self.config.semantic_loss_ignore_index)

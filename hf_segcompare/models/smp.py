"""segmentation-models-pytorch CNNs (U-Net, DeepLabV3+, and any other smp architecture) as
`transformers` models.

`SmpSegConfig` + `SmpForSemanticSegmentation` make an smp model a real `PreTrainedModel`:
`save_pretrained` writes config.json + model.safetensors, and once this module is imported
``AutoModelForSemanticSegmentation.from_pretrained(folder)`` rebuilds it, with no
`trust_remote_code`. The forward follows the transformers semantic-segmentation contract, so
`Trainer` treats these CNNs exactly like SegFormer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSemanticSegmentation, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.utils import can_return_tuple

from ..labels import IGNORE_INDEX
from .common import checkpoint_sequential_stages, contains_layer, init_conv_bn, segmenter_output, wants_hidden_states
from .pretrained import load_into, read_state_dict, require_hub_for, unavailable
from .registry import Normalization


def smp_architectures() -> dict[str, type]:
    """smp's architectures by lowercase class name: ``unet``, ``deeplabv3plus``, ``fpn``, ``segformer``..."""
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.base import SegmentationModel

    return {name.lower(): value for name, value in vars(smp).items()
            if isinstance(value, type) and issubclass(value, SegmentationModel) and value is not SegmentationModel}


class SmpSegConfig(PretrainedConfig):
    """Configuration of an smp encoder-decoder.

    Args:
        arch: an smp architecture by its lowercase class name (``"unet"``, ``"deeplabv3plus"``, ``"fpn"``...).
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
        if arch not in smp_architectures():
            raise ValueError(f"arch={arch!r} is not an smp architecture; choose one of {sorted(smp_architectures())}")
        self.arch = arch
        self.encoder_name = encoder_name
        self.arch_kwargs = dict(arch_kwargs or {})
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        super().__init__(**kwargs)


class SmpForSemanticSegmentation(PreTrainedModel):
    """An smp encoder-decoder (U-Net, DeepLabV3+, ...) as a `PreTrainedModel`:
    `forward(pixel_values, labels=None) -> SemanticSegmenterOutput`.

    Logits come out at the input resolution. The signature is explicit (no ``**kwargs``) on
    purpose: `Trainer` would otherwise pass `num_items_in_batch` and stop averaging the loss.
    transformers' conventions hold: ``return_dict=False`` gives a tuple, ``output_hidden_states``
    the encoder's feature maps, and gradient checkpointing recomputes the encoder's stages.
    """

    config_class = SmpSegConfig
    base_model_prefix = "smp"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def __init__(self, config: SmpSegConfig):
        super().__init__(config)
        architecture = smp_architectures()[config.arch]
        # Weights never download here: from_pretrained builds on the meta device, and pretrained
        # encoders are loaded by the factory after construction.
        self.smp = architecture(
            encoder_name=config.encoder_name,
            encoder_weights=None,
            classes=config.num_labels,
            **config.arch_kwargs,
        )
        checkpoint_sequential_stages(self.smp.encoder)
        self.post_init()

    @property
    def input_multiple(self) -> int:
        """What the input's height and width must be multiples of: the encoder's output stride where smp
        requires it (DeepLabV3+: 16), else 1 (U-Net's decoder takes any size)."""
        return self.smp.encoder.output_stride if self.smp.requires_divisible_input_shape else 1

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers' default would redraw every conv from N(0, 0.02), erasing smp's scheme.
        # Re-apply smp's own init to each layer according to the part it belongs to. It works
        # layer by layer because from_pretrained calls this only on the layers the checkpoint
        # lacked (e.g. a head resized for other labels), leaving loaded weights alone.
        from segmentation_models_pytorch.base import initialization

        if next(module.children(), None) is not None:
            return  # containers: their layers get their own call
        if contains_layer(self.smp.segmentation_head, module):
            initialization.initialize_head(module)
        elif contains_layer(self.smp.decoder, module):
            initialization.initialize_decoder(module)
        else:  # encoder: torchvision ResNet's init
            init_conv_bn(module)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SemanticSegmenterOutput:
        """Logits ``[B, num_labels, H, W]``; with `labels` ``[B, H, W]``, cross-entropy ignoring 255;
        with `output_hidden_states`, the encoder's feature maps (strides 2 to 32, the input left out)."""
        smp_model = self.smp
        # smp's own forward, step by step, to keep the encoder's features (it checks the input's
        # divisibility only outside tracing, as smp does)
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            smp_model.check_input_shape(pixel_values)
        features = smp_model.encoder(pixel_values)
        logits = smp_model.segmentation_head(smp_model.decoder(features))
        hidden_states = tuple(features[1:]) if wants_hidden_states(self, output_hidden_states) else None
        return segmenter_output(logits, labels, self.config.semantic_loss_ignore_index, hidden_states)


def load_smp_encoder(model: SmpForSemanticSegmentation, source: str) -> Normalization | None:
    """Load encoder weights into `model`: from a ``.safetensors``/``.pth`` state dict file (a
    torchvision ResNet's included: its classifier is dropped), or by smp weights name
    (``imagenet``...) through smp's own `get_encoder`, which fetches them from the Hub.

    Returns the normalisation smp publishes for named weights (None for a file).
    """
    from pathlib import Path

    encoder_name = model.config.encoder_name
    path = Path(source).expanduser()
    if path.is_file():
        try:
            state = read_state_dict(path)
        except ValueError as error:
            raise unavailable(model, str(path), str(error)) from None
        # torchvision checkpoints carry the classifier (fc.*), which smp encoders drop.
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        load_into(model, model.smp.encoder, state, source, f"a {encoder_name} encoder state dict")
        return None
    from segmentation_models_pytorch.encoders import encoders, get_encoder, get_preprocessing_params

    named = encoders.get(encoder_name, {}).get("pretrained_settings", {})
    if source not in named:
        raise unavailable(
            model, source, f"not a file, and smp names {sorted(named) or 'no'} weights for {encoder_name}"
        )
    require_hub_for(model, source)
    arch_kwargs = model.config.arch_kwargs
    try:
        encoder = get_encoder(encoder_name, depth=arch_kwargs.get("encoder_depth", 5), weights=source)
        normalization = Normalization.from_mapping(get_preprocessing_params(encoder_name, source))
    except Exception as error:  # hf_hub_download's network and HTTP errors
        raise unavailable(model, source, str(error).splitlines()[0]) from None
    # Dilation (output stride) changes no weight: the encoder smp built loads into ours as is.
    load_into(model, model.smp.encoder, encoder.state_dict(), source, f"a {encoder_name} encoder")
    return normalization


# A saved folder loads through the Auto classes (no trust_remote_code).
AutoConfig.register(SmpSegConfig.model_type, SmpSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(SmpSegConfig, SmpForSemanticSegmentation, exist_ok=True)

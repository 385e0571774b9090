"""Model registry: `create_model(name, ...)` and `list_models()`.

Four architectures answer the toolkit's question, two CNNs and two transformers:

=================  ==============================================  ===========
name               architecture                                    parameters
=================  ==============================================  ===========
``unet``           U-Net, ResNet-50 encoder (smp)                  32,524,005
``deeplabv3plus``  DeepLabV3+, ResNet-50, ASPP 6/12/18 (smp)       26,682,725
``vit``            ViT-B/16 + SETR-PUP head                        89,345,045
``segformer-b0``   SegFormer, MiT-b0 + all-MLP decoder             3,719,541
=================  ==============================================  ===========

(21 classes, random init.) Each has a ``-tiny`` test variant with the same code path (ResNet-18
encoders for the CNNs, a narrow two-layer ViT, a one-block-per-stage SegFormer), so tests can
build and train every architecture on a CPU in seconds.

Importing this package registers the CNN and ViT configs with `AutoConfig` and
`AutoModelForSemanticSegmentation`, so a saved folder loads with
``AutoModelForSemanticSegmentation.from_pretrained(folder)`` — no `trust_remote_code`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from transformers import AutoConfig, AutoModelForSemanticSegmentation, PretrainedConfig, PreTrainedModel

from ..data.voc import id2label as voc_id2label
from .segformer import SEGFORMER_TINY, SegformerForSemanticSegmentation, segformer_config
from .smp import SmpForSemanticSegmentation, SmpSegConfig
from .vit import ViTSegConfig, ViTSegForSemanticSegmentation

AutoConfig.register(SmpSegConfig.model_type, SmpSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(SmpSegConfig, SmpForSemanticSegmentation, exist_ok=True)
AutoConfig.register(ViTSegConfig.model_type, ViTSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(ViTSegConfig, ViTSegForSemanticSegmentation, exist_ok=True)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model: its config factory, model class and family."""

    name: str
    family: str  # "cnn" or "transformer": the two sides of the comparison
    description: str
    make_config: Callable[..., PretrainedConfig]
    model_class: type[PreTrainedModel]
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    is_test_variant: bool = False


def _labels(id2label: dict[int, str]) -> dict[str, Any]:
    return {"id2label": id2label, "label2id": {name: index for index, name in id2label.items()}}


def _smp_config(id2label, **kwargs) -> SmpSegConfig:
    return SmpSegConfig(**kwargs, **_labels(id2label))


def _vit_config(id2label, **kwargs) -> ViTSegConfig:
    return ViTSegConfig(**kwargs, **_labels(id2label))


# smp's DeepLabV3Plus runs its encoder at output stride 16 but defaults to the ASPP rates the paper
# pairs with stride 8 (12/24/36); at stride 16 the paper uses 6/12/18. Dilation adds no parameters.
# (A folder saved without this key keeps smp's default, so older checkpoints load as trained.)
DEEPLAB_OS16 = {"encoder_output_stride": 16, "decoder_atrous_rates": [6, 12, 18]}

_SPECS = [
    ModelSpec("unet", "cnn", "U-Net with a ResNet-50 encoder (segmentation-models-pytorch)",
              _smp_config, SmpForSemanticSegmentation, {"arch": "unet", "encoder_name": "resnet50"}),
    ModelSpec("deeplabv3plus", "cnn", "DeepLabV3+ with a ResNet-50 encoder and ASPP (segmentation-models-pytorch)",
              _smp_config, SmpForSemanticSegmentation,
              {"arch": "deeplabv3plus", "encoder_name": "resnet50", "arch_kwargs": {**DEEPLAB_OS16}}),
    ModelSpec("vit", "transformer", "ViT-B/16 encoder with a SETR progressive-upsampling head",
              _vit_config, ViTSegForSemanticSegmentation, {}),
    ModelSpec("segformer-b0", "transformer", "SegFormer with the MiT-b0 encoder and its all-MLP decoder",
              segformer_config, SegformerForSemanticSegmentation, {}),
    # Test variants: same classes and code paths, sized for CPU tests.
    ModelSpec("unet-tiny", "cnn", "test variant of unet (ResNet-18 encoder, narrow decoder)",
              _smp_config, SmpForSemanticSegmentation,
              {"arch": "unet", "encoder_name": "resnet18", "arch_kwargs": {"decoder_channels": [64, 32, 16, 8, 8]}}, True),
    ModelSpec("deeplabv3plus-tiny", "cnn", "test variant of deeplabv3plus (ResNet-18 encoder, 32-channel decoder)",
              _smp_config, SmpForSemanticSegmentation,
              {"arch": "deeplabv3plus", "encoder_name": "resnet18", "arch_kwargs": {**DEEPLAB_OS16, "decoder_channels": 32}},
              True),
    ModelSpec("vit-tiny", "transformer", "test variant of vit (2 layers, width 64, 16-channel head)",
              _vit_config, ViTSegForSemanticSegmentation,
              {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
               "image_size": 64, "decoder_channels": 16}, True),
    ModelSpec("segformer-tiny", "transformer", "test variant of segformer-b0 (one block per stage, widths 8-64)",
              segformer_config, SegformerForSemanticSegmentation, SEGFORMER_TINY, True),
]
MODEL_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models(include_test_variants: bool = False) -> list[str]:
    """Registered model names; the ``-tiny`` test variants only when asked for."""
    return [name for name, spec in MODEL_REGISTRY.items() if include_test_variants or not spec.is_test_variant]


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of `name`; an unknown name raises a `ValueError` listing the valid ones."""
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models(include_test_variants=True))}"
        ) from None


def create_model(name: str, id2label: dict[int, str] | None = None, **config_overrides) -> PreTrainedModel:
    """Build a registered model with random weights.

    Args:
        name: one of `list_models(include_test_variants=True)`.
        id2label: class id -> name; defaults to the 21 Pascal VOC classes.
        **config_overrides: config fields to change (e.g. ``decoder_channels=128``).
    """
    spec = get_spec(name)
    config = spec.make_config(id2label or voc_id2label(), **{**spec.config_kwargs, **config_overrides})
    # Saved into config.json, so a folder says which registered model it holds.
    config.segcompare_model = name
    return spec.model_class(config)


def count_parameters(model) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


__all__ = [
    "MODEL_REGISTRY",
    "ModelSpec",
    "SmpForSemanticSegmentation",
    "SmpSegConfig",
    "ViTSegConfig",
    "ViTSegForSemanticSegmentation",
    "count_parameters",
    "create_model",
    "get_spec",
    "list_models",
]

"""The registered models: `create_model(name, ...)`, `list_models()`, `get_entry(name)`.

Four architectures answer the toolkit's question, two CNNs and two transformers:

=================  ==============================================  ===========  ======================================
name               architecture                                    parameters   default pretrained (normalisation)
=================  ==============================================  ===========  ======================================
``unet``           U-Net, ResNet-50 encoder (smp)                  32,524,005   smp ``imagenet`` (ImageNet mean/std)
``deeplabv3plus``  DeepLabV3+, ResNet-50, ASPP 6/12/18 (smp)       26,682,725   smp ``imagenet`` (ImageNet mean/std)
``vit``            ViT-B/16 + SETR-PUP head                        89,345,045   google/vit-base-patch16-224-in21k (0.5)
``segformer-b0``   SegFormer, MiT-b0 + all-MLP decoder             3,719,541    nvidia/mit-b0 (ImageNet mean/std)
=================  ==============================================  ===========  ======================================

(21 classes.) Each has a ``-tiny`` test variant with the same model class and loading path and
well under a million parameters (timm's ``test_resnet`` encoder for the CNNs, a narrow two-layer
ViT, a one-block-per-stage SegFormer), so tests build and train every architecture in seconds.

The registry (`registry`), the built-in entries (`catalog`) and the recipes (`recipes`) import
neither torch nor transformers; the adapters (`smp`, `vit`, `segformer`) do, and register their
configs and models with `AutoConfig` and `AutoModelForSemanticSegmentation` when imported, so a
saved folder then loads with ``AutoModelForSemanticSegmentation.from_pretrained(folder)``: no
`trust_remote_code`. `register_auto_classes()` imports them all. The names below are imported on
first use.
"""

from __future__ import annotations

import importlib

from ..lazy import lazy_attributes

_NAMES = {
    "registry": ("HALF", "IMAGENET", "ModelEntry", "Normalization", "count_parameters", "create_model", "get_entry",
                 "input_minimum", "input_multiple", "list_models", "model_normalization", "register_model",
                 "unregister_model"),
    "smp": ("SmpForSemanticSegmentation", "SmpSegConfig"),
    "vit": ("ViTSegConfig", "ViTSegForSemanticSegmentation"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
ADAPTER_MODULES = ("smp", "vit", "segformer")


def register_auto_classes() -> None:
    """Register the U-Net / DeepLabV3+ and ViT adapters with transformers' Auto classes (importing
    the adapter modules does it; SegFormer is transformers' own)."""
    for module in ADAPTER_MODULES:
        importlib.import_module(f"{__name__}.{module}")

__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF)


__all__ = [*sorted(_MODULE_OF), "register_auto_classes"]

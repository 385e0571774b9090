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

Importing this package registers the CNN and ViT configs with `AutoConfig` and
`AutoModelForSemanticSegmentation`, so a saved folder loads with
``AutoModelForSemanticSegmentation.from_pretrained(folder)``: no `trust_remote_code`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSemanticSegmentation, SegformerConfig

from .recipes import DEMO, PUBLISHED, PUBLISHED_BY_DATASET, recipe_set
from .registry import (
    HALF,
    IMAGENET,
    ModelEntry,
    Normalization,
    count_parameters,
    create_model,
    get_entry,
    list_models,
    model_normalization,
    register_model,
    unregister_model,
)
from .segformer import SEGFORMER_TINY, SegformerForSemanticSegmentation, load_segformer_encoder
from .smp import SmpForSemanticSegmentation, SmpSegConfig, load_smp_encoder
from .vit import ViTSegConfig, ViTSegForSemanticSegmentation, load_vit_encoder

AutoConfig.register(SmpSegConfig.model_type, SmpSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(SmpSegConfig, SmpForSemanticSegmentation, exist_ok=True)
AutoConfig.register(ViTSegConfig.model_type, ViTSegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(ViTSegConfig, ViTSegForSemanticSegmentation, exist_ok=True)

# smp's DeepLabV3Plus runs its encoder at output stride 16 but defaults to the ASPP rates the paper
# pairs with stride 8 (12/24/36); at stride 16 the paper uses 6/12/18. Dilation adds no parameters.
# (A folder saved without this key keeps smp's default, so older checkpoints load as trained.)
DEEPLAB_OS16 = {"encoder_output_stride": 16, "decoder_atrous_rates": [6, 12, 18]}
# timm's own test ResNet (372,688 parameters) through smp's timm encoder: the tiny CNNs' encoder.
TINY_CNN_ENCODER = "tu-test_resnet"

_SMP = dict(family="cnn", config_class=SmpSegConfig, model_class=SmpForSemanticSegmentation,
            load_pretrained=load_smp_encoder, normalization=IMAGENET,
            pretrained_hint="an encoder state dict file, .safetensors or .pth")
_VIT = dict(family="transformer", config_class=ViTSegConfig, model_class=ViTSegForSemanticSegmentation,
            load_pretrained=load_vit_encoder, normalization=HALF,
            pretrained_hint="a folder saved by ViTModel.save_pretrained")
_SEGFORMER = dict(
    family="transformer",
    config_class=SegformerConfig,
    model_class=SegformerForSemanticSegmentation,
    load_pretrained=load_segformer_encoder,
    normalization=IMAGENET,
    pretrained_hint="a folder saved by SegformerModel or SegformerForSemanticSegmentation.save_pretrained",
)



def _recipes(model: str) -> dict:
    """A model's recipes: its published VOC schedule (and the quick and fitted versions of it), its
    CPU demo, and its published schedule on each other release."""
    return recipe_set(PUBLISHED[model], DEMO[model],
                      {dataset: recipes[model] for dataset, recipes in PUBLISHED_BY_DATASET.items()})


register_model(ModelEntry(
    "unet", description="U-Net with a ResNet-50 encoder (segmentation-models-pytorch)",
    config_kwargs={"arch": "unet", "encoder_name": "resnet50"}, pretrained="imagenet",
    recipes=_recipes("unet"), **_SMP))
register_model(ModelEntry(
    "deeplabv3plus", description="DeepLabV3+ with a ResNet-50 encoder and ASPP (segmentation-models-pytorch)",
    config_kwargs={"arch": "deeplabv3plus", "encoder_name": "resnet50", "arch_kwargs": DEEPLAB_OS16},
    pretrained="imagenet", recipes=_recipes("deeplabv3plus"), **_SMP))
register_model(ModelEntry(
    "vit", description="ViT-B/16 encoder with a SETR progressive-upsampling head",
    pretrained="google/vit-base-patch16-224-in21k", recipes=_recipes("vit"), **_VIT))
register_model(ModelEntry(
    "segformer-b0", description="SegFormer with the MiT-b0 encoder and its all-MLP decoder",
    pretrained="nvidia/mit-b0", recipes=_recipes("segformer-b0"), **_SEGFORMER))

# Test variants: the same classes and loading code, sized for CPU tests; recipes from the parent.
register_model(ModelEntry(
    "unet-tiny", parent="unet", description=f"test variant of unet ({TINY_CNN_ENCODER} encoder, narrow decoder)",
    config_kwargs={"arch": "unet", "encoder_name": TINY_CNN_ENCODER,
                   "arch_kwargs": {"decoder_channels": [32, 16, 16, 8, 8]}}, **_SMP))
register_model(ModelEntry(
    "deeplabv3plus-tiny", parent="deeplabv3plus",
    description=f"test variant of deeplabv3plus ({TINY_CNN_ENCODER} encoder, 32-channel decoder)",
    config_kwargs={"arch": "deeplabv3plus", "encoder_name": TINY_CNN_ENCODER,
                   "arch_kwargs": {**DEEPLAB_OS16, "decoder_channels": 32}}, **_SMP))
register_model(ModelEntry(
    "vit-tiny", parent="vit", description="test variant of vit (2 layers, width 64, 16-channel head)",
    config_kwargs={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
                   "image_size": 64, "decoder_channels": 16}, **_VIT))
register_model(
    ModelEntry(
        "segformer-tiny",
        parent="segformer-b0",
        description="test variant of segformer-b0 (one block per stage, widths 8-64)",
        config_kwargs=SEGFORMER_TINY,
        **_SEGFORMER,
    )
)


__all__ = [
    "HALF",
    "IMAGENET",
    "ModelEntry",
    "Normalization",
    "SmpForSemanticSegmentation",
    "SmpSegConfig",
    "ViTSegConfig",
    "ViTSegForSemanticSegmentation",
    "count_parameters",
    "create_model",
    "get_entry",
    "list_models",
    "model_normalization",
    "register_model",
    "unregister_model",
]

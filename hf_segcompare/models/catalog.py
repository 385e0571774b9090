"""The built-in models: U-Net and DeepLabV3+ (smp), ViT + SETR-PUP and SegFormer, and their
``-tiny`` test variants.

Written without importing torch or transformers: each entry names its config, model and loader
classes (``"module:attribute"``), imported the first time a model is built
(`hf_segcompare.models.registry.ModelEntry`). So the names and facts of every model are readable in
milliseconds, e.g. to answer a mistyped ``--model`` at once.
"""

from __future__ import annotations

from .recipes import DEMO, PUBLISHED, PUBLISHED_BY_DATASET, recipe_set
from .registry import HALF, IMAGENET, ModelEntry, register_model

_ADAPTERS = "hf_segcompare.models"
# SegformerConfig() is MiT-b0; its test variant has one block per stage and narrow widths.
SEGFORMER_TINY = {
    "depths": [1, 1, 1, 1],
    "hidden_sizes": [8, 16, 32, 64],
    "num_attention_heads": [1, 1, 2, 4],
    "decoder_hidden_size": 32,
}

# smp's DeepLabV3Plus runs its encoder at output stride 16 but defaults to the ASPP rates the paper
# pairs with stride 8 (12/24/36); at stride 16 the paper uses 6/12/18. Dilation adds no parameters.
# (A folder saved without this key keeps smp's default, so older checkpoints load as trained.)
DEEPLAB_OS16 = {"encoder_output_stride": 16, "decoder_atrous_rates": [6, 12, 18]}
# timm's own test ResNet (372,688 parameters) through smp's timm encoder: the tiny CNNs' encoder.
TINY_CNN_ENCODER = "tu-test_resnet"

_SMP = dict(family="cnn", config_class=f"{_ADAPTERS}.smp:SmpSegConfig",
            model_class=f"{_ADAPTERS}.smp:SmpForSemanticSegmentation",
            load_pretrained=f"{_ADAPTERS}.smp:load_smp_encoder", normalization=IMAGENET,
            pretrained_hint="an encoder state dict file, .safetensors or .pth")
_VIT = dict(family="transformer", config_class=f"{_ADAPTERS}.vit:ViTSegConfig",
            model_class=f"{_ADAPTERS}.vit:ViTSegForSemanticSegmentation",
            load_pretrained=f"{_ADAPTERS}.vit:load_vit_encoder", normalization=HALF,
            pretrained_hint="a folder saved by ViTModel.save_pretrained")
_SEGFORMER = dict(
    family="transformer",
    config_class="transformers:SegformerConfig",
    model_class="transformers:SegformerForSemanticSegmentation",
    load_pretrained=f"{_ADAPTERS}.segformer:load_segformer_encoder",
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

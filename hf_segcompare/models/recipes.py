"""Training recipes: each model's published schedule, quick epoch-budget replays, and the CPU demo.

A recipe supplies the defaults of a run (optimizer, learning rate and per-group multipliers,
weight decay and what is exempt from it, schedule, crop, batch, budget); every value can still be
overridden on the command line. Five recipes exist for each model:

``published``
    What the model's authors (or mmsegmentation's reference configs) train with, on Pascal VOC's
    budget: 20k iterations at a global batch of 16 and 512×512 crops, about 30 epochs of the
    10,582-image VOC "aug" set. The default on real data.
``quick-10``, ``quick-15``
    The same optimizer, multipliers and schedule shape, over a budget of 10 or 15 epochs instead of
    20k iterations: the plain 10-/15-epoch comparison, for users who want the quick version.
``fitted``
    The published optimizer, multipliers and schedule shape, fitted to data that has no published
    recipe (your own): crop and evaluation size from its images, warm-up a share of the run,
    images scored at their own size, 30 epochs (VOC's budget in epochs). The default there.
``demo``
    Tuned for the embedded synthetic data from random weights on a CPU (minutes). The default
    when ``--dataset_name synthetic``.

Where a recipe departs from its source (a smaller ViT, no auxiliary heads, VOC's budget instead
of ADE20K's), `Recipe.notes` says so; the README's recipe table shows both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

RECIPE_NAMES = ("published", "quick-10", "quick-15", "fitted", "demo")
VOC_AUG_ITERATIONS = 20_000  # mmsegmentation's VOC-aug schedule (schedule_20k.py), ~30 epochs at batch 16
VOC_AUG_IMAGES = 10_582
# Releases with a published recipe; any other data gets `fitted`, the embedded data `demo`.
PUBLISHED_DATASETS = ("voc", "ade20k", "cityscapes")


@dataclass(frozen=True)
class Recipe:
    """The training defaults one recipe gives one model, and where they come from."""

    name: str
    source: str
    optim: str  # a TrainingArguments `optim` name
    learning_rate: float
    weight_decay: float
    batch_size: int  # global: per device × processes × gradient accumulation
    lr_scheduler_kwargs: dict[str, float]
    optim_args: str | None = None  # e.g. SGD's momentum, in TrainingArguments' "key=value,..." form
    lr_multipliers: str = ""  # "name_part=factor,...": a larger learning rate for matching parameters
    no_decay: str = "transformers"  # what trains without weight decay (see hf_segcompare.engine.optim)
    lr_scheduler_type: str = "polynomial"
    warmup_steps: float = 0  # >= 1: steps; < 1: a fraction of the run
    max_steps: int = -1
    num_train_epochs: float = 3.0
    crop_size: int | None = None  # None: fit the data's largest image (at most 512)
    # How the published figure was evaluated, where it is not the protocol's default: the short side
    # test images are resized to (and the training jitter centres on; default: the crop), and
    # sliding-window inference with its window and step.
    short_side: int | None = None
    eval_mode: str | None = None
    eval_crop: int | None = None
    eval_stride: int | None = None
    notes: str = ""

    def training_defaults(self) -> dict[str, Any]:
        """The `TrainingArguments` values this recipe sets; the per-device batch is left to the caller
        (it depends on the number of processes), the crop size to `DataArguments`."""
        return {
            "recipe": self.name,
            "optim": self.optim,
            "optim_args": self.optim_args,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "lr_multipliers": self.lr_multipliers,
            "no_decay": self.no_decay,
            "lr_scheduler_type": self.lr_scheduler_type,
            "lr_scheduler_kwargs": dict(self.lr_scheduler_kwargs),
            "warmup_steps": self.warmup_steps,
            "max_steps": self.max_steps,
            "num_train_epochs": self.num_train_epochs,
        }

    def data_defaults(self) -> dict[str, Any]:
        """The `DataArguments` values this recipe sets (None: left to the data or the protocol)."""
        return {"crop_size": self.crop_size, "eval_mode": self.eval_mode, "eval_crop": self.eval_crop,
                "eval_stride": self.eval_stride}

    def summary(self) -> dict[str, Any]:
        """What results.json and the card record about the recipe."""
        return {"name": self.name, "source": self.source, "notes": self.notes}


_MMSEG = "mmsegmentation (open-mmlab), "
_VOC_CNN_SCHEDULE = dict(
    optim="sgd", optim_args="momentum=0.9", learning_rate=0.01, weight_decay=5e-4,
    # mmengine's PolyLR(eta_min=1e-4, power=0.9) is transformers' polynomial schedule with these.
    lr_scheduler_kwargs={"lr_end": 1e-4, "power": 0.9},
    # mmseg applies weight decay to every parameter, biases and BN included.
    no_decay="none", batch_size=16, max_steps=VOC_AUG_ITERATIONS, crop_size=512,
)
_VOC_CNN_DIFFERENCES = (
    "SyncBN only when several GPU processes train (--sync_bn's default; else BatchNorm per process); no "
    "auxiliary FCN head (loss weight 0.4 in mmseg); the "
    "augmentation is random scale, crop and flip, without mmseg's photometric distortion."
)

PUBLISHED = {
    "deeplabv3plus": Recipe(
        name="published",
        source=_MMSEG + "configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py with "
                        "_base_/schedules/schedule_20k.py (VOC aug val 75.93 mIoU)",
        notes="ResNet-50 at output stride 16 with the paper's ASPP rates for that stride, 6/12/18 (mmseg's "
              "R-50-D8 runs at stride 8 with 12/24/36). " + _VOC_CNN_DIFFERENCES,
        **_VOC_CNN_SCHEDULE,
    ),
    "unet": Recipe(
        name="published",
        source=_MMSEG + "the VOC-aug CNN schedule its FCN, PSPNet, DeepLabV3 and DeepLabV3+ VOC configs share "
                        "(_base_/schedules/schedule_20k.py, batch 4×4, 512×512); no U-Net recipe for VOC is published",
        notes="U-Net with a ResNet-50 encoder has no authoritative VOC schedule: it gets the one the CNN baseline "
              "uses, so the two CNNs differ only in architecture. " + _VOC_CNN_DIFFERENCES,
        **_VOC_CNN_SCHEDULE,
    ),
    "segformer-b0": Recipe(
        name="published",
        source="SegFormer (Xie et al., NeurIPS 2021), as in " + _MMSEG
               + "configs/segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
        optim="adamw_torch", learning_rate=6e-5, weight_decay=0.01,
        lr_multipliers="decode_head=10",  # mmseg: custom_keys 'head': lr_mult 10
        no_decay="layer_norm",  # mmseg: custom_keys 'norm': decay_mult 0 (MiT's LayerNorms)
        lr_scheduler_kwargs={"lr_end": 0.0, "power": 1.0}, warmup_steps=1500,
        batch_size=16, max_steps=VOC_AUG_ITERATIONS, crop_size=512,
        notes="The paper publishes no VOC schedule; its ADE20K one runs 160k iterations. Here the budget is VOC's "
              "20k iterations, the same as the CNNs' (pass --max_steps 160000 for the ADE20K length). Warm-up "
              "starts from 0 rather than 1e-6 × the learning rate.",
    ),
    "vit": Recipe(
        name="published",
        source="SETR (Zheng et al., CVPR 2021), as in " + _MMSEG
               + "configs/setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py with _base_/schedules/schedule_160k.py",
        optim="sgd", optim_args="momentum=0.9", learning_rate=1e-3, weight_decay=0.0,
        lr_multipliers="decode_head=10",  # mmseg: custom_keys 'head': lr_mult 10
        no_decay="none", lr_scheduler_kwargs={"lr_end": 1e-4, "power": 0.9},
        batch_size=16, max_steps=VOC_AUG_ITERATIONS, crop_size=512,
        notes="ViT-B/16 instead of SETR's ViT-L/16, and no auxiliary heads. SETR publishes no VOC schedule; its "
              "ADE20K one runs 160k iterations, here VOC's 20k. transformers' polynomial schedule scales every "
              "group by one factor, so the ×10 head group ends at 1e-3 where mmengine ends every group at 1e-4.",
    ),
}

_ADE20K_CNN_NOTES = ("ResNet-50 at output stride 16 with ASPP rates 6/12/18 (mmseg's R-50-D8 runs at stride 8). "
                     + _VOC_CNN_DIFFERENCES)
_CITYSCAPES_CNN = dict(_VOC_CNN_SCHEDULE, batch_size=8, max_steps=80_000, crop_size=768, short_side=1024)
_CITYSCAPES_CNN_NOTES = ("768×768 crops, the square closest in area to mmseg's 512×1024 (this toolkit crops squares); "
                         "tested on the whole 2048×1024 image, as mmseg does. " + _VOC_CNN_DIFFERENCES)

# The other releases with published figures: mmsegmentation's configs for that data and model.
PUBLISHED_BY_DATASET = {
    "ade20k": {
        "deeplabv3plus": Recipe(
            name="published", source=_MMSEG + "configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py "
                                              "(ADE20K val 42.72 mIoU, 43.75 multi-scale + flip)",
            notes=_ADE20K_CNN_NOTES, **dict(_VOC_CNN_SCHEDULE, max_steps=80_000)),
        "unet": Recipe(
            name="published", source=_MMSEG + "the ADE20K CNN schedule of its DeepLabV3+ config "
                                              "(_base_/schedules/schedule_80k.py, batch 4×4, 512×512); no U-Net recipe "
                                              "for ADE20K is published",
            notes="U-Net with a ResNet-50 encoder has no published ADE20K schedule: it gets the CNN baseline's. "
                  + _VOC_CNN_DIFFERENCES, **dict(_VOC_CNN_SCHEDULE, max_steps=80_000)),
        "segformer-b0": dataclasses.replace(
            PUBLISHED["segformer-b0"], max_steps=160_000,
            source="SegFormer (Xie et al., NeurIPS 2021), as in " + _MMSEG
                   + "configs/segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py (ADE20K val 37.41 mIoU, 38.34 "
                     "multi-scale + flip; the paper: 37.4)",
            notes="The paper's ADE20K schedule, 160k iterations at batch 16. Warm-up starts from 0 rather than 1e-6 × "
                  "the learning rate."),
        "vit": dataclasses.replace(
            PUBLISHED["vit"], max_steps=160_000,
            source="SETR (Zheng et al., CVPR 2021), as in " + _MMSEG
                   + "configs/setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py (ADE20K val 48.24 mIoU with ViT-L, "
                     "49.99 multi-scale + flip; the paper: 48.58)",
            notes="ViT-B/16 instead of SETR's ViT-L/16, and no auxiliary heads: expect less than the ViT-L figure. "
                  "transformers' polynomial schedule scales every group by one factor, so the ×10 head group ends at "
                  "1e-3 where mmengine ends every group at 1e-4."),
    },
    "cityscapes": {
        "deeplabv3plus": Recipe(
            name="published",
            source=_MMSEG + "configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py (Cityscapes "
                            "val 80.09 mIoU, 81.13 multi-scale + flip)",
            notes=_CITYSCAPES_CNN_NOTES, **_CITYSCAPES_CNN),
        "unet": Recipe(
            name="published", source=_MMSEG + "the Cityscapes CNN schedule of its DeepLabV3+ config "
                                              "(_base_/schedules/schedule_80k.py, batch 4×2); no U-Net (ResNet-50) "
                                              "recipe for Cityscapes is published",
            notes="U-Net with a ResNet-50 encoder has no published Cityscapes schedule: it gets the CNN baseline's. "
                  + _CITYSCAPES_CNN_NOTES, **_CITYSCAPES_CNN),
        "segformer-b0": dataclasses.replace(
            PUBLISHED["segformer-b0"], max_steps=160_000, batch_size=8, crop_size=1024, short_side=1024,
            eval_mode="slide", eval_crop=1024, eval_stride=768,
            source="SegFormer (Xie et al., NeurIPS 2021), as in " + _MMSEG
                   + "configs/segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py (Cityscapes val 76.54 mIoU, "
                     "78.22 multi-scale + flip)",
            notes="1024×1024 crops, batch 8, 160k iterations; sliding 1024 px windows every 768 px at test time. "
                  "Warm-up starts from 0 rather than 1e-6 × the learning rate."),
        "vit": dataclasses.replace(
            PUBLISHED["vit"], learning_rate=0.01, max_steps=80_000, batch_size=8, crop_size=768, short_side=1024,
            eval_mode="slide", eval_crop=768, eval_stride=512,
            source="SETR (Zheng et al., CVPR 2021), as in " + _MMSEG
                   + "configs/setr/setr_vit-l_pup_8xb1-80k_cityscapes-768x768.py (Cityscapes val 79.21 mIoU with "
                     "ViT-L, 81.02 multi-scale + flip)",
            notes="ViT-B/16 instead of SETR's ViT-L/16, and no auxiliary heads: expect less than the ViT-L figure. "
                  "768×768 crops, batch 8, 80k iterations, learning rate 0.01 (schedule_80k.py); sliding 768 px "
                  "windows every 512 px at test time."),
    },
}

# For the embedded synthetic data, from random weights, on a CPU: large learning rates, a short
# warm-up, 15 epochs (the README's quick start: mIoU 0.97 in under three minutes for segformer-b0).
_DEMO_SOURCE = "this toolkit: tuned on the embedded synthetic data, from random weights, on a CPU"
DEMO = {
    model: Recipe(
        name="demo", source=_DEMO_SOURCE, optim="adamw_torch", learning_rate=learning_rate,
        weight_decay=0.01, batch_size=8, lr_scheduler_kwargs={}, warmup_steps=30, num_train_epochs=15,
        notes="Not a VOC recipe: it shows the pipeline working in minutes on coloured shapes.",
    )
    for model, learning_rate in (("unet", 1e-3), ("deeplabv3plus", 1e-3), ("vit", 3e-4), ("segformer-b0", 2e-3))
}


def _warmup_share(published: Recipe) -> float:
    """A warm-up in steps as the share of the published run it is (1,500 of 20k: 7.5 %)."""
    warmup = published.warmup_steps
    return warmup / published.max_steps if warmup >= 1 else warmup


def _quick(published: Recipe, epochs: int) -> Recipe:
    """`published` with a budget of `epochs` epochs; a warm-up in steps keeps its share of the run."""
    warmup = _warmup_share(published)
    return dataclasses.replace(
        published, name=f"quick-{epochs}", max_steps=-1, num_train_epochs=float(epochs), warmup_steps=warmup,
        notes=f"The published recipe over {epochs} epochs instead of {published.max_steps:,} iterations"
              + (f" (warm-up: the same {warmup:.1%} of the run)" if warmup else "") + ". " + published.notes,
    )


def _fitted(published: Recipe) -> Recipe:
    """`published` for data without a published recipe: the crop fitted to the images, the warm-up a
    share of the run, the budget VOC's in epochs (a data set of a few hundred images would otherwise
    train for hundreds of epochs, and 1,500 warm-up steps could be most of a run)."""
    warmup = _warmup_share(published)
    epochs = round(published.max_steps * published.batch_size / VOC_AUG_IMAGES)
    return dataclasses.replace(
        published, name="fitted", max_steps=-1, num_train_epochs=float(epochs), warmup_steps=warmup, crop_size=None,
        notes=f"The published optimizer and schedule for data without a published recipe: crop and evaluation size "
              f"fitted to the images (the smallest multiple of 32 holding the largest, at most 512), {epochs} epochs "
              f"(the published {published.max_steps:,} iterations at batch {published.batch_size} over VOC's "
              f"{VOC_AUG_IMAGES:,} images)" + (f", warm-up {warmup:.1%} of the run" if warmup else "")
              + ", images scored at their own size (the native protocol).",
    )


def recipe_set(published: Recipe, demo: Recipe, other_datasets: dict[str, Recipe] | None = None) -> dict[str, Recipe]:
    """The recipes of one model (what a registry entry carries): its published VOC schedule, that
    schedule over 10 and 15 epochs, fitted to other data, and its CPU demo; and for each release in
    `other_datasets` its published schedule there and the quick versions of it, under
    ``"<name>@<dataset>"`` (see `ModelEntry.recipe`)."""
    recipes = {"published": published, "quick-10": _quick(published, 10), "quick-15": _quick(published, 15),
               "fitted": _fitted(published), "demo": demo}
    for dataset, recipe in (other_datasets or {}).items():
        recipes.update({f"published@{dataset}": recipe, f"quick-10@{dataset}": _quick(recipe, 10),
                        f"quick-15@{dataset}": _quick(recipe, 15)})
    return recipes


def default_recipe_name(dataset_name: str) -> str:
    """``demo`` on the embedded synthetic data, where a 20k-iteration schedule would measure nothing;
    ``published`` on a release with a published recipe; ``fitted`` on anything else."""
    if dataset_name == "synthetic":
        return "demo"
    return "published" if dataset_name in PUBLISHED_DATASETS else "fitted"


def recipe_reason(recipe_name: str, dataset_name: str) -> str:
    """Why a run trains under `recipe_name`, for its first lines."""
    if recipe_name != default_recipe_name(dataset_name):
        return "as asked (--recipe)"
    if recipe_name == "demo":
        return "the default on the embedded synthetic data"
    if recipe_name == "published":
        return f"the default on {dataset_name}, whose published figures it reproduces"
    return (f"the default for data without a published recipe (only {', '.join(PUBLISHED_DATASETS)} have one): "
            "the published optimizer and schedule, crop and evaluation size fitted to the images")


def default_protocol(recipe_name: str | None) -> str:
    """``mmseg`` (mmsegmentation's VOC data pipeline) for the published recipe, whose figures come
    from it; ``native`` for the others (`DataArguments.protocol`)."""
    return "mmseg" if recipe_name == "published" else "native"


def get_recipe(name: str, model: str, dataset: str | None = None) -> Recipe:
    """The recipe `name` of the registered `model` for `dataset` (a release with a schedule of its
    own, such as ``ade20k``, gets that one; any other data the VOC one), a ``-tiny`` variant its
    parent's.

    Raises:
        UsageError: an unknown model or recipe; the message lists the valid ones.
    """
    from .registry import get_entry

    return get_entry(model).recipe(name, dataset)


__all__ = ["DEMO", "PUBLISHED", "PUBLISHED_BY_DATASET", "PUBLISHED_DATASETS", "RECIPE_NAMES", "Recipe",
           "default_protocol",
           "default_recipe_name", "get_recipe", "recipe_reason", "recipe_set"]

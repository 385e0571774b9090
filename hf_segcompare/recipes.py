"""Training recipes: each model's published schedule, quick epoch-budget replays, and the CPU demo.

A recipe supplies the defaults of a run (optimizer, learning rate and per-group multipliers,
weight decay and what is exempt from it, schedule, crop, batch, budget); every value can still be
overridden on the command line. Four recipes exist for each model:

``published``
    What the model's authors (or mmsegmentation's reference configs) train with, on Pascal VOC's
    budget: 20k iterations at a global batch of 16 and 512×512 crops, about 30 epochs of the
    10,582-image VOC "aug" set. The default on real data.
``quick-10``, ``quick-15``
    The same optimizer, multipliers and schedule shape, over a budget of 10 or 15 epochs instead of
    20k iterations: the plain 10-/15-epoch comparison, for users who want the quick version.
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

RECIPE_NAMES = ("published", "quick-10", "quick-15", "demo")
VOC_AUG_ITERATIONS = 20_000  # mmsegmentation's VOC-aug schedule (schedule_20k.py), ~30 epochs at batch 16


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
    no_decay: str = "transformers"  # what trains without weight decay (see hf_segcompare.optim)
    lr_scheduler_type: str = "polynomial"
    warmup_steps: float = 0  # >= 1: steps; < 1: a fraction of the run
    max_steps: int = -1
    num_train_epochs: float = 3.0
    crop_size: int | None = None  # None: fit the data's largest image (at most 512)
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
    "SyncBN becomes BatchNorm per process; no auxiliary FCN head (loss weight 0.4 in mmseg); the "
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


def _quick(published: Recipe, epochs: int) -> Recipe:
    """`published` with a budget of `epochs` epochs; a warm-up in steps keeps its share of the run."""
    warmup = published.warmup_steps
    if warmup >= 1:
        warmup = warmup / published.max_steps
    return dataclasses.replace(
        published, name=f"quick-{epochs}", max_steps=-1, num_train_epochs=float(epochs), warmup_steps=warmup,
        notes=f"The published recipe over {epochs} epochs instead of {published.max_steps:,} iterations"
              + (f" (warm-up: the same {warmup:.1%} of the run)" if warmup else "") + ". " + published.notes,
    )


def recipe_set(published: Recipe, demo: Recipe) -> dict[str, Recipe]:
    """The four recipes of one model (what a registry entry carries): its published schedule, that
    schedule over 10 and 15 epochs, and its CPU demo."""
    return {"published": published, "quick-10": _quick(published, 10), "quick-15": _quick(published, 15),
            "demo": demo}


def default_recipe_name(dataset_name: str) -> str:
    """``demo`` on the embedded synthetic data, where a 20k-iteration schedule would measure nothing;
    ``published`` on everything else."""
    return "demo" if dataset_name == "synthetic" else "published"


def default_protocol(recipe_name: str | None) -> str:
    """``mmseg`` (mmsegmentation's VOC data pipeline) for the published recipe, whose figures come
    from it; ``native`` for the others (`DataArguments.protocol`)."""
    return "mmseg" if recipe_name == "published" else "native"


def get_recipe(name: str, model: str) -> Recipe:
    """The recipe `name` of the registered `model` (a ``-tiny`` variant gets its parent's).

    Raises:
        UsageError: an unknown model or recipe; the message lists the valid ones.
    """
    from .models.registry import get_entry

    return get_entry(model).recipe(name)


__all__ = ["DEMO", "PUBLISHED", "RECIPE_NAMES", "Recipe", "default_protocol", "default_recipe_name", "get_recipe",
           "recipe_set"]

"""The options of a run as dataclasses: `ModelArguments` (which architecture, where its weights
start) and `DataArguments` (which data, how it is cropped and evaluated), each field with its help
text; `check_args` refuses the combinations that cannot work. `hf_segcompare.config.arguments`
parses them (with `SegTrainingArguments`) and fills their defaults from the recipe.

`hf_segcompare.config.option_names` reads these fields from this file's source, without importing
it, to answer a mistyped option before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..data.download import VOC_TRAINVAL_URL
from ..data.transforms import MAX_CROP_SIZE, MAX_EVAL_SIZE
from ..errors import UsageError
from ..evaluation.intervals import BOOTSTRAP_SAMPLES
from ..evaluation.protocol import MAX_SCORED_SIDE, EvalProtocol
from ..models import get_entry, list_models


@dataclass
class ModelArguments:
    """Which architecture to train, and where its weights start."""

    model: str = field(
        default="segformer-b0",
        metadata={"help": "Architecture to train: " + ", ".join(list_models()) + " (and their -tiny test variants, "
                          "or any model registered with hf_segcompare.models.register_model)."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Start from random weights instead of a pretrained encoder."},
    )
    pretrained: str | None = field(
        default=None,
        metadata={"help": "Where the encoder's weights come from: a Hub id, a local folder or state-dict file, or an "
                          "smp weights name. Default per model: " + ", ".join(f"{name}: {get_entry(name).pretrained}"
                                                                     for name in list_models())},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A model saved by this toolkit (save_pretrained): a local folder or a Hub id, to fine-tune "
                          "further or to evaluate."},
    )
    atrous_rates: list[int] | None = field(
        default=None,
        metadata={"help": "DeepLabV3+ ASPP dilation rates (three integers). Default 6 12 18, the paper's rates for "
                          "output stride 16 (smp's own default, 12 24 36, is the paper's for stride 8)."},
    )


@dataclass
class DataArguments:
    """Where the data comes from and at what size it is cropped and scored."""

    dataset_name: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic': the embedded VOC-format data (generated once into --cache_dir); "
            "'voc': Pascal VOC 2012 from --data_dir (or downloaded); anything else: your own data, as a Hub "
            "dataset id, a local parquet file or folder, or an imagefolder, with an image and a mask column "
            "(see --labels for its classes)."
        },
    )
    image_column_name: str | None = field(
        default=None,
        metadata={"help": "Image column of a Hub/parquet/imagefolder dataset (default: 'image' or 'pixel_values', "
                          "whichever it has)."},
    )
    label_column_name: str | None = field(
        default=None,
        metadata={"help": "Mask column of a Hub/parquet/imagefolder dataset (default: 'label' or 'annotation', "
                          "whichever it has)."},
    )
    labels: str | None = field(
        default=None,
        metadata={"help": "The classes the masks hold: a JSON file {\"0\": \"road\", \"1\": \"sidewalk\", ...} or one "
                          "name a line. Default: the dataset's id2label.json, else its label feature's class names, "
                          "else a known release's own classes (VOC's 21 for voc and synthetic)."},
    )
    ignore_index: str = field(
        default="255",
        metadata={"help": "The mask value of void pixels, ignored by loss and metric (0-255), or 'none' when every "
                          "mask value is a class."},
    )
    reduce_labels: bool = field(
        default=False,
        metadata={"help": "Masks whose 0 means 'other', not a class (ADE20K's convention): 0 becomes the ignore "
                          "index and every other value moves down one. Not with --label_map."},
    )
    label_map: str | None = field(
        default=None,
        metadata={"help": "A JSON file {\"7\": 0, \"8\": 1, ...} (or one 'raw id' pair a line, or that JSON inline) "
                          "mapping raw mask values (0-65535) to class ids, e.g. Cityscapes' labelIds to train ids, "
                          "or '{\"0\": 0, \"255\": 1}' for 0/255 binary masks; unmapped values are ignored. Not with "
                          "--reduce_labels: put the reduction in the map."},
    )
    mask_colors: str | None = field(
        default=None,
        metadata={"help": "For RGB masks: a colour table, CSV rows name,r,g,b (CamVid's class_dict.csv; an optional "
                          "id column, 'ignore' for void colours) or JSON {\"sky\": [128, 128, 128], ...}; it names "
                          "the classes too. Default: a class_dict.csv or mask_colors.csv/.json at the dataset's root. "
                          "An RGB mask without one is refused (VOC-format trees: read through VOC's colour map)."},
    )
    strict_labels: bool = field(
        default=False,
        metadata={"help": "Stop, instead of warning, when the masks contradict the label set: a class in no "
                          "training or validation mask, the ignore value covering most pixels, class 0 named like a "
                          "void class ('other', 'unlabeled') without --reduce_labels."},
    )
    train_val_split: float | None = field(
        default=None,
        metadata={"help": "For a dataset without a validation split: the share of its train split held out as "
                          "validation (e.g. 0.15; seeded, so every run is scored on the same images)."},
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "With --dataset_name voc: a folder holding VOCdevkit/VOC2012 (or that folder), "
                          "or the official VOCtrainval_11-May-2012.tar, read without extracting. Without it, "
                          "the tar is downloaded into --cache_dir (resumable, MD5-checked)."},
    )
    voc_url: str = field(
        default=VOC_TRAINVAL_URL, metadata={"help": "Where to download VOCtrainval_11-May-2012.tar from."}
    )
    sbd_dir: str | None = field(
        default=None,
        metadata={"help": "A SegmentationClassAug folder (SBD masks): train becomes VOC train + SBD minus VOC val "
                          "(10,582 ids on the real data)."},
    )
    sbd_list: str | None = field(
        default=None, metadata={"help": "The SBD id list (default: train_aug.txt in or beside --sbd_dir)."}
    )
    drop_invalid: bool = field(
        default=False,
        metadata={"help": "Leave out samples that fail validation (and report them) instead of stopping."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where the synthetic data is generated and the Arrow cache is written "
                          "(default: $HF_SEGCOMPARE_CACHE or ~/.cache/hf_segcompare)."},
    )
    crop_size: int | None = field(
        default=None,
        metadata={"help": "Training crop size (default: the recipe's, 512 for the published ones; the demo and fitted "
                          "recipes take the smallest multiple of 32 holding the largest training image, at most "
                          f"{MAX_CROP_SIZE})."},
    )
    eval_size: int | None = field(
        default=None,
        metadata={"help": "The largest side an evaluation image may have, a multiple of 32: larger ones are shrunk "
                          "to fit, smaller ones never resized (default: the smallest multiple of 32 holding the "
                          f"largest validation image, at most {MAX_EVAL_SIZE}: 512 for VOC)."},
    )
    eval_padding: Literal["batch", "square"] = field(
        default="batch",
        metadata={"help": "batch: images of one shape are evaluated together, each batch padded to its own largest "
                          "height and width rounded up to 32 (fewer pixels computed); square: every image padded to "
                          "--eval_size x --eval_size."},
    )
    protocol: Literal["mmseg", "native"] | None = field(
        default=None,
        metadata={"help": "mmseg: mmsegmentation's pipeline, which the published figures come from: training "
                          "scale jitter draws the short side from 0.5-2.0 x --crop_size, every test image is resized "
                          "to a short side of --crop_size (ratio kept) and its prediction scored at the annotation's "
                          "own size. native: the training jitter fits the long side to 0.5-2.0 crops, test images "
                          "run at native resolution. Default: mmseg under the published recipe, native otherwise."},
    )
    short_side: int | None = field(
        default=None,
        metadata={"help": "With --protocol mmseg: the short side every test image is resized to and the training "
                          "scale jitter centres on (default: the recipe's, 1024 on Cityscapes; else --crop_size)."},
    )
    eval_mode: Literal["whole", "slide"] | None = field(
        default=None,
        metadata={"help": "whole: each test image in one pass; slide: windows of --eval_crop every --eval_stride "
                          "px, logits averaged where they overlap (a large image is then never shrunk). Default: "
                          "the recipe's (slide for SegFormer and SETR on Cityscapes, as published), else whole."},
    )
    eval_crop: int | None = field(default=None, metadata={"help": "Sliding window, px (default: --eval_size)."})
    eval_stride: int | None = field(
        default=None, metadata={"help": "Sliding window step, px (default: two thirds of the window, 341 for 512)."})
    eval_scales: list[float] | None = field(
        default=None,
        metadata={"help": "Test-time scales, e.g. 0.5 0.75 1.0 1.25 1.5 1.75: after training the model is also "
                          "evaluated at each (probabilities averaged at the annotation's size), recorded as its own "
                          "multi-scale result beside the single-scale one."},
    )
    max_eval_side: int = field(
        default=MAX_SCORED_SIDE,
        metadata={"help": "With --protocol mmseg, --eval_mode slide or --eval_scales: an annotation whose long side is "
                          "larger is scored shrunk to it (nearest neighbour) and its image run as one of that size, "
                          "so evaluation memory is bounded by this setting, not by the largest image; each is "
                          "counted in results.json and on the card. The default scores every VOC and Cityscapes "
                          "image at its own size. (The native protocol shrinks images to --eval_size instead.)"},
    )
    eval_flip: bool = field(
        default=False, metadata={"help": "Also average the prediction of each mirrored test image (with "
                                         "--eval_scales, or alone), recorded as its own result."})
    bootstrap_samples: int = field(
        default=BOOTSTRAP_SAMPLES,
        metadata={"help": "Resamples of the validation images for the 95 %% confidence interval of the final mean "
                          "IoU (seeded; saved per image in per_image.npz, so the comparison page pairs runs)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training samples."})

    def eval_protocol(self) -> EvalProtocol:
        """The evaluation protocol these arguments ask for (`protocol` resolved: see `run`)."""
        return EvalProtocol(resize="short_side" if self.protocol == "mmseg" else "native",
                            short_side=self.short_side if self.protocol == "mmseg" else None,
                            mode=self.eval_mode or "whole", crop=self.eval_crop, stride=self.eval_stride,
                            scales=tuple(self.eval_scales or (1.0,)), flip=self.eval_flip, max_side=self.max_eval_side)
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation samples."})


def check_args(model_args: ModelArguments) -> None:
    """Reject combinations that cannot work, before anything is loaded or built."""
    entry = get_entry(model_args.model)
    if model_args.from_scratch and (model_args.pretrained or model_args.model_name_or_path):
        raise UsageError("--from_scratch means random weights: drop it, or drop --pretrained / --model_name_or_path.")
    if model_args.atrous_rates is not None:
        if entry.config_field("decoder_atrous_rates") is None:
            raise UsageError(f"--atrous_rates applies to models with an ASPP module (deeplabv3plus), not --model "
                             f"{model_args.model}.")
        if len(model_args.atrous_rates) != 3 or min(model_args.atrous_rates) < 1:
            raise UsageError(f"--atrous_rates {model_args.atrous_rates}: give three positive integers, e.g. 6 12 18.")
        if model_args.model_name_or_path:
            raise UsageError("--atrous_rates builds a new model; a saved one keeps the rates in its config.json.")


__all__ = ["DataArguments", "ModelArguments", "check_args"]

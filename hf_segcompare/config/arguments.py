"""Command-line arguments of a run, and the recipe that fills in their defaults.

`parse_args` reads `ModelArguments`, `DataArguments` and `SegTrainingArguments` (TrainingArguments
plus the recipe's own options) with `HfArgumentParser`. The chosen model's recipe (see
`hf_segcompare.models.recipes`) supplies every default; anything on the command line overrides it. A run
writes its resolved arguments to ``run_args.json``, and ``run_seg.py outputs/<model>/run_args.json``
replays them (further options after the file still override it).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import HfArgumentParser

from ..data.download import VOC_TRAINVAL_URL
from ..data.transforms import MAX_CROP_SIZE, MAX_EVAL_SIZE
from ..engine.training_args import SegTrainingArguments
from ..errors import UsageError
from ..evaluation.intervals import BOOTSTRAP_SAMPLES
from ..evaluation.protocol import MAX_SCORED_SIDE, EvalProtocol
from ..models import get_entry, list_models
from ..models.recipes import default_recipe_name, get_recipe
from .option_names import CONFIG_SUFFIXES, unknown_options_message
from .run_args import RUN_ARGS_FILE, RUN_FACTS, resolved_args, write_run_args


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


def from_recipe(model: str, recipe: str = "published", dataset: str | None = None,
                **overrides) -> SegTrainingArguments:
    """The arguments of a `model` run under `recipe` (for `dataset`, a release with a published
    schedule of its own such as ``ade20k``; default: VOC's), with `overrides` on top.

    The recipe's batch is global: the per-device batch is split over the processes this
    program runs in (``WORLD_SIZE``) and ``gradient_accumulation_steps``. ``num_train_epochs``
    in `overrides` replaces a recipe's step budget. Data fields (``crop_size``...) belong to
    `DataArguments`; pass the recipe's crop (`get_recipe(...).crop_size`) to `SegTrainer` yourself,
    or let `run` resolve it.

    Raises:
        UsageError: an unknown model, recipe or field, a data field, or a batch that cannot be split.
    """
    data_fields = sorted(set(overrides) & {item.name for item in fields(DataArguments)} - _TRAINING_FIELDS)
    if data_fields:
        raise UsageError(f"{data_fields} are DataArguments fields, not SegTrainingArguments ones: pass them to "
                         "DataArguments(...).")
    unknown = sorted(set(overrides) - _TRAINING_FIELDS)
    if unknown:
        raise UsageError(f"SegTrainingArguments has no field {unknown}.")
    values = recipe_defaults(model, recipe, overrides.get("gradient_accumulation_steps", 1), dataset=dataset)
    values.update(_explicit_choices(set(overrides), overrides))
    return SegTrainingArguments(**{**values, **overrides})


_AUTO_SWITCHES = ("bf16", "fp16", "tf32", "channels_last", "sync_bn")


class _Parser(HfArgumentParser):
    """`HfArgumentParser` whose mistakes are `UsageError`s (one ``error:`` line, exit status 2),
    with no abbreviations: ``--num_train_epoch`` must not quietly stand for another option."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)
        # HfArgumentParser gives an optional bool without a default no bare form: let ``--bf16``
        # mean ``--bf16 true`` for these as for every other switch (unset stays None: "choose").
        for action in self._actions:
            if action.dest in _AUTO_SWITCHES:
                action.nargs, action.const = "?", True

    def error(self, message):
        raise UsageError(f"{message}. See run_seg.py --help.")

    def unknown_options_error(self, remaining: list[str]) -> UsageError:
        """The error for arguments no option takes, with the close matches of each."""
        # HfArgumentParser also accepts --dashed-names; suggest the underscore spelling only.
        options = [option[2:] for option in self._option_string_actions
                   if option.startswith("--") and "-" not in option[2:]]
        return UsageError(unknown_options_message(remaining, options))


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser over (ModelArguments, DataArguments, SegTrainingArguments); `prog` names the command
    in its usage line (default: the program's own name)."""
    return _Parser((ModelArguments, DataArguments, SegTrainingArguments), **({"prog": prog} if prog else {}))


def _given_options(argv: list[str]) -> set[str]:
    """Option names on the command line (abbreviations are refused, so these are whole names)."""
    return {argument[2:].split("=", 1)[0] for argument in argv if argument.startswith("--")}


def _explicit_choices(given: set[str], values) -> dict[str, Any]:
    """Defaults that follow from what the user asked for in so many words.

    - ``--num_train_epochs`` without ``--max_steps`` replaces a recipe's step budget (transformers
      would let the recipe's ``max_steps`` win without a word).
    - ``--save_steps`` / ``--eval_steps`` without their strategy mean saving / evaluating every so many
      steps (TrainingArguments would keep the per-epoch default and ignore them).
    - ``--do_eval false`` means no evaluation at all, and ``--eval_strategy no`` no evaluation
      either unless ``--do_eval`` says otherwise (TrainingArguments would turn ``do_eval`` back on
      for the recipe's per-epoch evaluation).

    Raises:
        UsageError: options that contradict each other.
    """
    choices: dict[str, Any] = {}
    if "num_train_epochs" in given:
        if "max_steps" in given:
            raise UsageError(
                "--max_steps and --num_train_epochs both set the length of training, and --max_steps would "
                "win: pass one of them."
            )
        choices["max_steps"] = -1
    def value(name):
        return values[name] if isinstance(values, dict) else getattr(values, name)

    # An interval given in steps means that strategy: TrainingArguments would let the default per-epoch
    # strategy win and ignore the steps without a word. A strategy (or --do_eval false) given beside them
    # is the user's word and wins, as a later option wins over a replayed run_args.json's.
    for interval, strategy in (("save_steps", "save_strategy"), ("eval_steps", "eval_strategy")):
        if interval in given and strategy not in given and not (
                strategy == "eval_strategy" and "do_eval" in given and not value("do_eval")):
            choices[strategy] = "steps"

    if "do_eval" in given and not value("do_eval"):
        if "eval_strategy" in given and str(value("eval_strategy")) not in ("no", "IntervalStrategy.NO"):
            raise UsageError(f"--do_eval false and --eval_strategy {value('eval_strategy')} contradict each other: "
                             "drop one.")
        choices["eval_strategy"] = "no"
    elif "eval_strategy" in given and str(value("eval_strategy")) in ("no", "IntervalStrategy.NO") \
            and "do_eval" not in given:
        choices["do_eval"] = False
    return choices


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def recipe_defaults(model: str, recipe_name: str, gradient_accumulation_steps: int = 1,
                    world_size: int | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The training defaults `recipe_name` gives `model` on `dataset`: the recipe's values, the
    per-device batch that gives the recipe's global batch on this many processes, and the output
    folder. (The recipe's data values, such as its crop, are `DataArguments`': see
    `hf_segcompare.pipeline.run`.)

    Raises:
        UsageError: the recipe's batch does not split evenly over the processes.
    """
    recipe = get_recipe(recipe_name, model, dataset)
    if gradient_accumulation_steps < 1:
        raise UsageError(f"--gradient_accumulation_steps {gradient_accumulation_steps}: give 1 or more.")
    world_size = world_size or _world_size()
    devices = world_size * gradient_accumulation_steps
    if recipe.batch_size % devices:
        raise UsageError(
            f"the {recipe_name} recipe of {model} trains with a global batch of {recipe.batch_size}, which does not "
            f"split over {world_size} process(es) x {gradient_accumulation_steps} accumulation step(s): pass "
            "--per_device_train_batch_size (and --gradient_accumulation_steps) yourself."
        )
    defaults = {**recipe.training_defaults(), "per_device_train_batch_size": recipe.batch_size // devices,
                "output_dir": str(Path("outputs") / model)}
    if world_size > 1 and not torch.cuda.is_available():
        # `accelerate launch --multi_gpu` on a machine without CUDA starts N processes, but
        # accelerate only joins them into one gloo group (MULTI_CPU) when asked for the CPU;
        # otherwise each process would silently train and evaluate everything on its own.
        defaults["use_cpu"] = True
    return defaults


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path}: no such config file. Pass a run_args.json written by a run, or options.")
    text = path.read_text(encoding="utf-8")
    import yaml

    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UsageError(
            f"{path}: not valid {path.suffix.lstrip('.').upper()} ({str(error).splitlines()[0]})."
        ) from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of option names to values.")
    return values


def parse_args(argv: list[str] | None = None, prog: str | None = None
               ) -> tuple[ModelArguments, DataArguments, SegTrainingArguments]:
    """Parse the command line; the chosen model's recipe fills in every value not given.

    ``argv`` may start with a ``.json``/``.yaml`` file of option values (e.g. a run's
    run_args.json); options after it override the file.

    Raises:
        UsageError: a config file that cannot be used, or a recipe batch that cannot be split.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    file_values: dict[str, Any] = {}
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        config = Path(argv.pop(0))
        file_values = {key: value for key, value in _read_config(config).items() if key != RUN_FACTS}
        known = {field.name for dataclass_type in parser.dataclass_types for field in fields(dataclass_type)}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise UsageError(f"{config}: unknown option(s) {unknown}; see run_seg.py --help.")
        parser.set_defaults(**file_values)
    # First pass: only what the defaults depend on (an unknown --model exits with status 2
    # listing the valid names).
    probe, _ = parser.parse_known_args(argv)
    recipe_name = probe.recipe or default_recipe_name(probe.dataset_name)
    parser.set_defaults(**recipe_defaults(probe.model, recipe_name, probe.gradient_accumulation_steps,
                                          dataset=probe.dataset_name))
    parser.set_defaults(**file_values)  # the file wins over the recipe, the command line over both
    parser.set_defaults(**_explicit_choices(_given_options(argv), probe))
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        raise parser.unknown_options_error(remaining)
    return tuple(parsed)


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


__all__ = [
    "DataArguments",
    "ModelArguments",
    "RUN_ARGS_FILE",
    "SegTrainingArguments",
    "build_parser",
    "check_args",
    "from_recipe",
    "parse_args",
    "resolved_args",
    "recipe_defaults",
    "write_run_args",
]


_TRAINING_FIELDS = {item.name for item in fields(SegTrainingArguments)}

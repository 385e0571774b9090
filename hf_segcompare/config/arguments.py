"""Command-line arguments of a run, and the recipe that fills in their defaults.

`parse_args` reads `ModelArguments`, `DataArguments` (`hf_segcompare.config.options`) and
`SegTrainingArguments` (TrainingArguments plus the recipe's own options) with `HfArgumentParser`.
The chosen model's recipe (see `hf_segcompare.models.recipes`) supplies every default; anything on
the command line overrides it. A run writes its resolved arguments to ``run_args.json``, and
``run_seg.py outputs/<model>/run_args.json`` replays them (further options after the file still
override it).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser

from ..engine.training_args import SegTrainingArguments
from ..errors import UsageError
from ..models.recipes import default_recipe_name, get_recipe
from .option_names import CONFIG_SUFFIXES, unknown_options_message
from .options import DataArguments, ModelArguments, check_args
from .run_args import RUN_ARGS_FILE, RUN_FACTS, resolved_args, write_run_args


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

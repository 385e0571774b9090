"""One run, resolved once: the options given become a frozen `RunPlan` holding every value the run
uses and why, before anything trains.

What is given always wins. For an evaluation of a saved model, its training record comes next
(protocol, crop, short side, sliding window), so the new figure is comparable with the card's; then
the recipe's values for this data; the rest is fitted to the data (`RunPlan.fitted_to`). The plan
is what `SegTrainer` is built from (explicit values: it applies no recipe itself), what
``run_args.json`` is written from, and what the record's recipe section describes. The caller's
argument objects are never changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.arguments import DataArguments, ModelArguments, check_args
from ..data.segmentation_data import SegmentationData
from ..data.transforms import MAX_CROP_SIZE, MAX_EVAL_SIZE, fitted_size, image_sizes
from ..engine.losses import SegmentationLoss, check_class_weights_choice, check_loss, class_weights_of
from ..engine.sync_batchnorm import check_sync_batchnorm_device
from ..engine.training_args import SegTrainingArguments
from ..errors import UsageError
from ..evaluation.protocol import EvalProtocol
from ..models import get_entry
from ..models.recipes import Recipe, default_protocol, get_recipe, recipe_reason
from ..models.registry import ModelEntry
from ..report.results import RESULTS_FILE, RunResults


@dataclass(frozen=True)
class RunPlan:
    """Every value one run uses, decided before it trains.

    Attributes:
        model_args, training_args: as given (run_args.json replays what the user asked for).
        data_args: the data options with the protocol, the recipe's data values and, once fitted to
            the data (`fitted_to`), the crop and evaluation sizes decided.
        entry: the model's registry entry.
        recipe: the recipe the training defaults came from (None: none was named), and why it.
        protocol_reason: why this data protocol (for the run's first lines).
        eval_protocol: how every evaluation runs (windows and short side completed once fitted).
        pretrained_source: where the encoder's weights start (None: random weights or a saved model).
        push_repo: the Hub repo the run publishes to (None: no push).
        resume_from: the checkpoint training resumes from (None: a fresh start), and whether it
            holds the whole budget already (`whole_budget`), once the output folder is checked
            (`hf_segcompare.pipeline.output_folder`).
        loss: the training loss and its class weights, once fitted to the data (``--class_weights
            balanced`` counts the training masks); None: the model's own cross-entropy.
        shrunk_for_scoring: how many validation images the protocol scores shrunk to its ``max_side``
            (`EvalProtocol.shrunk_for_scoring`), and the first few ids, once fitted to the data.
    """

    model_args: ModelArguments
    data_args: DataArguments
    training_args: SegTrainingArguments
    entry: ModelEntry
    recipe: Recipe | None
    recipe_reason: str | None
    protocol_reason: str
    eval_protocol: EvalProtocol
    pretrained_source: str | None
    push_repo: str | None
    resume_from: str | None = None
    whole_budget: bool = False
    loss: dict[str, Any] | None = None
    shrunk_for_scoring: tuple[int, tuple[str, ...]] = (0, ())

    def resuming(self, resume_from: str | None, whole_budget: bool) -> "RunPlan":
        """This plan resuming from `resume_from` (None: a fresh start)."""
        return dataclasses.replace(self, resume_from=resume_from, whole_budget=whole_budget)

    def fitted_to(self, dataset: SegmentationData) -> "RunPlan":
        """This plan with the crop and evaluation sizes the data decides where none was given (the
        smallest multiple of 32 holding the split's largest image, at most 512).

        Raises:
            UsageError: a global batch larger than the training split (`_check_batch_fits`).
        """
        data = self.data_args
        _check_batch_fits(self.training_args, len(dataset["train"]) if self.training_args.do_train else None)
        crop = data.crop_size
        if crop is None and self.training_args.do_train:
            crop = fitted_size(dataset["train"], MAX_CROP_SIZE)
        validation = dataset["validation"]
        sizes = image_sizes(validation)
        eval_size = data.eval_size or fitted_size(validation, MAX_EVAL_SIZE, sizes)
        shrunk = self.eval_protocol.shrunk_for_scoring(sizes)
        ids = validation.select_columns(["id"]) if "id" in validation.column_names else None  # no image decoded
        shrunk_ids = tuple(str(ids[index]["id"]) if ids is not None else f"#{index}" for index in shrunk[:3])
        args = self.training_args
        loss = None
        if args.do_train and (args.loss != "ce" or args.class_weights != "none"):
            weights, weights_from = class_weights_of(args.class_weights, dataset["train"], dataset.labels)
            loss = {"name": args.loss, "class_weights": weights, "class_weights_from": weights_from}
        return dataclasses.replace(
            self, data_args=dataclasses.replace(data, crop_size=crop, eval_size=eval_size),
            eval_protocol=self.eval_protocol.with_defaults(eval_size, crop or eval_size), loss=loss,
            shrunk_for_scoring=(len(shrunk), shrunk_ids))

    def segmentation_loss(self, ignore_index: int) -> SegmentationLoss | None:
        """The loss `SegTrainer` trains with (None: the model's own cross-entropy)."""
        if self.loss is None:
            return None
        return SegmentationLoss(self.loss["name"], ignore_index, self.loss["class_weights"])

    def recorded_model_args(self) -> ModelArguments:
        """The model options as run_args.json holds them: the pretrained source named."""
        if self.pretrained_source is None:
            return self.model_args
        return dataclasses.replace(self.model_args, pretrained=self.pretrained_source)

    def recipe_record(self, optimizer_name: str | None, param_groups: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The record's recipe section: the recipe, the values given on top of it, and the optimizer's
        groups as Trainer built them (`optimizer_name`, `param_groups`)."""
        if self.recipe is None:
            return None
        args, data = self.training_args, self.data_args
        recipe = self.recipe
        defaults = {**recipe.training_defaults(), **recipe.data_defaults(), "short_side": recipe.short_side}
        current = {key: getattr(args, key, getattr(data, key, None)) for key in defaults}
        overridden = {key: current[key] for key, value in defaults.items()
                      if key != "recipe" and value is not None and current[key] != value}
        return {
            **self.recipe.summary(),
            "overridden": {key: getattr(value, "value", value) for key, value in overridden.items()},
            "global_batch_size": args.global_batch_size(),
            "optimizer": optimizer_name,
            "param_groups": param_groups,
        }

    def first_lines(self, dataset: SegmentationData) -> list[str]:
        """The run's first lines: the data's label set, where it came from and how its masks were read,
        what the masks contradict in it (a line each), the recipe and the protocol, each with why, so
        that no default passes unseen."""
        info = dataset.label_info
        lines = [f"labels: {info.labels.describe()}, from {info.source}; masks: {info.describe_decoding()}"]
        lines += [f"label check: {check.message}" for check in info.checks]
        if self.training_args.do_train and self.recipe is not None:
            lines.append(f"recipe: {self.recipe.name}, {self.recipe_reason}")
        lines.append(f"protocol: {self.data_args.protocol}, {self.protocol_reason}")
        count, ids = self.shrunk_for_scoring
        if count:
            lines.append(f"scoring: {count} validation image(s) larger than {self.eval_protocol.max_side} px a side "
                         f"({', '.join(ids)}{', ...' if count > len(ids) else ''}) scored shrunk to fit, so memory "
                         "stays bounded (--max_eval_side raises the limit)")
        return lines


def resolve_run(model_args: ModelArguments, data_args: DataArguments,
                training_args: SegTrainingArguments) -> RunPlan:
    """The `RunPlan` of these options (sizes not yet fitted to the data: see `RunPlan.fitted_to`).

    Raises:
        UsageError: options that cannot work together, an unknown model or recipe, or a bad
            evaluation window or scale.
    """
    check_args(model_args)
    if data_args.bootstrap_samples < 1:
        raise UsageError(f"--bootstrap_samples {data_args.bootstrap_samples}: give at least 1 (1000 for the "
                         "95 % interval the report shows).")
    _check_loss(training_args)
    _check_reporting(training_args)
    if training_args.do_train:
        check_sync_batchnorm_device(training_args.sync_bn, training_args.device.type)
    entry = get_entry(model_args.model)
    recipe_name = training_args.recipe
    recipe = get_recipe(recipe_name, model_args.model, data_args.dataset_name) if recipe_name else None
    data_args, protocol_reason = _resolve_protocol(model_args, data_args, training_args, recipe)
    eval_protocol = data_args.eval_protocol()  # a bad --eval_crop/--eval_stride/--eval_scales stops here
    pretrained = None if model_args.from_scratch or model_args.model_name_or_path else \
        (model_args.pretrained or entry.pretrained)
    push_repo = (training_args.hub_model_id or Path(training_args.output_dir).name) \
        if training_args.push_to_hub else None
    return RunPlan(model_args=model_args, data_args=data_args, training_args=training_args, entry=entry,
                   recipe=recipe, recipe_reason=recipe_reason(recipe_name, data_args.dataset_name) if recipe else None,
                   protocol_reason=protocol_reason, eval_protocol=eval_protocol, pretrained_source=pretrained,
                   push_repo=push_repo)


def _check_batch_fits(args: SegTrainingArguments, train_images: int | None) -> None:
    """A global batch larger than the training split is refused: each step would see the split, not the
    batch the card and the budget name (Trainer keeps the last, smaller batch of an epoch)."""
    batch = args.global_batch_size()
    if train_images is not None and batch > train_images:
        raise UsageError(
            f"a global batch of {batch} ({args.per_device_train_batch_size} per process x {args.world_size} "
            f"process(es) x {args.gradient_accumulation_steps} accumulation step(s)) is larger than the "
            f"{train_images} training images: every step would see {train_images}, not {batch}. Pass "
            "--per_device_train_batch_size (and --gradient_accumulation_steps) for a global batch of "
            f"{train_images} or fewer.")


def _check_loss(args: SegTrainingArguments) -> None:
    """``--loss`` and ``--class_weights`` that cannot work stop before any data loads."""
    check_loss(args.loss, weighted=args.class_weights != "none")
    check_class_weights_choice(args.class_weights)


def _check_reporting(args: SegTrainingArguments) -> None:
    """``--report_to tensorboard`` without TensorBoard installed stops before any data loads (Trainer
    would raise from deep inside its callbacks)."""
    import importlib.util

    if "tensorboard" in (args.report_to or []) and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--report_to tensorboard: TensorBoard is not installed. pip install "
                         "'hf_segcompare[tensorboard]' (or tensorboard), or drop --report_to tensorboard.")


def _resolve_protocol(model_args: ModelArguments, data_args: DataArguments, training_args: SegTrainingArguments,
                      recipe: Recipe | None) -> tuple[DataArguments, str]:
    """`data_args` with the data protocol and the recipe's data values decided, and why the protocol
    (the order of precedence is the module's)."""
    reason = "as asked (--protocol)" if data_args.protocol else None
    record = Path(model_args.model_name_or_path or "") / RESULTS_FILE
    if not data_args.protocol and not training_args.do_train and model_args.model_name_or_path and record.is_file():
        trained = RunResults.read(record).dataset
        if trained.get("protocol"):
            evaluation = trained.get("evaluation") or {}
            recorded = {"protocol": trained["protocol"], "crop_size": trained.get("crop_size"),
                        "short_side": evaluation.get("short_side"), "eval_mode": evaluation.get("mode"),
                        "eval_crop": evaluation.get("crop"), "eval_stride": evaluation.get("stride")}
            data_args = _fill(data_args, recorded)
            reason = f"the one {record} was evaluated with, so the figures compare"
    if recipe is not None:
        data_args = _fill(data_args, {**recipe.data_defaults(), "short_side": recipe.short_side})
    if reason is None:
        protocol = default_protocol(recipe.name if recipe else None)
        reason = ("the published recipe's: mmsegmentation's pipeline, which its figures come from"
                  if protocol == "mmseg" else "images scored at their own size")
        data_args = dataclasses.replace(data_args, protocol=protocol)
    return data_args, reason


def _fill(data_args: DataArguments, values: dict) -> DataArguments:
    """`data_args` with each of `values` that is not None set where `data_args` has none."""
    return dataclasses.replace(data_args, **{key: value for key, value in values.items()
                                             if value is not None and getattr(data_args, key) is None})


__all__ = ["RunPlan", "resolve_run"]

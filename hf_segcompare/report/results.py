"""`RunResults`: what one run measured, as a type. `run` fills and writes it (results.json, or
``eval_<dataset>_validation.json`` for an evaluation-only run); the summary line, the cards, the
comparison page and the push read it back with `RunResults.read`.

Every figure in it comes from the run: parameters, wall time, samples/s, peak memory, the
optimizer's groups, every evaluation. It never holds a token: the training arguments are recorded
through `TrainingArguments.to_dict`, which masks every ``*_token`` value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecordError

RESULTS_FILE = "results.json"
# 2: ignore index, normalisation, push record, schema_version; 3: speed, inference; 4: evaluation
# protocol (dataset.protocol, dataset.evaluation), augmented_eval, confusion_matrix; 5: the label set's
# source and decoding (dataset.label_source, label_map, reduce_labels, mask_decoding), validation_split,
# columns; ignore_index may be null; 6: changed_on_resume; 7: bootstrap (the mean IoU's interval and the
# per-image file), calibration, and eval_boundary_iou* / eval_ece in every evaluation; 8: training_setup
# (the loss and its class weights, SyncBatchNorm), published_model (the best checkpoint's step); 9: how
# masks were read (dataset.mask_reading; mask_decoding always set), what they hold (dataset.class_pixels)
# and the label checks that fired (dataset.label_checks); 10: the largest side an annotation is scored at and
# how many were shrunk to it (dataset.evaluation.max_side, shrunk_images); 11: boundary IoU by the official
# definition (void a value of its own; before, void took the prediction's value): older records' boundary
# figures are dropped on reading
SCHEMA_VERSION = 11
# The first schema whose boundary IoU is the official definition's (older records' are dropped on reading).
OFFICIAL_BOUNDARY_SCHEMA = 11


class Scores(dict):
    """One evaluation as results.json holds it: its figures under ``eval_<name>`` (``eval_mean_iou``,
    ``eval_iou_<class>``, ``eval_boundary_iou_<class>``, ``eval_ece`` ...) beside ``step`` and ``epoch``
    (and, for a test-time-augmented evaluation, its ``protocol``). It is the dict it writes; the report
    reads it through names (`mean_iou`, `class_iou`, `figure`), so only this class knows the keys.
    """

    PREFIX = "eval_"

    @classmethod
    def of(cls, values: dict | None) -> Scores | None:
        """`values` as `Scores` (None stays None)."""
        return values if values is None or isinstance(values, cls) else cls(values)

    @classmethod
    def key(cls, name: str) -> str:
        """Where the figure `name` is in the file (``eval_<name>``), for a message that points into it."""
        return cls.PREFIX + name

    def figure(self, name: str) -> float | None:
        """The figure `name` (``mean_iou``, ``iou_cat``, ``runtime`` ...); None when absent or null."""
        return self.get(self.key(name))

    def has(self, name: str) -> bool:
        """Whether the evaluation recorded the figure `name` (null included)."""
        return self.key(name) in self

    def with_figures(self, **figures: float | None) -> Scores:
        """A copy with `figures` (by name) replaced or added."""
        return Scores({**self, **{self.key(name): value for name, value in figures.items()}})

    @property
    def mean_iou(self) -> float | None:
        return self.figure("mean_iou")

    @property
    def mean_accuracy(self) -> float | None:
        return self.figure("mean_accuracy")

    @property
    def overall_accuracy(self) -> float | None:
        return self.figure("overall_accuracy")

    @property
    def boundary_iou(self) -> float | None:
        return self.figure("boundary_iou")

    @property
    def ece(self) -> float | None:
        return self.figure("ece")

    def class_iou(self, name: str) -> float | None:
        return self.figure(f"iou_{name}")

    def class_boundary_iou(self, name: str) -> float | None:
        return self.figure(f"boundary_iou_{name}")

    @property
    def step(self) -> int | None:
        return self.get("step")

    @property
    def epoch(self) -> float | None:
        return self.get("epoch")

    @property
    def protocol_name(self) -> str | None:
        """The test-time augmentation's name (``multi-scale + flip`` ...); None for a single-scale evaluation."""
        return (self.get("protocol") or {}).get("name")


@dataclass(frozen=True)
class TrainSummary:
    """The ``train`` block: what training took, for the whole run (a resumed one included).

    Attributes:
        wall_time_s: seconds trained (a resumed run's earlier seconds included).
        samples_per_second: the samples seen over `wall_time_s`.
        steps, epochs: where training ended.
        final_train_loss: the mean training loss per step over the run (None: none was logged).
        resumed_from: the checkpoint the last part of the run resumed from (None: it ran in one go).
    """

    wall_time_s: float
    samples_per_second: float
    steps: int
    epochs: float | None
    final_train_loss: float | None = None
    resumed_from: str | None = None

    @classmethod
    def of(cls, values) -> TrainSummary | None:
        """`values` (the block as results.json holds it) as a `TrainSummary`; None stays None.

        Raises:
            TypeError: a field it does not have, or one every run writes missing (`RunResults.read` says
                which file).
        """
        return values if values is None or isinstance(values, cls) else cls(**values)


def _json_safe(value):
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


@dataclass
class RunResults:
    """One run's record.

    `status` is ``complete``, or ``diverged`` for a run stopped by non-finite numbers: such a record
    has no `final_eval` (and a `diverged` block), and the comparison page and the push refuse it.
    `dataset` holds the data's name, path, sizes, ``class_names`` and ``ignore_index``; `train`
    (None for an evaluation-only run) the wall time, samples/s, steps, epochs, mean loss and the
    checkpoint it resumed from; `hub` the repo and commit of its push; `speed` the device switches
    it ran with (precision, TF32, memory format, compile, data-loader workers); `inference` what the
    trained model costs to run (`hf_segcompare.evaluation.cost`); `augmented_eval` the final weights'
    scores under test-time augmentation (``protocol`` says which), beside the single-scale
    `final_eval`; `confusion_matrix` the final evaluation's pixel counts, rows the annotation's
    class and columns the prediction's; `changed_on_resume` every option (or process count) a resume
    changed, with its values before and after and the step from which the new one applied;
    `bootstrap` the final mean IoU's confidence interval over validation images
    (`hf_segcompare.evaluation.intervals`) and the file of per-image counts it came from;
    `calibration` the final evaluation's reliability bins and expected calibration error;
    `training_setup` how the model was trained beyond the recipe's numbers: ``loss`` (its name, class
    weights and where they came from; ``cross-entropy`` by the model itself when none was asked for)
    and ``sync_batchnorm``; `published_model`, with ``load_best_model_at_end``, the step whose
    weights were published (`final_eval` is then that step's evaluation) and the last evaluation.
    """

    model: str
    architecture: str
    family: str
    parameters: int
    dataset: dict[str, Any]
    peak_memory: dict[str, Any]
    environment: dict[str, Any]
    args: dict[str, Any]
    status: str = "complete"
    train: TrainSummary | None = None
    recipe: dict[str, Any] | None = None
    normalization: dict[str, list[float]] | None = None
    evaluations: list[Scores] = field(default_factory=list)
    final_eval: Scores | None = None
    train_loss: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] | None = None
    hub: dict[str, str] | None = None
    speed: dict[str, Any] | None = None
    inference: dict[str, Any] | None = None
    augmented_eval: Scores | None = None
    confusion_matrix: list[list[int]] | None = None
    changed_on_resume: list[dict[str, Any]] = field(default_factory=list)
    bootstrap: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    training_setup: dict[str, Any] | None = None
    published_model: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        # Evaluations are read through `Scores`, whichever way the record was made.
        self.final_eval, self.augmented_eval = Scores.of(self.final_eval), Scores.of(self.augmented_eval)
        self.train = TrainSummary.of(self.train)
        self.evaluations = [Scores.of(entry) for entry in self.evaluations]

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    @property
    def ignore_index(self) -> int | None:
        """The mask value loss and metric skipped (None: none was)."""
        return self.dataset["ignore_index"]

    @property
    def boundary_predates_official(self) -> bool:
        """Whether the run scored boundary IoU under the earlier definition (its figures are not read)."""
        return self.schema_version < OFFICIAL_BOUNDARY_SCHEMA

    @property
    def mean_iou(self) -> float | None:
        """The final validation mean IoU (None when the run was not evaluated)."""
        return self.final_eval.mean_iou if self.final_eval else None

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON content (NaN becomes null)."""
        return _json_safe(dataclasses.asdict(self))

    def write(self, path: str | Path) -> Path:
        """Write to `path` (JSON); return it."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> "RunResults":
        """Read a record `write` wrote (or an older results.json: missing fields take their defaults).

        Raises:
            RecordError: not such a record (not JSON, fields missing, or a field of another kind than
                a run writes, such as an edited ``final_eval``); the message names the file and field.
        """
        path = Path(path)
        damaged = "the file was edited or damaged: restore it from the run's output folder, or run it again"
        try:
            values = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RecordError(f"{path} is not a run record (not JSON: {error}); {damaged}.") from None
        if not isinstance(values, dict):
            raise RecordError(f"{path} is not a run record (a JSON {type(values).__name__}, not an object).")
        names = {item.name for item in dataclasses.fields(cls)}
        required = {item.name for item in dataclasses.fields(cls)
                    if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise RecordError(f"{path} is not a run record of hf_segcompare (no {missing}).")
        problem = _wrong_kind(values)
        if problem:
            raise RecordError(f"{path}: {problem}; {damaged}.")
        try:
            return cls(**{key: value for key, value in _upgraded(values).items() if key in names})
        except TypeError as error:  # a typed block with a field no run writes, or without one every run writes
            raise RecordError(f"{path}: a block of it is not what a run writes ({error}); {damaged}.") from None


def _field_kinds() -> dict[str, tuple[type, ...]]:
    """Each record field's JSON kinds, from `RunResults`' annotations (``dict[str, Any] | None`` ->
    (dict, NoneType)); an int field takes no float, as `write` never writes one there."""
    hints = typing.get_type_hints(RunResults)
    kinds = {}
    for name, hint in hints.items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        # an evaluation or a typed block is written as a JSON object
        kinds[name] = tuple(dict if option in (Scores, TrainSummary) else typing.get_origin(option) or option
                            for option in options)
    return kinds


def _wrong_kind(values: dict[str, Any]) -> str | None:
    """What in a record's JSON is not of the kind a run writes (None: every field is): a field's own
    kind, and every evaluation figure (``eval_*``) a number or null."""
    kinds = _field_kinds()
    for name, value in values.items():
        expected = kinds.get(name)
        if expected is None:  # a field of a later schema: read by nothing here
            continue
        if not isinstance(value, expected) or isinstance(value, bool):  # bool is an int to isinstance
            wanted = " or ".join("null" if kind is type(None) else kind.__name__ for kind in expected)
            return f"{name} is {json.dumps(value)[:40]}, where a run writes a {wanted}"
    evaluations = [("final_eval", values.get("final_eval"))] + [
        (f"evaluations[{index}]", entry) for index, entry in enumerate(values.get("evaluations") or [])]
    for where, evaluation in evaluations:
        if evaluation is None:
            continue
        if not isinstance(evaluation, dict):
            return f"{where} is {json.dumps(evaluation)[:40]}, where a run writes an evaluation (an object)"
        for key, figure in evaluation.items():
            if key.startswith("eval_") and figure is not None and \
                    (isinstance(figure, bool) or not isinstance(figure, (int, float))):
                return f"{where}.{key} is {json.dumps(figure)[:40]}, where a run writes a number"
    return None


def _upgraded(values: dict[str, Any]) -> dict[str, Any]:
    """An older record's content in today's form: the one place that knows the older formats (every
    reader of a record sees the current fields). Fields added later that mean "absent" (a hub block,
    speed, inference) simply take their defaults."""
    values = {**values, "dataset": dict(values["dataset"])}
    version = values.setdefault("schema_version", 1)
    if version < 2:  # before label sets were read from the data, every run was on VOC's
        values["dataset"].setdefault("ignore_index", 255)
    if version < 4:  # before evaluation protocols were recorded, every image ran at its own size
        values["dataset"].setdefault("protocol", "native")
        values["dataset"].setdefault("evaluation", None)
    # boundary IoU of another definition (void took the prediction's value): not comparable
    if version < OFFICIAL_BOUNDARY_SCHEMA:
        for name in ("final_eval", "augmented_eval"):
            if values.get(name):
                values[name] = _without_boundary(values[name])
        if values.get("evaluations"):
            values["evaluations"] = [_without_boundary(entry) for entry in values["evaluations"]]
    return values


def _without_boundary(scores: dict) -> dict:
    return {key: value for key, value in scores.items() if not key.startswith("eval_boundary_iou")} \
        if isinstance(scores, dict) else scores


def evaluation_record_name(dataset_name: str, split: str = "validation") -> str:
    """``eval_<dataset>_<split>.json``: where an evaluation-only run writes its record."""
    name = Path(dataset_name).name if Path(dataset_name).expanduser().exists() else dataset_name.replace("/", "--")
    return f"eval_{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-') or 'data'}_{split}.json"


def record_name(results: RunResults) -> str:
    """The file a run's record goes to: results.json for training, its own file for an evaluation."""
    return RESULTS_FILE if results.train else evaluation_record_name(results.dataset["name"])


def summary_line(results: RunResults, output_dir: str | Path) -> str:
    """The lines a run prints at the end."""
    final = results.final_eval
    parts = [f"{results.model}: {results.parameters:,} parameters"]
    if final:
        parts.append(
            f"validation mean_iou {final.mean_iou:.3f} (mean_accuracy {final.mean_accuracy:.3f}, "
            f"overall_accuracy {final.overall_accuracy:.3f})"
        )
    if results.train:
        train = results.train
        parts.append(f"trained {train.epochs:.2f} epochs in {train.wall_time_s:.0f} s "
                     f"({train.samples_per_second:.1f} samples/s)")
    peak = results.peak_memory
    parts.append(f"peak memory {peak['bytes'] / 2**20:.0f} MiB ({peak['kind']})")
    lines = "; ".join(parts) + f"\nresults: {Path(output_dir) / record_name(results)}"
    if results.hub:
        lines += f"\npushed: {results.hub['commit_url']}"
    return lines


__all__ = ["OFFICIAL_BOUNDARY_SCHEMA", "RESULTS_FILE", "SCHEMA_VERSION", "RunResults", "Scores", "TrainSummary",
           "evaluation_record_name", "record_name", "summary_line"]

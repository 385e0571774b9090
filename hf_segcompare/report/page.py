"""The comparison page: several runs' records side by side, with the settings they differ in and
the conclusions their figures support (`write_comparison`)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecordError, UsageError
from ..evaluation.intervals import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE_LEVEL,
    Difference,
    mean_iou_interval,
    paired_difference,
)
from ..evaluation.metrics import scores_from_counts
from ..evaluation.per_image import PerImageCounts, per_image_file
from ..evaluation.protocol import protocol_from_record
from ..plotting import pyplot
from .card import TEMPLATES, dataset_identity, fmt, label_set_of
from .figures import plot_miou_against
from .results import RESULTS_FILE, RunResults, Scores


def read_runs(paths: list[str | Path]) -> list[RunResults]:
    """The record (results.json) of each output folder (or file); they must share the data and labels,
    and each run is given once (a folder given twice would count as two seeds)."""
    runs, sources, seen = [], {}, {}
    for path in map(Path, paths):
        results_file = record_file(path)
        if not results_file.is_file():
            raise UsageError(f"{path} has no results.json: pass output folders of run_seg runs.")
        same = seen.get(results_file.resolve())
        if same is not None:
            raise UsageError(f"{same} and {path} are the same run ({results_file.resolve()}): one run counts once; "
                             "pass each run's folder once (seeds are separate runs, each in its own folder).")
        seen[results_file.resolve()] = path
        results = RunResults.read(results_file)
        if results.status != "complete":
            raise UsageError(f"{results_file} records a run that did not finish ({results.status}): "
                                  f"{(results.diverged or {}).get('message', 'no result')}")
        if results.mean_iou is None:
            raise UsageError(f"{results_file} has no evaluation to compare.")
        runs.append(results)
        sources[id(results)] = results_file
    if not runs:
        raise UsageError("no runs given")
    first = runs[0]
    for run in runs[1:]:
        if label_set_of(run) != label_set_of(first):
            raise UsageError(
                f"{sources[id(run)]} was trained on {label_set_of(run).describe()}, but {sources[id(first)]} on "
                f"{label_set_of(first).describe()}: only runs on one label set compare."
            )
        if run.dataset["name"] != first.dataset["name"]:
            raise UsageError(
                f"{sources[id(run)]} was evaluated on dataset {run.dataset['name']!r:.80}, but "
                f"{sources[id(first)]} on {first.dataset['name']!r:.80}: only runs on the same data compare."
            )
    return runs


def record_file(path: str | Path) -> Path:
    """The record a path names: an output folder's results.json, or the file itself."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def read_per_image(paths: list[str | Path]) -> list[PerImageCounts | None]:
    """Each record's per-image counts (`per_image_file` beside it); None for a record without them.

    Raises:
        RecordError: a counts file that cannot be read, naming it.
    """
    found = []
    for path in paths:
        counts_file = per_image_file(record_file(path))
        found.append(PerImageCounts.load(counts_file) if counts_file.is_file() else None)
    return found


# A figure recomputed from the counts may differ from the record's in the last bits of a float64
# (the same integer sums divided in another order); an edit or other counts differ by far more.
RECOMPUTED_TOLERANCE = 1e-9


def recomputed_from_counts(run: RunResults, counts: PerImageCounts, source: Path) -> RunResults:
    """`run` with every figure the page shows of its final evaluation (mean IoU, accuracies, IoU per
    class, boundary IoU, ECE) and its bootstrap interval computed again from its per-image counts.

    Raises:
        RecordError: the record says other figures than its counts give (edited, or counts of another
            evaluation), naming the figure, both values and the file.
    """
    def disagree(recorded, computed) -> bool:
        if recorded is None or (isinstance(recorded, float) and math.isnan(recorded)):
            return not math.isnan(computed)  # a record writes NaN as null
        return math.isnan(computed) or abs(recorded - computed) > RECOMPUTED_TOLERANCE

    def refuse(what: str, recorded, computed) -> RecordError:
        return RecordError(
            f"{source}: its {what} is {recorded}, but its per-image counts ({per_image_file(source).name}) give "
            f"{computed}: the record was edited, or the counts belong to another evaluation. Nothing is compared "
            "from it; restore both files from the run's output folder, or evaluate the model again "
            "(run_seg.py --do_train false).")

    if counts.class_names != run.class_names:
        raise refuse("class list", run.class_names, counts.class_names)
    recorded, again = run.final_eval, {}
    for name, computed in scores_from_counts(counts, run.class_names).items():
        if recorded.has(name):
            if disagree(recorded.figure(name), computed):
                raise refuse(f"final_eval.{Scores.key(name)}", recorded.figure(name), computed)
            again[name] = computed
    final = recorded.with_figures(**again)
    bootstrap = run.bootstrap
    if bootstrap and bootstrap.get("interval"):
        again = mean_iou_interval(counts, bootstrap.get("samples", BOOTSTRAP_SAMPLES),
                                  bootstrap.get("seed", BOOTSTRAP_SEED), bootstrap.get("level", CONFIDENCE_LEVEL))
        if any(disagree(recorded, computed) for recorded, computed in zip(bootstrap["interval"], again["interval"])):
            raise refuse("bootstrap interval", bootstrap["interval"], again["interval"])
        bootstrap = {**bootstrap, "interval": again["interval"], "mean_iou": again["mean_iou"]}
    return dataclasses.replace(run, final_eval=final, bootstrap=bootstrap)


def start_of(results: RunResults) -> tuple[str, str | None]:
    """Where a run's weights started: the kind (what runs must share to compare) and the source."""
    start = results.args.get("model", {})
    if start.get("model_name_or_path"):
        return "fine-tuned model", start["model_name_or_path"]
    if start.get("from_scratch"):
        return "random weights", None
    return "pretrained encoder", start.get("pretrained") or "the model's default"


def run_setup(results: RunResults) -> dict[str, str]:
    """What a run's numbers depend on besides the model: start (and its source), recipe, budget,
    device, data sizes, evaluation protocol."""
    train = results.train
    environment = results.environment
    batch = (results.recipe or {}).get("global_batch_size")
    start, source = start_of(results)
    return {
        "start": start,  # the kind; two encoders pretrained elsewhere are still a like-for-like start
        "start_source": source,
        "recipe": (results.recipe or {}).get("name", "none (options only)"),
        "budget": (f"{train.epochs:.1f} epochs, {train.steps} steps" + (f" at batch {batch}" if batch else "")
                   if train else "not trained"),
        "device": f"{environment['device']} × {environment['num_processes']}",
        "data": f"{results.dataset['train_samples']} train / {results.dataset['validation_samples']} validation images",
        "evaluation": protocol_from_record(results.dataset.get("evaluation")).brief(),
    }


# What runs must share to compare architectures, and what the page calls each when they do not.
SETUP_DIFFERENCES = {"budget": "training budgets", "recipe": "recipes", "start": "starting points",
                     "device": "devices (training time, memory and inference speed are not comparable)",
                     "data": "amounts of data", "evaluation": "evaluation protocols"}


def differing_settings(runs: list[RunResults]) -> list[str]:
    """The `run_setup` keys whose values are not the same for every run."""
    setups = [run_setup(run) for run in runs]
    return [key for key in SETUP_DIFFERENCES if len({setup[key] for setup in setups}) > 1]


def setup_differences(runs: list[RunResults]) -> list[str]:
    """One sentence per setting the runs do not share: the page shows them as a warning above the
    table, since the runs' differences are then not the architectures' alone."""
    setups = [run_setup(run) for run in runs]
    return [f"different {SETUP_DIFFERENCES[key]}: "
            + "; ".join(f"{run.model}: {setup[key]}" for run, setup in zip(runs, setups))
            for key in differing_settings(runs)]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def _miou(run: RunResults) -> float:
    return run.mean_iou or 0.0


@dataclass
class ModelRuns:
    """One model's runs on the page (one per seed) and their per-image counts (None where a run has
    no per_image.npz: a record older than the counts)."""

    model: str
    family: str
    runs: list[RunResults]
    counts: list[PerImageCounts | None]

    @property
    def mean_iou(self) -> float:
        """The mean over seeds of the runs' mean IoU."""
        return statistics.fmean(_miou(run) for run in self.runs)

    @property
    def seed_sd(self) -> float | None:
        """The standard deviation of mean IoU across seeds (None with one run)."""
        return statistics.stdev(_miou(run) for run in self.runs) if len(self.runs) > 1 else None

    @property
    def seeds(self) -> list:
        return [run.args.get("training", {}).get("seed") for run in self.runs]

    def mean_of(self, value) -> float | None:
        """The mean over seeds of `value(run)` (None where a run lacks it)."""
        values = [value(run) for run in self.runs]
        return None if any(v is None for v in values) else statistics.fmean(values)


def group_by_model(runs: list[RunResults], counts: list[PerImageCounts | None] | None = None) -> list[ModelRuns]:
    """The runs grouped by model name, in order of first appearance (the seeds of one model together)."""
    counts = counts if counts is not None else [None] * len(runs)
    groups: dict[str, ModelRuns] = {}
    for run, run_counts in zip(runs, counts):
        group = groups.setdefault(run.model, ModelRuns(run.model, run.family, [], []))
        group.runs.append(run)
        group.counts.append(run_counts)
    return list(groups.values())


def compare_models(better: ModelRuns, other: ModelRuns, samples: int = BOOTSTRAP_SAMPLES,
                   assumed_seed_variance: float | None = None) -> Difference | str:
    """`better` minus `other` in mean IoU with its paired interval (`paired_difference`), or the
    reason no interval can be given. `assumed_seed_variance`: see `largest_seed_variance`."""
    if any(counts is None for counts in better.counts + other.counts):
        return "a run has no per-image counts (per_image.npz), so the difference has no interval"
    try:
        return paired_difference(better.counts, other.counts, samples=samples,
                                 assumed_seed_variance=assumed_seed_variance)
    except ValueError:
        return "they were scored on different validation images, so their difference is not paired"


def largest_seed_variance(groups: list[ModelRuns]) -> float | None:
    """The largest seed-to-seed variance of mean IoU among `groups` (None when no model has two
    runs): what a model trained once is assumed to have, so its single run is not taken as exact."""
    variances = [group.seed_sd ** 2 for group in groups if group.seed_sd is not None]
    return max(variances) if variances else None


def difference_sentence(a: ModelRuns, b: ModelRuns, difference: Difference | str) -> str:
    """What the page may claim about `a` against `b`: "better by x (CI)" only when the interval
    excludes 0, "not distinguishable" otherwise, and no claim without an interval."""
    if isinstance(difference, str):
        return f"{a.model} vs {b.model}: mean IoU {a.mean_iou - b.mean_iou:+.4f}, no claim: {difference}."
    low, high = difference.interval
    level = f"{100 * difference.level:.0f} % CI [{low:.4f}, {high:.4f}]"
    if not difference.distinguishable:
        return (f"{a.model} and {b.model} are not distinguishable on this validation set ({a.model} − {b.model} "
                f"= {difference.difference:+.4f}, {level}).")
    if difference.difference > 0:
        return f"{a.model} is better than {b.model} by {difference.difference:.4f} ({level})."
    return f"{b.model} is better than {a.model} by {-difference.difference:.4f} ({level} for {a.model} − {b.model})."


def differences_table(groups: list[ModelRuns], samples: int = BOOTSTRAP_SAMPLES) -> list[dict]:
    """Every pair of models, the higher mean IoU first: the difference, its interval and what it supports."""
    ordered = sorted(groups, key=lambda group: -group.mean_iou)
    assumed = largest_seed_variance(groups)
    rows = []
    for index, a in enumerate(ordered):
        for b in ordered[index + 1:]:
            difference = compare_models(a, b, samples, assumed)
            rows.append({"pair": f"{a.model} − {b.model}", "difference": a.mean_iou - b.mean_iou,
                         "interval": None if isinstance(difference, str) else difference.interval,
                         "method": difference if isinstance(difference, str) else difference.method,
                         "verdict": difference_sentence(a, b, difference)})
    return rows


def model_point(group: ModelRuns) -> RunResults:
    """A stand-in record for the model's point on a figure: its first run's, with mean IoU and
    training time the means over its seeds."""
    first = group.runs[0]
    if len(group.runs) == 1:
        return first
    wall_time = group.mean_of(lambda run: run.train.wall_time_s if run.train else None)
    return dataclasses.replace(first, final_eval=first.final_eval.with_figures(mean_iou=group.mean_iou),
                               train=dataclasses.replace(first.train, wall_time_s=wall_time) if first.train else None)


def conclusion(runs: list[RunResults], counts: list[PerImageCounts | None] | None = None,
               samples: int = BOOTSTRAP_SAMPLES) -> list[str]:
    """Sentences computed from the runs' numbers, nothing else. A model with several runs (seeds)
    counts by its mean over seeds; "better" is said only when the paired interval excludes 0."""
    groups = group_by_model(runs, counts)
    assumed = largest_seed_variance(groups)
    lines = []
    ordered = sorted(groups, key=lambda group: -group.mean_iou)
    best = ordered[0]
    seeds = f", mean of {len(best.runs)} seeds" if len(best.runs) > 1 else ""
    lines.append(f"Highest validation mean IoU: {best.model} ({best.mean_iou:.4f}{seeds}).")
    if len(ordered) > 1:
        lines.append(difference_sentence(best, ordered[1], compare_models(best, ordered[1], samples, assumed)))
    transformers = [group for group in ordered if group.family == "transformer"]
    cnns = [group for group in ordered if group.family == "cnn"]
    if transformers and cnns:
        t, c = transformers[0], cnns[0]
        t_run, c_run = t.runs[0], c.runs[0]
        t_time, c_time = (group.mean_of(lambda r: r.train.wall_time_s if r.train else None) for group in (t, c))
        lines.append(
            f"Best transformer {t.model} vs best CNN {c.model}: mean IoU {t.mean_iou - c.mean_iou:+.4f} "
            f"({t.mean_iou:.4f} vs {c.mean_iou:.4f}), "
            f"with {_ratio(t_run.parameters, c_run.parameters)} the parameters, "
            f"{_ratio(t_run.peak_memory['bytes'], c_run.peak_memory['bytes'])} the peak memory"
            + (f" and {_ratio(t_time, c_time)} the training time." if t_time and c_time else ".")
        )
        if (t, c) != tuple(ordered[:2]) and (c, t) != tuple(ordered[:2]):
            lines.append(difference_sentence(t, c, compare_models(t, c, samples, assumed)))
    smallest = min(groups, key=lambda group: group.runs[0].parameters)
    lines.append(f"Fewest parameters: {smallest.model} ({smallest.runs[0].parameters:,}), "
                 f"mean IoU {smallest.mean_iou:.4f}.")
    differing = differing_settings(runs)
    if differing:
        lines.append(f"These runs differ in {', '.join(differing)} (see the warning above): the figures compare "
                     "setups, not architectures alone.")
    return lines


def write_comparison(paths: list[str | Path], output_dir: str | Path, question: str | None = None) -> Path:
    """comparison.md plus its figures in `output_dir`: mIoU per epoch, and against parameters, training
    time, FLOPs per image and inference throughput (the last two for runs that measured them).
    `question`: what the runs were trained to answer (an experiment's), said under the title."""
    runs = read_runs(paths)
    counts = read_per_image(paths)
    # Every figure shown is computed from the counts where a run has them, not taken from its record.
    runs = [recomputed_from_counts(run, run_counts, record_file(path)) if run_counts is not None else run
            for run, run_counts, path in zip(runs, counts, paths)]
    groups = group_by_model(runs, counts)
    samples = (runs[0].bootstrap or {}).get("samples", BOOTSTRAP_SAMPLES)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plt = pyplot()

    names = {id(run): f"{run.model} (seed {group.seeds[index]})" if len(group.runs) > 1 else run.model
             for group in groups for index, run in enumerate(group.runs)}
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        points = [(e.epoch, e.mean_iou) for e in run.evaluations if e.epoch is not None]
        if points:
            axis.plot(*zip(*points), "o-", label=names[id(run)])
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation mean IoU")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "miou_per_epoch.png", dpi=100)
    plt.close(figure)

    for name, label, value in (("miou_vs_parameters.png", "parameters", lambda r: r.parameters),
                               ("miou_vs_train_time.png", "training wall time (s)",
                                lambda r: r.train.wall_time_s if r.train else None),
                               ("miou_vs_flops.png", "FLOPs per image",
                                lambda r: r.inference["flops_per_image"] if r.inference else None),
                               ("miou_vs_inference_speed.png", "inference images/s",
                                lambda r: r.inference["throughput_images_per_s"] if r.inference else None)):
        points = [model_point(group) for group in groups]  # one point per model: its mean over seeds
        if not any(value(point) is not None for point in points):
            continue
        figure = plot_miou_against(points, value, label)
        figure.savefig(output_dir / name, dpi=100)
        plt.close(figure)

    from jinja2 import Template

    from ..hub_access import hub_endpoint

    page = Template((TEMPLATES / "comparison.md").read_text()).render(
        runs=runs, setups=[run_setup(run) for run in runs], differences=setup_differences(runs),
        conclusion=conclusion(runs, counts, samples), fmt=fmt, groups=groups,
        run_names=[names[id(run)] for run in runs],
        boundary_predates=[names[id(run)] for run in runs if run.boundary_predates_official],
        seeded=any(len(group.runs) > 1 for group in groups), pairs=differences_table(groups, samples),
        dataset=dataset_identity(runs[0])[2],
        synthetic=runs[0].dataset["name"] == "synthetic", hub=hub_endpoint(), sources=[str(path) for path in paths],
        question=question,
    )
    path = output_dir / "comparison.md"
    path.write_text(page)
    return path

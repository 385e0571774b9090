"""The comparison page: several runs' records side by side, with the settings they differ in and
the conclusions their figures support (`write_comparison`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..evaluation.protocol import protocol_from_record
from ..plotting import pyplot
from .card import TEMPLATES, dataset_identity, fmt, label_set_of
from .figures import plot_miou_against
from .results import RESULTS_FILE, RunResults


def read_runs(paths: list[str | Path]) -> list[RunResults]:
    """The record (results.json) of each output folder (or file); they must share the data and labels."""
    runs, sources = [], {}
    for path in map(Path, paths):
        results_file = path / RESULTS_FILE if path.is_dir() else path
        if not results_file.is_file():
            raise UsageError(f"{path} has no results.json: pass output folders of scripts/run_seg.py runs.")
        try:
            results = RunResults.read(results_file)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if results.status != "complete":
            raise UsageError(f"{results_file} records a run that did not finish ({results.status}): "
                                  f"{(results.diverged or {}).get('message', 'no result')}")
        if not results.final_eval:
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
    train = results.train or {}
    environment = results.environment
    batch = (results.recipe or {}).get("global_batch_size")
    start, source = start_of(results)
    return {
        "start": start,  # the kind; two encoders pretrained elsewhere are still a like-for-like start
        "start_source": source,
        "recipe": (results.recipe or {}).get("name", "none (options only)"),
        "budget": (f"{train['epochs']:.1f} epochs, {train['steps']} steps" + (f" at batch {batch}" if batch else "")
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


def conclusion(runs: list[RunResults]) -> list[str]:
    """Sentences computed from the runs' numbers, nothing else."""
    def miou(run):
        return run.final_eval["eval_mean_iou"] or 0.0

    lines = []
    best = max(runs, key=miou)
    lines.append(f"Highest validation mean IoU: {best.model} ({miou(best):.4f}).")
    transformers = [r for r in runs if r.family == "transformer"]
    cnns = [r for r in runs if r.family == "cnn"]
    if transformers and cnns:
        t, c = max(transformers, key=miou), max(cnns, key=miou)
        difference = miou(t) - miou(c)
        lines.append(
            f"Best transformer {t.model} vs best CNN {c.model}: mean IoU {difference:+.4f} "
            f"({miou(t):.4f} vs {miou(c):.4f}), with {_ratio(t.parameters, c.parameters)} the parameters, "
            f"{_ratio(t.peak_memory['bytes'], c.peak_memory['bytes'])} the peak memory"
            + (f" and {_ratio(t.train['wall_time_s'], c.train['wall_time_s'])} the training time."
               if t.train and c.train else ".")
        )
    smallest = min(runs, key=lambda r: r.parameters)
    lines.append(f"Fewest parameters: {smallest.model} ({smallest.parameters:,}), mean IoU {miou(smallest):.4f}.")
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
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        points = [(e["epoch"], e["eval_mean_iou"]) for e in run.evaluations if e.get("epoch") is not None]
        if points:
            axis.plot(*zip(*points), "o-", label=run.model)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation mean IoU")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "miou_per_epoch.png", dpi=100)
    plt.close(figure)

    for name, label, value in (("miou_vs_parameters.png", "parameters", lambda r: r.parameters),
                               ("miou_vs_train_time.png", "training wall time (s)",
                                lambda r: r.train["wall_time_s"] if r.train else None),
                               ("miou_vs_flops.png", "FLOPs per image",
                                lambda r: r.inference["flops_per_image"] if r.inference else None),
                               ("miou_vs_inference_speed.png", "inference images/s",
                                lambda r: r.inference["throughput_images_per_s"] if r.inference else None)):
        if not any(value(run) is not None for run in runs):
            continue
        figure = plot_miou_against(runs, value, label)
        figure.savefig(output_dir / name, dpi=100)
        plt.close(figure)

    from jinja2 import Template

    from ..hub_access import hub_endpoint

    page = Template((TEMPLATES / "comparison.md").read_text()).render(
        runs=runs, setups=[run_setup(run) for run in runs], differences=setup_differences(runs),
        conclusion=conclusion(runs), fmt=fmt, dataset=dataset_identity(runs[0])[2],
        synthetic=runs[0].dataset["name"] == "synthetic", hub=hub_endpoint(), sources=[str(path) for path in paths],
        question=question,
    )
    path = output_dir / "comparison.md"
    path.write_text(page)
    return path

"""Model cards and the comparison page: the report, rendered from runs' `RunResults`.

`write_model_card` renders ``templates/model_card.md`` with `huggingface_hub.ModelCard.from_template`
(front matter from `ModelCardData` with an `EvalResult` model-index), and draws the learning curve
and a sample-prediction figure next to it. `write_comparison` puts several runs side by side.
Every number in either comes from a run's record; nothing is typed in. Class names and the ignore
index come from the record's data, never from a VOC constant.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index

from ..errors import UsageError
from ..evaluation.protocol import protocol_from_record
from ..labels import VOC_CLASSES, LabelSet
from .results import RESULTS_FILE, RunResults

TEMPLATES = Path(__file__).parent / "templates"
LEARNING_CURVE = "learning_curve.png"
SAMPLE_PREDICTIONS = "sample_predictions.png"
CONFUSION_MATRIX = "confusion_matrix.png"
# Above this many classes a full confusion matrix is unreadable: the figure shows the most confused pairs.
MATRIX_CLASSES_SHOWN = 40
CONFUSED_PAIRS_SHOWN = 30
SNIPPET = '''from PIL import Image
from transformers import AutoModelForSemanticSegmentation

import hf_segcompare

hf_segcompare.register_auto_classes()  # the U-Net / DeepLabV3+ / ViT adapters and the image processor
model = AutoModelForSemanticSegmentation.from_pretrained("{model_ref}")
mask = hf_segcompare.segment(model, Image.open("{image_path}"))  # H x W array of class ids
print(sorted(model.config.id2label[int(i)] for i in set(mask.flat)))'''
DATASET_DESCRIPTIONS = {
    "synthetic": ("synthetic-voc", "hf_segcompare synthetic VOC-format data", "the embedded synthetic VOC-format data"),
    "voc": ("pascal-voc-2012", "Pascal VOC 2012", "Pascal VOC 2012 segmentation"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _speed_line(speed: dict | None) -> str | None:
    """The device switches a run used, in words (None for records older than schema 3)."""
    if not speed:
        return None
    parts = [f"{speed['mixed_precision']} {'autocast' if speed['mixed_precision'] != 'fp32' else 'throughout'}",
             f"TF32 {'on' if speed['tf32'] else 'off'}",
             "channels_last memory format" if speed["channels_last"] else "contiguous (NCHW) memory format",
             "torch.compile" if speed["torch_compile"] else "eager mode"]
    workers = speed["dataloader_num_workers"]
    parts.append(f"{workers} data-loader worker(s){' (persistent)' if speed['dataloader_persistent_workers'] else ''}"
                 if workers else "data prepared in the main process")
    return ", ".join(parts)


def _fmt(value) -> str:
    """A metric to four decimals; "n/a" for a missing one (None, NaN, or absent from the template's data)."""
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def _dataset_identity(results: RunResults) -> tuple[str, str, str]:
    """(model-index dataset type, dataset name, the card's words for it). A Hub dataset is named by its
    id (the type the Hub links to); a local one by its folder's name, never by the path on this machine."""
    name = results.dataset["name"]
    if name in DATASET_DESCRIPTIONS:
        return DATASET_DESCRIPTIONS[name]
    hub_id = _hub_dataset_id(name)
    if hub_id:
        return hub_id, hub_id, f"the Hub dataset `{hub_id}`"
    local = Path(name).name or name
    return local, local, f"`{local}` (a local dataset)"


def _public(text: str) -> str:
    """`text` with the local folders of this machine reduced to the file's name: a card is published."""
    return " ".join(Path(word).name if "/" in word and Path(word).is_absolute() else word for word in text.split(" "))


def label_set_of(results: RunResults) -> LabelSet:
    """The label set a run was trained and scored on."""
    return LabelSet(tuple(results.class_names), results.ignore_index)


def _labels_line(results: RunResults) -> str:
    """The data's classes, where their names came from and how raw mask values were read, for the card."""
    dataset = results.dataset
    labels = label_set_of(results)
    line = f"{labels.describe(shown=8)}"
    if dataset.get("label_source"):
        line += f"; names from {_public(dataset['label_source'])}"
    return line + (f"; {_public(dataset['mask_decoding'])}" if dataset.get("mask_decoding") else "")


def plot_learning_curve(results: dict, path: Path) -> bool:
    """Validation mIoU and mean training loss per epoch; False when there is nothing to draw."""
    evaluations = [e for e in results.evaluations if e.get("epoch") is not None]
    if not evaluations:
        return False
    plt = _pyplot()
    figure, miou_axis = plt.subplots(figsize=(6, 3.5))
    miou_axis.plot([e["epoch"] for e in evaluations], [e["eval_mean_iou"] for e in evaluations], "o-", color="C0")
    miou_axis.set_xlabel("epoch")
    miou_axis.set_ylabel("validation mean IoU", color="C0")
    by_epoch: dict[int, list[float]] = {}
    for entry in results.train_loss:
        if entry.get("epoch") is not None:
            by_epoch.setdefault(math.ceil(entry["epoch"]), []).append(entry["loss"])
    if by_epoch:
        loss_axis = miou_axis.twinx()
        epochs = sorted(by_epoch)
        loss_axis.plot(epochs, [np.mean(by_epoch[e]) for e in epochs], "s--", color="C1")
        loss_axis.set_ylabel("training loss (epoch mean)", color="C1")
    miou_axis.set_title(results.model)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_confusion_matrix(results: RunResults, path: Path) -> bool:
    """The final evaluation's confusion matrix, each row normalised to the annotated pixels of its
    class (so the diagonal is each class's recall), with the class names; False without a matrix.
    Above `MATRIX_CLASSES_SHOWN` classes a grid of names is unreadable: the figure shows the most
    confused pairs instead (`plot_confused_pairs`)."""
    if not results.confusion_matrix:
        return False
    counts = np.asarray(results.confusion_matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    names = results.class_names
    if len(names) > MATRIX_CLASSES_SHOWN:
        return plot_confused_pairs(results.model, shares, names, path)
    plt = _pyplot()
    side = 2.5 + 0.32 * len(names)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("annotated class")
    axis.set_title(f"{results.model}: share of each class's pixels", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def confused_pairs(shares: np.ndarray, names: list[str], count: int = CONFUSED_PAIRS_SHOWN) -> list[tuple[str, float]]:
    """The `count` largest off-diagonal shares of a row-normalised confusion matrix, as
    ("annotated → predicted", share) from the largest down (pairs that never occur left out)."""
    off_diagonal = shares.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    order = np.argsort(off_diagonal, axis=None)[::-1][:count]
    pairs = []
    for flat in order:
        row, column = divmod(int(flat), off_diagonal.shape[1])
        if off_diagonal[row, column] <= 0:
            break
        pairs.append((f"{names[row]} → {names[column]}", float(off_diagonal[row, column])))
    return pairs


def plot_confused_pairs(model: str, shares: np.ndarray, names: list[str], path: Path) -> bool:
    """A bar per confused pair (annotated class → predicted class: the share of the annotated
    class's pixels predicted as the other), the largest `CONFUSED_PAIRS_SHOWN`."""
    pairs = confused_pairs(shares, names)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.25 * max(len(pairs), 1)))
    if pairs:
        labels, values = zip(*reversed(pairs))
        axis.barh(range(len(pairs)), values, color="C0")
        axis.set_yticks(range(len(pairs)), labels, fontsize=7)
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of the annotated class's pixels predicted as the other class")
    axis.set_title(f"{model}: the {len(pairs)} most confused class pairs of {len(names)}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_sample_predictions(model, validation, path: Path, count: int = 3) -> bool:
    """Rows of image | ground truth | prediction (in the VOC palette, which colours any label set) for
    the first `count` validation images."""
    from ..data.images import to_rgb
    from ..data.masks import mask_to_array, voc_palette
    from ..evaluation.inference import segment

    if validation is None or len(validation) == 0:
        return False
    palette = np.array(voc_palette(), dtype=np.uint8)
    plt = _pyplot()
    rows = min(count, len(validation))
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row in range(rows):
        sample = validation[row]
        image = to_rgb(sample["image"])
        truth = palette[mask_to_array(sample["label"])]
        prediction = palette[segment(model, image)]
        for column, (picture, title) in enumerate(
            ((image, "image"), (truth, "ground truth"), (prediction, "prediction"))
        ):
            axes[row, column].imshow(picture)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def read_evaluations(output_dir: Path) -> list[dict]:
    """The evaluation-only records (``eval_*.json``) written beside a trained model: one line each,
    and one more for a test-time-augmented evaluation."""
    records = []
    for path in sorted(Path(output_dir).glob("eval_*.json")):
        record = RunResults.read(path)
        protocol = protocol_from_record(record.dataset.get("evaluation")).brief()
        for scores, name in ((record.final_eval or {}, "single-scale"),
                             (record.augmented_eval, (record.augmented_eval or {}).get("protocol", {}).get("name"))):
            if scores is None:
                continue
            records.append({
                "file": path.name, "dataset": record.dataset["name"], "protocol": f"{name}, {protocol}",
                "samples": record.dataset["validation_samples"], "processes": record.environment["num_processes"],
                **{key: scores.get(f"eval_{key}") for key in ("mean_iou", "mean_accuracy", "overall_accuracy")},
            })
    return records


class SegModelCardData(ModelCardData):
    """`ModelCardData` whose model-index lists the test-time-augmented results (multi-scale, flip)
    as a model entry of their own, named so, after the single-scale one: as benchmark tables give
    each a row, and so that neither is mistaken for the other."""

    def __init__(self, augmented_name: str | None = None, augmented_results=None, **kwargs):
        super().__init__(**kwargs)
        self.augmented_name, self.augmented_results = augmented_name, augmented_results

    def _to_dict(self, data_dict):
        name, augmented = data_dict.pop("augmented_name", None), data_dict.pop("augmented_results", None)
        super()._to_dict(data_dict)
        if augmented and "model-index" in data_dict:
            data_dict["model-index"] += eval_results_to_model_index(name, augmented)


def _eval_results(scores: dict, dataset_type: str, dataset_name: str, metric_args: dict) -> list:
    from huggingface_hub import EvalResult

    return [
        EvalResult(task_type="image-segmentation", task_name="Semantic segmentation", dataset_type=dataset_type,
                   dataset_name=dataset_name, dataset_split="validation", metric_type=key, metric_name=label,
                   metric_value=scores[f"eval_{key}"], metric_args=metric_args)
        for key, label in (("mean_iou", "Mean IoU"), ("mean_accuracy", "Mean accuracy"),
                           ("overall_accuracy", "Overall accuracy"))
        if scores.get(f"eval_{key}") is not None
    ]


def build_model_card(results: dict, model_ref: str, has_curve: bool, has_samples: bool,
                     evaluations: list[dict] | None = None, has_confusion: bool = False):
    """The `ModelCard` of one run (not yet saved); `evaluations` are later evaluation-only records."""
    from huggingface_hub import ModelCard

    final = results.final_eval or {}
    dataset_type, dataset_name, dataset_line = _dataset_identity(results)
    metric_args = {"num_labels": len(results.class_names), "ignore_index": results.ignore_index}
    hub_dataset = _hub_dataset_id(results.dataset["name"])
    eval_results = _eval_results(final, dataset_type, dataset_name, metric_args)
    augmented = results.augmented_eval
    start = results.args["model"]
    card_data = SegModelCardData(
        augmented_name=f"{results.model} on {dataset_name}, {augmented['protocol']['name']}" if augmented else None,
        augmented_results=_eval_results(augmented, dataset_type, dataset_name, metric_args) if augmented else None,
        model_name=f"{results.model} on {dataset_name}",
        pipeline_tag="image-segmentation",
        library_name="transformers",
        license="apache-2.0",
        tags=["image-segmentation", "semantic-segmentation", "hf_segcompare", results.model, results.family]
        + (["synthetic-data"] if results.dataset["name"] == "synthetic" else []),
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=start.get("model_name_or_path")
        if start.get("model_name_or_path") and not Path(start["model_name_or_path"]).exists()
        else None,
        metrics=["mean_iou"],
        eval_results=eval_results or None,
    )
    training = results.args["training"] if results.train else None
    if training:
        warmup = training.get("warmup_steps") or 0
        training = {
            **training,
            "optim": str(training.get("optim")),
            "lr_scheduler_type": str(training.get("lr_scheduler_type")),
            # TrainingArguments reads a warm-up below 1 as a share of the run
            "warmup": f"{warmup:.1%} of the steps as warm-up" if 0 < warmup < 1 else f"{int(warmup)} warm-up steps",
        }
    precision = "bf16" if training and training.get("bf16") else "fp16" if training and training.get("fp16") else "fp32"
    environment = results.environment
    versions = [
        (name, environment[name])
        for name in (
            "torch", "torchvision", "transformers", "accelerate", "datasets", "segmentation_models_pytorch", "python",
        )
        if name in environment
    ]
    class_names = results.class_names
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        title=f"{results.model}: {results.architecture}",
        description=(
            f"{results.architecture} ({results.family.upper() if results.family == 'cnn' else results.family}, "
            f"{results.parameters:,} parameters) for semantic segmentation of the "
            f"{len(class_names)} {'Pascal VOC ' if tuple(class_names) == VOC_CLASSES else ''}classes of "
            f"{dataset_line} ({_class_list(class_names)}), trained with the Hugging Face `Trainer` by hf_segcompare."
        ),
        labels_line=_labels_line(results),
        synthetic=results.dataset["name"] == "synthetic",
        snippet=SNIPPET.format(model_ref=model_ref, image_path="path/to/image.jpg"),
        dataset_line=dataset_line,
        start_line=(
            f"`{start['model_name_or_path']}`"
            if start.get("model_name_or_path")
            else "random initialisation (`--from_scratch`)"
            if start.get("from_scratch")
            else f"encoder weights from `{start.get('pretrained') or 'the model default'}`, "
            "decoder and head freshly initialised"
        ),
        results=results,
        final=final,
        training=training,
        precision=precision,
        speed_line=_speed_line(results.speed),
        per_class=[(name, final.get(f"eval_iou_{name}")) for name in class_names],
        memory_kind={"cpu_peak_rss": "peak RSS, CPU", "cuda_max_allocated": "CUDA max allocated"}.get(
            results.peak_memory["kind"], results.peak_memory["kind"]
        ),
        versions=versions,
        has_curve=has_curve,
        has_samples=has_samples,
        has_confusion=has_confusion,
        matrix_classes_shown=MATRIX_CLASSES_SHOWN,
        augmented=augmented,
        protocol_line=protocol_from_record(results.dataset.get("evaluation")).describe(),
        evaluations=evaluations or [],
        fmt=_fmt,
    )
    # from_template parses the rendered card back with the plain ModelCardData, whose model-index
    # reader folds every model entry into one: keep ours, so the augmented entry stays its own.
    card.data = card_data
    return card


def _class_list(names: list[str], shown: int = 12) -> str:
    return ", ".join(names) if len(names) <= shown else ", ".join(names[: shown - 1]) + f", ... {names[-1]}"


def _hub_dataset_id(name: str) -> str | None:
    """`name` when it looks like a Hub dataset id (``owner/name``) and is not a local path."""
    import re

    return name if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists() else None


def write_eval_results(results: dict, output_dir: Path) -> Path | None:
    """`.eval_results/mean_iou.yaml` (the Hub's newer eval-results format) for runs scored on a Hub
    dataset; that format names a benchmark dataset on the Hub, so other data has no such file."""
    dataset_id = _hub_dataset_id(results.dataset["name"])
    value = (results.final_eval or {}).get("eval_mean_iou")
    try:
        from huggingface_hub import EvalResultEntry
        from huggingface_hub._eval_results import eval_result_entries_to_yaml
    except ImportError:  # an older huggingface_hub without the format
        return None
    if dataset_id is None or value is None:
        return None
    import yaml

    entry = EvalResultEntry(dataset_id=dataset_id, task_id="semantic-segmentation-mean-iou", value=value,
                            notes=f"validation split; num_labels={len(results.class_names)}, "
                                  f"ignore_index={results.ignore_index}")
    path = output_dir / ".eval_results" / "mean_iou.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(eval_result_entries_to_yaml([entry]), sort_keys=False))
    return path


def write_model_card(results: dict, output_dir: str | Path, model=None, validation=None,
                     model_ref: str | None = None) -> Path:
    """Write README.md (the card) and its figures into `output_dir`; return the card's path.

    Args:
        results: the run's record.
        model, validation: the trained model and the raw validation split, for the sample figure.
        model_ref: what the snippet loads (a Hub repo id; default: the output folder).
    """
    output_dir = Path(output_dir)
    has_curve = plot_learning_curve(results, output_dir / LEARNING_CURVE)
    if model is not None:
        has_samples = plot_sample_predictions(model, validation, output_dir / SAMPLE_PREDICTIONS)
    else:  # re-rendered without the model (after an evaluation-only run): keep the run's own figure
        has_samples = (output_dir / SAMPLE_PREDICTIONS).is_file()
    has_confusion = plot_confusion_matrix(results, output_dir / CONFUSION_MATRIX)
    card = build_model_card(results, model_ref or str(output_dir), has_curve, has_samples,
                            read_evaluations(output_dir), has_confusion=has_confusion)
    write_eval_results(results, output_dir)
    path = output_dir / "README.md"
    card.save(path)
    return path


# ----------------------------------------------------------------------------- comparison page


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


def conclusion(runs: list[dict]) -> list[str]:
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


def plot_miou_against(runs: list[RunResults], value, label: str):
    """A log-x scatter of each run's mean IoU against `value(run)` (runs where it is None left out),
    each point labelled with its model, every label inside the frame; returns the figure."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    measured = [run for run in runs if value(run) is not None]
    middle = np.median([value(run) for run in measured])
    for run in measured:
        point = (value(run), run.final_eval["eval_mean_iou"])
        axis.scatter(*point, label=run.model)
        # Labels point inwards (left of the right-hand points), which keeps short ones in the frame.
        inward = value(run) > middle or len(measured) == 1
        axis.annotate(run.model, point, fontsize=8, textcoords="offset points",
                      xytext=(-5 if inward else 5, 4), ha="right" if inward else "left")
    axis.set_xscale("log")
    axis.margins(x=0.3, y=0.15)
    axis.set_xlabel(label)
    axis.set_ylabel("validation mean IoU")
    figure.tight_layout()
    if not _labels_inside(figure, axis):
        for text in list(axis.texts):  # a label too long for its side: name the points in a legend
            text.remove()
        import textwrap

        handles, names = axis.get_legend_handles_labels()
        axis.legend(handles, ["\n".join(textwrap.wrap(name, 24)) for name in names], fontsize=7, loc="best")
        figure.tight_layout()
    return figure


def _labels_inside(figure, axis) -> bool:
    """Whether every annotation of `axis` lies inside its frame, each moved to the other side of
    its point first if it sticks out on one."""
    figure.canvas.draw()
    frame = axis.get_window_extent()
    for text in axis.texts:
        box = text.get_window_extent()
        if box.x0 < frame.x0 or box.x1 > frame.x1:
            left = box.x0 < frame.x0
            text.set_horizontalalignment("left" if left else "right")
            text.set_position((5 if left else -5, 4))
    figure.canvas.draw()
    return all(frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
               for box in (text.get_window_extent() for text in axis.texts))


def write_comparison(paths: list[str | Path], output_dir: str | Path, question: str | None = None) -> Path:
    """comparison.md plus its figures in `output_dir`: mIoU per epoch, and against parameters, training
    time, FLOPs per image and inference throughput (the last two for runs that measured them).
    `question`: what the runs were trained to answer (an experiment's), said under the title."""
    runs = read_runs(paths)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()

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
        conclusion=conclusion(runs), fmt=_fmt, dataset=_dataset_identity(runs[0])[2],
        synthetic=runs[0].dataset["name"] == "synthetic", hub=hub_endpoint(), sources=[str(path) for path in paths],
        question=question,
    )
    path = output_dir / "comparison.md"
    path.write_text(page)
    return path

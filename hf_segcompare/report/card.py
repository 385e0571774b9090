"""The model card: ``templates/model_card.md`` rendered with `huggingface_hub.ModelCard.from_template`
(front matter from `ModelCardData` with an `EvalResult` model-index) from a run's record only, with
the figures beside it (`hf_segcompare.report.figures`; the sample predictions are drawn when the
run finishes). Every number comes from the record; nothing is typed in. Class names and the ignore
index come from the record's data, never from a VOC constant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index

from ..evaluation.protocol import protocol_from_record
from ..labels import VOC_CLASSES, LabelSet
from .figures import (
    CONFUSION_MATRIX,
    LEARNING_CURVE,
    MATRIX_CLASSES_SHOWN,
    RELIABILITY_DIAGRAM,
    SAMPLE_PREDICTIONS,
    plot_confusion_matrix,
    plot_learning_curve,
    plot_reliability_diagram,
)
from .results import RunResults, Scores

TEMPLATES = Path(__file__).parent / "templates"
EXPORT_FILE = "export.json"  # written by hf_segcompare.pipeline.export, shown on the card
SNIPPET = '''from PIL import Image
from transformers import AutoModelForSemanticSegmentation

import hf_segcompare

hf_segcompare.register_auto_classes()  # the U-Net / DeepLabV3+ / ViT adapters and the image processor
model = AutoModelForSemanticSegmentation.from_pretrained("{model_ref}")
mask = hf_segcompare.segment(model, Image.open("{image_path}"))  # H x W array of class ids
print(sorted(model.config.id2label[int(i)] for i in set(mask.flat)))'''
VERSIONS_SHOWN = ("torch", "torchvision", "transformers", "accelerate", "datasets", "segmentation_models_pytorch",
                  "python")
DATASET_DESCRIPTIONS = {
    "synthetic": ("synthetic-voc", "hf_segcompare synthetic VOC-format data", "the embedded synthetic VOC-format data"),
    "voc": ("pascal-voc-2012", "Pascal VOC 2012", "Pascal VOC 2012 segmentation"),
}
# Whose mmsegmentation pipeline a release's protocol follows; any other data follows mmsegmentation's
# pipelines in general, never one release's by name.
MMSEG_PIPELINES = {"synthetic": "Pascal VOC", "voc": "Pascal VOC", "ade20k": "ADE20K", "cityscapes": "Cityscapes"}


def mmseg_pipeline(results: RunResults) -> tuple[str, str]:
    """Whose pipeline the ``mmseg`` protocol followed, in words: its owner ("mmsegmentation's ADE20K")
    and the pipeline itself ("mmsegmentation's ADE20K pipeline"; "mmsegmentation's pipelines" for
    data of one's own)."""
    release = MMSEG_PIPELINES.get(results.dataset["name"])
    if release is None:
        return "mmsegmentation's", "mmsegmentation's pipelines"
    return f"mmsegmentation's {release}", f"mmsegmentation's {release} pipeline"


LOSS_NAMES = {"ce": "cross-entropy", "dice": "Dice (segmentation-models-pytorch's)",
              "focal": "Focal, gamma 2 (segmentation-models-pytorch's)",
              "lovasz": "Lovász-softmax (segmentation-models-pytorch's)", "ce+dice": "cross-entropy + Dice"}


def _loss_line(results: RunResults) -> str | None:
    """The training loss and its class weights, in words (None for records older than schema 8)."""
    loss = (results.training_setup or {}).get("loss")
    if not loss:
        return None
    line = LOSS_NAMES.get(loss["name"], loss["name"])
    if results.ignore_index is not None:
        line += f", ignoring label {results.ignore_index}"
    if loss.get("class_weights"):
        weights = ", ".join(f"{name} {weight:.3g}" for name, weight in zip(results.class_names, loss["class_weights"]))
        line += f"; class weights from {loss['class_weights_from']}: {weights}"
    return line


def _batchnorm_line(results: RunResults) -> str | None:
    """Whether BatchNorm was synchronised over the processes, and why (None: no BatchNorm, or a record
    older than schema 8)."""
    choice = (results.training_setup or {}).get("sync_batchnorm")
    if not choice or not choice["layers"]:
        return None
    if choice["enabled"]:
        return (f"synchronised over the {results.environment['num_processes']} processes (SyncBatchNorm, "
                f"{choice['layers']} layers): {choice['reason']}")
    layers = f"{choice['layers']} layer{'s' if choice['layers'] != 1 else ''}"
    return f"not synchronised ({layers}): {choice['reason']}"


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


def fmt(value) -> str:
    """A metric to four decimals; "n/a" for a missing one (None, NaN, or absent from the template's data)."""
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def dataset_identity(results: RunResults) -> tuple[str, str, str]:
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


def read_export(output_dir: Path) -> dict | None:
    """The ``export.json`` an export wrote beside the model (None when it was not exported)."""
    path = Path(output_dir) / EXPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_evaluations(output_dir: Path) -> list[dict]:
    """The evaluation-only records (``eval_*.json``) written beside a trained model: one line each,
    and one more for a test-time-augmented evaluation."""
    records = []
    for path in sorted(Path(output_dir).glob("eval_*.json")):
        record = RunResults.read(path)
        protocol = protocol_from_record(record.dataset.get("evaluation")).brief()
        for scores, name in ((record.final_eval or Scores(), "single-scale"),
                             (record.augmented_eval, record.augmented_eval and record.augmented_eval.protocol_name)):
            if scores is None:
                continue
            records.append({
                "file": path.name, "dataset": record.dataset["name"], "protocol": f"{name}, {protocol}",
                "samples": record.dataset["validation_samples"], "processes": record.environment["num_processes"],
                **{key: scores.figure(key) for key in ("mean_iou", "mean_accuracy", "overall_accuracy")},
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


def _eval_results(scores: Scores, dataset_type: str, dataset_name: str, metric_args: dict) -> list:
    from huggingface_hub import EvalResult

    return [
        EvalResult(task_type="image-segmentation", task_name="Semantic segmentation", dataset_type=dataset_type,
                   dataset_name=dataset_name, dataset_split="validation", metric_type=key, metric_name=label,
                   metric_value=scores.figure(key), metric_args=metric_args)
        for key, label in (("mean_iou", "Mean IoU"), ("mean_accuracy", "Mean accuracy"),
                           ("overall_accuracy", "Overall accuracy"))
        if scores.figure(key) is not None
    ]


def _card_data(results: RunResults) -> SegModelCardData:
    """The card's front matter: tags, data, base model, and the model-index of the final evaluation
    (and of the test-time-augmented one, as a model entry of its own)."""
    final = results.final_eval or Scores()
    dataset_type, dataset_name, _ = dataset_identity(results)
    metric_args = {"num_labels": len(results.class_names), "ignore_index": results.ignore_index}
    hub_dataset = _hub_dataset_id(results.dataset["name"])
    augmented = results.augmented_eval
    start = results.args["model"]
    return SegModelCardData(
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
        eval_results=_eval_results(final, dataset_type, dataset_name, metric_args) or None,
    )


def _training_section(results: RunResults) -> dict | None:
    """The training arguments as the card's procedure section shows them (None: not trained)."""
    training = results.args["training"] if results.train else None
    if not training:
        return None
    warmup = training.get("warmup_steps") or 0
    return {
        **training,
        "optim": str(training.get("optim")),
        "lr_scheduler_type": str(training.get("lr_scheduler_type")),
        # TrainingArguments reads a warm-up below 1 as a share of the run
        "warmup": f"{warmup:.1%} of the steps as warm-up" if 0 < warmup < 1 else f"{int(warmup)} warm-up steps",
    }


def _start_line(start: dict) -> str:
    """Where the run's weights started, in words."""
    if start.get("model_name_or_path"):
        return f"`{start['model_name_or_path']}`"
    if start.get("from_scratch"):
        return "random initialisation (`--from_scratch`)"
    return (f"encoder weights from `{start.get('pretrained') or 'the model default'}`, "
            "decoder and head freshly initialised")


def _protocol_line(evaluation: dict | None, pipeline_owner: str) -> str:
    """The card's sentence on the evaluation protocol, and how many images it scored shrunk to its
    ``max_side`` (the record's ``shrunk_images``), when any was."""
    line = protocol_from_record(evaluation).describe(pipeline_owner)
    shrunk = (evaluation or {}).get("shrunk_images")
    if shrunk:
        line += (f"; {shrunk} validation image(s) larger than {evaluation['max_side']} px a side scored shrunk to "
                 "fit (the annotation nearest-neighbour; --max_eval_side)")
    return line


def build_model_card(results: RunResults, model_ref: str, has_curve: bool, has_samples: bool,
                     evaluations: list[dict] | None = None, has_confusion: bool = False,
                     has_reliability: bool = False, export: dict | None = None):
    """The `ModelCard` of one run (not yet saved); `evaluations` are later evaluation-only records,
    `export` the record of an export of the model (``export.json``)."""
    from huggingface_hub import ModelCard

    final = results.final_eval or Scores()
    dataset_line = dataset_identity(results)[2]
    card_data = _card_data(results)
    training = _training_section(results)
    precision = "bf16" if training and training.get("bf16") else "fp16" if training and training.get("fp16") else "fp32"
    versions = [(name, results.environment[name]) for name in VERSIONS_SHOWN if name in results.environment]
    class_names = results.class_names
    pipeline_owner, pipeline = mmseg_pipeline(results)
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
        boundary_predates=results.boundary_predates_official,
        snippet=SNIPPET.format(model_ref=model_ref, image_path="path/to/image.jpg"),
        dataset_line=dataset_line,
        start_line=_start_line(results.args["model"]),
        loss_line=_loss_line(results),
        batchnorm_line=_batchnorm_line(results),
        results=results,
        final=final,
        training=training,
        precision=precision,
        speed_line=_speed_line(results.speed),
        per_class=[(name, final.class_iou(name), final.class_boundary_iou(name))
                   for name in class_names],
        bootstrap=results.bootstrap,
        published=results.published_model,
        export=export,
        has_reliability=has_reliability,
        memory_kind={"cpu_peak_rss": "peak RSS, CPU", "cuda_max_allocated": "CUDA max allocated"}.get(
            results.peak_memory["kind"], results.peak_memory["kind"]
        ),
        versions=versions,
        has_curve=has_curve,
        has_samples=has_samples,
        has_confusion=has_confusion,
        matrix_classes_shown=MATRIX_CLASSES_SHOWN,
        augmented=results.augmented_eval,
        protocol_line=_protocol_line(results.dataset.get("evaluation"), pipeline_owner),
        mmseg_pipeline=pipeline,
        label_checks=results.dataset.get("label_checks") or [],
        evaluations=evaluations or [],
        fmt=fmt,
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


def write_eval_results(results: RunResults, output_dir: Path) -> Path | None:
    """`.eval_results/mean_iou.yaml` (the Hub's newer eval-results format) for runs scored on a Hub
    dataset; that format names a benchmark dataset on the Hub, so other data has no such file."""
    dataset_id = _hub_dataset_id(results.dataset["name"])
    value = results.mean_iou
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


def write_model_card(results: RunResults, output_dir: str | Path, model_ref: str | None = None) -> Path:
    """Write README.md (the card) and its figures into `output_dir` from the run's record; return the
    card's path. The sample predictions, drawn when the run finished, are shown where that figure
    is in the folder.

    Args:
        results: the run's record.
        model_ref: what the snippet loads (a Hub repo id; default: the output folder).
    """
    output_dir = Path(output_dir)
    has_curve = plot_learning_curve(results, output_dir / LEARNING_CURVE)
    has_samples = (output_dir / SAMPLE_PREDICTIONS).is_file()
    has_confusion = plot_confusion_matrix(results, output_dir / CONFUSION_MATRIX)
    has_reliability = plot_reliability_diagram(results, output_dir / RELIABILITY_DIAGRAM)
    card = build_model_card(results, model_ref or str(output_dir), has_curve, has_samples,
                            read_evaluations(output_dir), has_confusion=has_confusion,
                            has_reliability=has_reliability, export=read_export(output_dir))
    write_eval_results(results, output_dir)
    path = output_dir / "README.md"
    card.save(path)
    return path



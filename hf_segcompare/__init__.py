"""hf_segcompare: fine-tune and compare segmentation CNNs and transformers on Pascal VOC 2012,
ADE20K, Cityscapes or your own data through the Hugging Face `Trainer`.

The Python API is the command line's, one object per step of the flow::

    dataset = load_voc(ensure_synthetic_voc())                     # or load_voc("/data/VOCdevkit")
    model = create_model("segformer-b0", id2label=dataset.labels.id2label, pretrained=True)
    args = from_recipe("segformer-b0", "quick-10", output_dir="out")
    trainer = SegTrainer(model, args, dataset["train"], dataset["validation"], crop_size=512)

`run(ModelArguments(...), DataArguments(...), args)` does all of it (and writes results.json, the
card and the model), as ``hf_segcompare.cli.run_seg`` does; `write_comparison` renders the page of several
runs, `push_folder` publishes a folder, `run_experiment` runs one of the articles' experiments.

Importing the package imports neither torch, transformers nor datasets: each name below is
imported on first use (as transformers' own lazy module does), so ``list_models()`` and the
command line's option checks answer in milliseconds. Loading a saved model through
``AutoModelForSemanticSegmentation`` needs `register_auto_classes()` first.
"""

from __future__ import annotations

from .lazy import lazy_attributes

__version__ = "0.1.0"

# The public names, by the module that defines them, in the order of the flow.
_PUBLIC = {
    "errors": ("CheckpointError", "DataError", "InvalidSamplesError", "PretrainedUnavailable", "PushError",
               "SegCompareError", "TrainingDiverged", "UsageError"),
    "labels": ("IGNORE_INDEX", "VOC_CLASSES", "VOC_LABELS", "LabelSet"),
    "data": ("LabelOptions", "SegmentationData", "ensure_synthetic_voc", "generate_synthetic_voc", "load_ade20k",
             "load_cityscapes", "load_image_mask_dataset", "load_voc"),
    "models.registry": ("ModelEntry", "count_parameters", "create_model", "get_entry", "list_models",
                        "register_model"),
    "models.recipes": ("RECIPE_NAMES", "Recipe", "get_recipe"),
    "evaluation.metrics": ("MEAN_IOU_MODULE", "SegmentationMetrics", "confusion_matrices", "mean_iou",
                           "scores_from_confusion"),
    "evaluation.inference": ("SegImageProcessor", "register_auto_classes", "segment"),
    "engine.trainer": ("SegTrainer",),
    "report.results": ("RunResults",),
    "report.card": ("write_model_card",),
    "report.page": ("write_comparison",),
    "report.push": ("push_folder",),
    "config.arguments": ("DataArguments", "ModelArguments", "SegTrainingArguments", "from_recipe", "parse_args"),
    "pipeline.run": ("run",),
    "pipeline.experiments": ("get_experiment", "run_experiment"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF)


__all__ = sorted(_MODULE_OF)

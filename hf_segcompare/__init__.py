"""hf_segcompare: fine-tune and compare segmentation CNNs and transformers on Pascal VOC 2012,
ADE20K, Cityscapes or your own data through the Hugging Face `Trainer`.

The Python API is the command line's, one object per step::

    dataset = load_voc(ensure_synthetic_voc())                     # or load_voc("/data/VOCdevkit")
    model = create_model("segformer-b0", id2label=dataset.labels.id2label, pretrained=True)
    args = SegTrainingArguments.from_recipe("segformer-b0", "quick-10", output_dir="out")
    trainer = SegTrainer(model, args, dataset["train"], dataset["validation"])

`run(ModelArguments(...), DataArguments(...), args)` does all of it (and writes results.json, the
card and the model), as ``scripts/run_seg.py`` does. Importing the package registers the U-Net /
DeepLabV3+ and ViT configs and the image processor with the transformers Auto classes.
"""

from .config.arguments import DataArguments, ModelArguments, SegTrainingArguments, parse_args
from .data import (
    LabelOptions,
    ensure_synthetic_voc,
    generate_synthetic_voc,
    load_ade20k,
    load_cityscapes,
    load_image_mask_dataset,
    load_voc,
)
from .engine.trainer import SegTrainer
from .errors import (
    CheckpointError,
    DataError,
    InvalidSamplesError,
    PretrainedUnavailable,
    PushError,
    SegCompareError,
    TrainingDiverged,
    UsageError,
)
from .evaluation.inference import SegImageProcessor, segment
from .evaluation.metrics import (
    MEAN_IOU_MODULE,
    SegmentationMetrics,
    confusion_matrices,
    mean_iou,
    scores_from_confusion,
)
from .labels import IGNORE_INDEX, VOC_CLASSES, VOC_LABELS, LabelSet
from .models import ModelEntry, count_parameters, create_model, get_entry, list_models, register_model
from .models.recipes import RECIPE_NAMES, Recipe, get_recipe
from .pipeline.run import run
from .report.results import RunResults

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataArguments",
    "DataError",
    "IGNORE_INDEX",
    "InvalidSamplesError",
    "LabelOptions",
    "LabelSet",
    "MEAN_IOU_MODULE",
    "ModelArguments",
    "ModelEntry",
    "PretrainedUnavailable",
    "PushError",
    "RECIPE_NAMES",
    "Recipe",
    "RunResults",
    "SegCompareError",
    "SegImageProcessor",
    "SegTrainer",
    "SegTrainingArguments",
    "SegmentationMetrics",
    "TrainingDiverged",
    "UsageError",
    "VOC_CLASSES",
    "VOC_LABELS",
    "confusion_matrices",
    "count_parameters",
    "create_model",
    "ensure_synthetic_voc",
    "generate_synthetic_voc",
    "get_entry",
    "get_recipe",
    "list_models",
    "load_ade20k",
    "load_cityscapes",
    "load_image_mask_dataset",
    "load_voc",
    "mean_iou",
    "parse_args",
    "register_model",
    "run",
    "scores_from_confusion",
    "segment",
]

"""hf_segcompare: fine-tune and compare segmentation CNNs and transformers on Pascal VOC 2012
through the Hugging Face `Trainer`.

Importing the package registers the U-Net / DeepLabV3+ and ViT configs with `AutoConfig` and
`AutoModelForSemanticSegmentation`.
"""

from .data import IGNORE_INDEX, VOC_CLASSES, ensure_synthetic_voc, generate_synthetic_voc, load_voc
from .inference import segment
from .metrics import MEAN_IOU_MODULE, SegmentationMetrics, confusion_matrices, mean_iou, scores_from_confusion
from .models import count_parameters, create_model, list_models
from .recipes import RECIPE_NAMES, Recipe, get_recipe

__version__ = "0.1.0"

__all__ = [
    "IGNORE_INDEX",
    "MEAN_IOU_MODULE",
    "RECIPE_NAMES",
    "Recipe",
    "VOC_CLASSES",
    "SegmentationMetrics",
    "confusion_matrices",
    "count_parameters",
    "create_model",
    "ensure_synthetic_voc",
    "generate_synthetic_voc",
    "get_recipe",
    "list_models",
    "load_voc",
    "mean_iou",
    "scores_from_confusion",
    "segment",
]

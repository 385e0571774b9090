"""Pascal VOC data: loading, the embedded synthetic tree, and joint image+mask transforms."""

from ..errors import DataError, InvalidSamplesError
from ..labels import IGNORE_INDEX, VOC_CLASSES, VOC_LABELS, LabelSet
from .download import download_voc
from .synthetic import ensure_synthetic_voc, generate_synthetic_sbd, generate_synthetic_voc, write_voc_tar
from .transforms import (
    AugmentationSeeds,
    SegCollator,
    eval_transforms,
    image_sizes,
    largest_image_side,
    make_batch_transform,
    shape_order,
    size_to_fit,
    train_transforms,
)
from .voc import load_voc, voc_palette

__all__ = [
    "AugmentationSeeds",
    "IGNORE_INDEX",
    "SegCollator",
    "DataError",
    "InvalidSamplesError",
    "VOC_CLASSES",
    "ensure_synthetic_voc",
    "download_voc",
    "eval_transforms",
    "generate_synthetic_sbd",
    "generate_synthetic_voc",
    "image_sizes",
    "LabelSet",
    "VOC_LABELS",
    "largest_image_side",
    "load_voc",
    "make_batch_transform",
    "shape_order",
    "size_to_fit",
    "train_transforms",
    "voc_palette",
    "write_voc_tar",
]

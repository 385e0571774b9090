"""Segmentation data: the sources (Pascal VOC, ADE20K, Cityscapes, Hub/parquet/imagefolder/saved
datasets, image and mask folders, the embedded synthetic tree), the label set read from the data,
how each source reads its mask files, validation, the label checks and caching, and joint
image+mask transforms."""

from ..errors import DataError, InvalidSamplesError
from ..labels import IGNORE_INDEX, VOC_CLASSES, VOC_LABELS, LabelSet
from .ade20k import load_ade20k
from .cityscapes import load_cityscapes
from .download import download_voc
from .image_mask import load_image_mask_dataset
from .label_checks import LabelCheck, LabelCheckWarning
from .label_source import LabelOptions, MaskDecoding, ResolvedLabels
from .mask_reading import ColourTable, MaskReading, read_colour_table
from .masks import mask_to_array, voc_palette
from .segmentation_data import SegmentationData
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
from .validation import LabelValuesError, MaskProblemsError
from .voc import load_voc

__all__ = [
    "AugmentationSeeds",
    "ColourTable",
    "DataError",
    "IGNORE_INDEX",
    "InvalidSamplesError",
    "LabelCheck",
    "LabelCheckWarning",
    "LabelOptions",
    "LabelSet",
    "LabelValuesError",
    "MaskDecoding",
    "MaskProblemsError",
    "MaskReading",
    "ResolvedLabels",
    "SegCollator",
    "SegmentationData",
    "VOC_CLASSES",
    "VOC_LABELS",
    "download_voc",
    "ensure_synthetic_voc",
    "load_ade20k",
    "load_cityscapes",
    "load_image_mask_dataset",
    "eval_transforms",
    "generate_synthetic_sbd",
    "generate_synthetic_voc",
    "image_sizes",
    "largest_image_side",
    "load_voc",
    "make_batch_transform",
    "mask_to_array",
    "read_colour_table",
    "shape_order",
    "size_to_fit",
    "train_transforms",
    "voc_palette",
    "write_voc_tar",
]

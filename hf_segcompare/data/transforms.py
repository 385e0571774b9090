"""Joint image + mask transforms with `torchvision.transforms.v2`.

The image is a `tv_tensors.Image` and the mask a `tv_tensors.Mask`, so every geometric op moves
both the same way and resizes the mask with nearest-neighbour; padding fills the mask with the
label set's void value (255 for VOC) so padded pixels are ignored by loss and metric, never learned
as a class.

- train: random scale 0.5-2.0 of the crop size (large-scale jitter, as mmsegmentation's VOC
  recipe), pad to the crop, random crop, horizontal flip, normalise;
- eval: never resize (an image larger than the eval size is shrunk to fit), so the metric is
  computed at the masks' native resolution; `SegCollator` pads each batch (bottom/right) only to
  its own largest height and width rounded up to 32, and `shape_order` puts images of one padded
  shape next to each other, so a 500x375 VOC image costs 512x384 pixels rather than 512x512.
  ``square=True`` pads every image to the eval size instead (the earlier behaviour).

The mean/std are always passed in: they belong to the model's starting weights (the registry and
`hf_segcompare.models.model_normalization` say which), never to a global default.
"""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any, Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import UsageError
from ..labels import IGNORE_INDEX
from .images import to_rgb
from .masks import mask_to_array

SIZE_MULTIPLE = 32  # U-Net needs H and W divisible by 32, DeepLabV3+ by 16, ViT by its patch size (16)
MAX_CROP_SIZE = 512  # the published VOC recipes train on 512x512 crops
MAX_EVAL_SIZE = 512  # holds every VOC image (at most 500 px); larger images are shrunk to fit


def pad_fill(mask_fill: int = IGNORE_INDEX) -> dict:
    """What padding fills with: black for the image, the label set's void value for the mask."""
    return {tv_tensors.Image: 0, tv_tensors.Mask: mask_fill}


class PadToSize(v2.Transform):
    """Pad bottom/right to `size` x `size` (image fill 0, mask fill `mask_fill`); larger inputs are an error."""

    def __init__(self, size: int, mask_fill: int = IGNORE_INDEX):
        super().__init__()
        self.size = size
        self.fill = pad_fill(mask_fill)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        if height > self.size or width > self.size:
            raise ValueError(f"image of {width}x{height} does not fit the evaluation size {self.size}")
        return {"padding": [0, 0, self.size - width, self.size - height]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.pad(inpt, padding=params["padding"], fill=self.fill.get(type(inpt), 0))


class ShrinkToFit(v2.Transform):
    """Resize (keeping the aspect ratio) so the longer side is at most `size`; smaller inputs pass untouched.

    Masks are resized with nearest-neighbour (v2 does so for every `tv_tensors.Mask`).
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        new_size = shrunk_size(height, width, self.size)
        return {"new_size": list(new_size), "resize": new_size != (height, width)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, size=params["new_size"], antialias=True) if params["resize"] else inpt


def shrunk_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """(height, width) scaled (keeping the aspect ratio) so the longer side is at most `limit`."""
    scale = min(1.0, limit / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_float_and_normalize(mean, std) -> list[v2.Transform]:
    """Pixels to float in [0, 1] (masks to int64), then normalised with the weights' `mean`/`std`."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(mean=mean, std=std),
    ]


def train_transforms(crop_size: int, mean, std, scale_range=(0.5, 2.0), short_side: int | None = None,
                     mask_fill: int = IGNORE_INDEX) -> v2.Compose:
    """Random scale, pad-and-crop to `crop_size`, horizontal flip, normalise with the weights' `mean`/`std`.
    The crop pads images with black and masks with `mask_fill` (the label set's void value).

    The random scale: by default the image is fitted into `crop_size` × `crop_size` times a factor
    drawn from `scale_range` (its long side then spans 0.5-2.0 crops); with `short_side`, its short
    side is drawn from `scale_range` × `short_side` instead, as mmsegmentation's VOC pipeline does
    (``RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)``; its 4:1 cap on
    the long side only matters for images longer than that).
    """
    if short_side:
        rescale = v2.RandomResize(round(short_side * scale_range[0]), round(short_side * scale_range[1]) + 1,
                                  antialias=True)
    else:
        rescale = v2.ScaleJitter(target_size=(crop_size, crop_size), scale_range=scale_range, antialias=True)
    return v2.Compose(
        [
            rescale,
            v2.RandomCrop(crop_size, pad_if_needed=True, fill=pad_fill(mask_fill)),
            v2.RandomHorizontalFlip(),
            *to_float_and_normalize(mean, std),
        ]
    )


def eval_transforms(eval_size: int, mean, std, square: bool = False, mask_fill: int = IGNORE_INDEX) -> v2.Compose:
    """Shrink to fit `eval_size` (only images larger than it), normalise with the weights' `mean`/`std`.

    Images that fit (all of VOC at 512) are never resized, so they are scored at native
    resolution; a larger image is shrunk to fit, its mask with nearest-neighbour. The batch is
    padded by `SegCollator`; with `square`, every image is padded here to `eval_size` x
    `eval_size` (mask fill `mask_fill`, the label set's void value) instead.
    """
    padding = [PadToSize(eval_size, mask_fill)] if square else []
    return v2.Compose([ShrinkToFit(eval_size), *padding, *to_float_and_normalize(mean, std)])


def size_to_fit(largest_side: int, multiple: int = SIZE_MULTIPLE) -> int:
    """The smallest multiple of `multiple` that holds `largest_side` (500 px VOC images -> 512)."""
    return multiple * math.ceil(largest_side / multiple)


def fitted_size(dataset, limit: int, sizes: list[tuple[int, int]] | None = None) -> int:
    """The smallest multiple of 32 holding the split's largest image, at most `limit` (crop and pad
    size). `sizes`: the split's `image_sizes`, where they were read already."""
    sizes = image_sizes(dataset) if sizes is None else sizes
    return min(limit, size_to_fit(max(max(size) for size in sizes)))


def largest_image_side(dataset, image_column: str = "image") -> int:
    """Largest width or height over a split (see `image_sizes`)."""
    return max(max(size) for size in image_sizes(dataset, image_column))


def image_sizes(dataset, image_column: str = "image") -> list[tuple[int, int]]:
    """(height, width) of every image of a split: from the ``width``/``height`` columns `load_voc`
    stores, else read from the image headers batch by batch, without decoding pixels."""
    if {"width", "height"} <= set(dataset.column_names):
        return list(zip(dataset["height"], dataset["width"]))
    from datasets import Image as ImageFeature
    from PIL import Image

    undecoded = dataset.select_columns([image_column]).cast_column(image_column, ImageFeature(decode=False))
    sizes = []
    for batch in undecoded.iter(batch_size=256):
        for entry in batch[image_column]:
            source = entry["path"] if entry.get("bytes") is None else io.BytesIO(entry["bytes"])
            with Image.open(source) as image:
                sizes.append((image.height, image.width))
    return sizes


def padded_shape(height: int, width: int, eval_size: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The (height, width) an image of this size is evaluated at: shrunk to fit `eval_size`, then
    each side rounded up to `multiple`."""
    return batch_shape([shrunk_size(height, width, eval_size)], multiple)


def padded_side(side, multiple: int = SIZE_MULTIPLE, minimum: int = 1):
    """`side` rounded up to a multiple of `multiple`, and at least `minimum`: the side an image is padded
    to. Works on torch.export's symbolic sizes too (`torch.sym_max`, where ``max`` would specialise them)."""
    return torch.sym_max(side + (-side) % multiple, minimum)


def batch_shape(sizes, multiple: int = SIZE_MULTIPLE, minimum: int = 1) -> tuple[int, int]:
    """The (height, width) a batch of images of these (height, width) sizes is padded to: its
    largest of each, rounded up to `multiple`, at least `minimum`."""
    return (padded_side(max(height for height, _ in sizes), multiple, minimum),
            padded_side(max(width for _, width in sizes), multiple, minimum))


def shape_order(sizes: list[tuple[int, int]], eval_size: int,
                run_sizes: list[tuple[int, int]] | None = None) -> list[int]:
    """Indices that put images of one padded shape next to each other (stable within a shape), so
    consecutive evaluation batches need little or no padding beyond each image's own. With
    `run_sizes` (the sizes an evaluation protocol runs the images at), images of one run size and
    one size of their own are put next to each other within a padded shape: the images such a
    protocol runs together."""
    if run_sizes is None:
        return sorted(range(len(sizes)), key=lambda index: padded_shape(*sizes[index], eval_size))
    return sorted(range(len(sizes)),
                  key=lambda index: (padded_shape(*sizes[index], eval_size), run_sizes[index], sizes[index]))


def pad_batch(images: list[torch.Tensor], fill: torch.Tensor | float = 0.0,
              multiple: int = SIZE_MULTIPLE, minimum: int = 1) -> torch.Tensor:
    """Stack ``[C, H, W]`` (or ``[H, W]``) tensors padded bottom/right with `fill` to the batch's
    largest height and width, each rounded up to `multiple` and at least `minimum`. `fill` may hold
    one value per channel."""
    height, width = batch_shape([tuple(image.shape[-2:]) for image in images], multiple, minimum)
    like = {"dtype": images[0].dtype, "device": images[0].device}
    batch = torch.empty((len(images), *images[0].shape[:-2], height, width), **like)
    batch[...] = torch.as_tensor(fill, **like).reshape(-1, 1, 1) if images[0].dim() == 3 else fill
    for index, image in enumerate(images):
        batch[index, ..., : image.shape[-2], : image.shape[-1]] = image
    return batch


def black_fill(mean, std) -> torch.Tensor:
    """Black (pixel value 0) after normalising with `mean`/`std`, one value per channel: what
    images are padded with once normalised, as `PadToSize` and the training crop pad before."""
    return -torch.as_tensor(mean, dtype=torch.float32) / torch.as_tensor(std, dtype=torch.float32)


class SegCollator:
    """`Trainer`'s data collator: pad ``pixel_values`` and ``labels`` to the batch's shape.

    Images are padded with black in the weights' normalisation (what `PadToSize` and the training
    crop pad with before normalising), labels with `ignore_index` (the label set's void value), so
    padded pixels are never scored. A batch
    of one shape (every training crop, a square evaluation) is only stacked.
    """

    def __init__(self, mean, std, ignore_index: int = IGNORE_INDEX, multiple: int = SIZE_MULTIPLE):
        self.image_fill = black_fill(mean, std)
        self.ignore_index = ignore_index
        self.multiple = multiple

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": pad_batch([feature["pixel_values"] for feature in features], self.image_fill,
                                           self.multiple)}
        if "labels" in features[0]:
            batch["labels"] = pad_batch([feature["labels"] for feature in features], self.ignore_index, self.multiple)
        for key in features[0].keys() - batch.keys():  # e.g. each image's size, for an evaluation protocol
            batch[key] = torch.as_tensor([feature[key] for feature in features])
        return batch


class AugmentationSeeds:
    """Where each training sample's random augmentation comes from: (seed, epoch, sample id).

    torchvision's random transforms draw from torch's global generator, and Trainer's data loader
    fetches one batch ahead: a checkpoint's saved RNG state is already past the next batch's
    augmentation, so a resumed run would crop that batch differently. Drawing each sample's
    augmentation from a generator seeded by (seed, epoch, id) makes it the same however the run was
    interrupted, however many data-loader workers or processes there are, and leaves the global
    generator alone. `AugmentationEpoch` (a Trainer callback) keeps `epoch` current; it lives in
    shared memory, so persistent data-loader workers see each new epoch too.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(value)

    def for_sample(self, sample_id: str) -> int:
        """The seed of `sample_id`'s augmentation in the current epoch (stable across processes)."""
        digest = hashlib.blake2b(f"{self.seed}:{self.epoch}:{sample_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1  # torch.manual_seed takes at most 2**63 - 1 here


def make_batch_transform(pipeline: Callable, seeds: AugmentationSeeds | None = None) -> Callable[[dict], dict]:
    """Wrap a v2 pipeline as a `Dataset.with_transform` function: {image, label} -> {pixel_values, labels}.

    With `seeds`, each sample is transformed under its own seed (see `AugmentationSeeds`); the
    batch needs an ``id`` column then.
    """

    def transform(batch: dict) -> dict:
        pixel_values, labels = [], []
        ids = batch["id"] if seeds is not None else [None] * len(batch["image"])
        for sample_id, image, mask in zip(ids, batch["image"], batch["label"]):
            image_tensor = tv_tensors.Image(F.pil_to_tensor(to_rgb(image)))
            mask_tensor = tv_tensors.Mask(torch.from_numpy(mask_to_array(mask).copy()))
            if seeds is None:
                image_out, mask_out = pipeline(image_tensor, mask_tensor)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seeds.for_sample(sample_id))
                    image_out, mask_out = pipeline(image_tensor, mask_tensor)
            pixel_values.append(image_out.as_subclass(torch.Tensor))
            labels.append(mask_out.as_subclass(torch.Tensor))
        return {"pixel_values": pixel_values, "labels": labels}

    return transform


def seeded_training_set(dataset, crop_size: int, seed: int, mean, std, short_side: int | None = None,
                        mask_fill: int = IGNORE_INDEX):
    """`dataset` (raw ``id``/``image``/``label``) with the training transform: random crops of
    `crop_size`, each sample's augmentation seeded by (`seed`, epoch, its id) so that a resumed run
    repeats it (`AugmentationSeeds`, returned beside the dataset for the callback that keeps its
    epoch); `short_side`: mmsegmentation's scale jitter around that short side instead of the crop.

    Raises:
        UsageError: the dataset has no ``id`` column.
    """
    if "id" not in dataset.column_names:
        raise UsageError("train_dataset has no 'id' column: each sample's random augmentation is seeded by "
                         "its id (so a resumed run repeats it); add one, e.g. dataset.add_column('id', "
                         "[str(i) for i in range(len(dataset))]).")
    seeds = AugmentationSeeds(seed)
    pipeline = train_transforms(crop_size, mean, std, short_side=short_side, mask_fill=mask_fill)
    return dataset.with_transform(make_batch_transform(pipeline, seeds)), seeds

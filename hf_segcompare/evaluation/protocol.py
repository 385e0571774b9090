"""How a model is evaluated: the test-time resize, whole-image or sliding-window inference, and
multi-scale + flip test-time augmentation, as published segmentation tables report them.

`EvalProtocol` names one way; `protocol_transform` prepares each validation image for it and
`image_logits` runs it on normalised images of one size, yielding each image's class scores at its
annotation's size. `SegTrainer` uses them whenever the protocol is not the plain one (whole image,
native resolution, one scale, no flip), which keeps its own batched path (images padded with black to
multiples of 32). Off the plain path every step is mmsegmentation's (1.x) own, so that
``--protocol mmseg`` scores what mmsegmentation's test pipeline, ``SegDataPreProcessor``,
``EncoderDecoder`` inference, ``postprocess_result`` and ``IoUMetric`` score
(tests/test_mmseg_parity.py runs them):

- the test resize: ``resize="short_side"`` resizes the image so its short side is `short_side` with the
  ratio kept and the long side at most 4x that (``Resize(scale=(2048, 512), keep_ratio=True)``: a
  500x375 image runs at 683x512), sizes rounded as mmcv's ``rescale_size``, pixels by OpenCV's bilinear
  as mmcv's ``imresize`` (`resize_image`); ``resize="native"`` never resizes an image that fits the eval
  size (a larger one is shrunk to fit in ``whole`` mode);
- normalisation on 0-255 values (`normalize_pixels`), then padding only where the model needs a
  multiple (DeepLabV3+'s 16, ViT's patch), bottom and right, with 0 after normalisation, as
  ``SegDataPreProcessor`` with a size divisor; SegFormer and U-Net take any size and are not padded;
- ``mode="whole"``: the logits resized to the padded size; ``mode="slide"``: windows of `crop` px every
  `stride` px over the padded image, each window's logits resized to it, averaged where they overlap
  (``slide_inference``);
- the padding cropped off the logits, the logits resized bilinearly to the annotation's size, then the
  argmax (``postprocess_result``);
- `scales` and `flip`: the image is also run at each scale (and mirrored), each run's logits brought to
  the annotation's size (and un-mirrored), and their softmax probabilities averaged (``SegTTAModel``).
  Here the scaled image is the normalised one resized (bilinear, no antialiasing), where mmsegmentation
  resizes the decoded image with OpenCV: test-time augmentation is close to mmsegmentation's, not equal.

Images run together only when they run at the same size, so each is padded exactly as it would be
alone; sliding windows run in batches of windows; the per-pixel work after the model runs image by
image (one image's maps stay in the CPU's cache, a batch's do not).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..data.transforms import SIZE_MULTIPLE, padded_side, shrunk_size, size_to_fit
from ..errors import UsageError

MMSEG_LONG_SIDE_RATIO = 4  # mmsegmentation's VOC scale (2048, 512): the long side at most 4x the short
# An annotation with a longer side is scored shrunk to it (nearest neighbour), its image with it: the
# class maps scored at the annotation's size would otherwise grow with the largest image (a 6000 x 4000
# photo's 21 class maps take 2 GB). Cityscapes' 2048 x 1024 and every VOC image fit.
MAX_SCORED_SIDE = 2048
# Averaged probabilities are scored as their log: a class no run gives any probability gets this one's.
PROBABILITY_FLOOR = 1e-30


@dataclass(frozen=True)
class EvalProtocol:
    """One way of evaluating (see the module docstring).

    Args:
        resize: ``native`` or ``short_side``.
        short_side: the short side ``short_side`` resizes to (default: the training crop, as
            mmsegmentation's 512 for its 512 crops).
        mode: ``whole`` or ``slide``.
        crop, stride: the sliding window and its step, in pixels (``slide`` only; default: the eval
            size, and two thirds of the window as mmsegmentation's 512/341).
        scales: the image scales whose predictions are averaged (1.0 alone: single scale).
        flip: also average the prediction of the mirrored image.
        max_side: an annotation whose long side is larger is scored shrunk to it, nearest-neighbour,
            and its image run as an image of that size (None: no limit, as records before it).
    """

    resize: str = "native"
    short_side: int | None = None
    mode: str = "whole"
    crop: int | None = None
    stride: int | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    max_side: int | None = MAX_SCORED_SIDE

    def __post_init__(self):
        if self.resize not in ("native", "short_side"):
            raise UsageError(f"eval resize {self.resize!r}: use 'native' or 'short_side'.")
        if self.mode not in ("whole", "slide"):
            raise UsageError(f"--eval_mode {self.mode!r}: use 'whole' or 'slide'.")
        if not self.scales or min(self.scales) <= 0:
            raise UsageError(f"--eval_scales {list(self.scales)}: give one or more positive scales, e.g. 0.5 1.0 1.5.")
        if self.mode == "whole" and (self.crop is not None or self.stride is not None):
            raise UsageError("--eval_crop and --eval_stride set the sliding window: pass --eval_mode slide with them.")
        if self.crop is not None and (self.crop <= 0 or self.crop % SIZE_MULTIPLE):
            raise UsageError(f"--eval_crop {self.crop}: the sliding window must be a positive multiple of "
                             f"{SIZE_MULTIPLE} (e.g. {size_to_fit(max(self.crop, 1))}).")
        if self.max_side is not None and self.max_side < SIZE_MULTIPLE:
            raise UsageError(f"--max_eval_side {self.max_side}: give at least {SIZE_MULTIPLE} px (the default, "
                             f"{MAX_SCORED_SIDE}, scores every VOC and Cityscapes image at its own size).")
        if self.stride is not None and not 0 < self.stride <= (self.crop or self.stride):
            raise UsageError(f"--eval_stride {self.stride}: give a step between 1 and the window ({self.crop}), "
                             "or windows would leave pixels out.")

    def with_defaults(self, eval_size: int, short_side: int | None) -> "EvalProtocol":
        """This protocol with what it left open filled in: the short side (the training crop, as
        mmsegmentation's 512 for its 512 crops), the window (`eval_size`) and its step (two thirds
        of the window: mmsegmentation's 341 for 512)."""
        if self.mode != "slide":
            return replace(self, short_side=self.short_side or short_side)
        crop = self.crop or eval_size
        return replace(self, short_side=self.short_side or short_side, crop=crop,
                       stride=self.stride or max(1, crop * 2 // 3))

    @property
    def augmented(self) -> bool:
        """Whether several predictions are averaged (more than one scale, or a flip)."""
        return tuple(self.scales) != (1.0,) or self.flip

    @property
    def plain(self) -> bool:
        """Whole images at native resolution, once: what `SegTrainer`'s batched path computes."""
        return self.resize == "native" and self.mode == "whole" and not self.augmented

    def single_scale(self) -> "EvalProtocol":
        """This protocol without its test-time augmentation."""
        return replace(self, scales=(1.0,), flip=False)

    def name(self) -> str:
        """``single-scale`` or e.g. ``multi-scale (0.5, 1.0, 1.5) + flip``: how tables label the figure."""
        if not self.augmented:
            return "single-scale"
        if tuple(self.scales) == (1.0,):
            return "flip"
        scales = "multi-scale (" + ", ".join(f"{scale:g}" for scale in self.scales) + ")" \
            if len(self.scales) > 1 else f"scale {self.scales[0]:g}"
        return scales + (" + flip" if self.flip else "")

    def brief(self) -> str:
        """The single-scale part in a few words, for tables: e.g. ``short side 512, whole image``."""
        resize = f"short side {self.short_side}" if self.resize == "short_side" else "native resolution"
        return f"{resize}, {'sliding window' if self.mode == 'slide' else 'whole image'}"

    def describe(self, pipeline: str = "mmsegmentation's") -> str:
        """The protocol in one sentence, for the card; `pipeline` names whose test resize it is (e.g.
        "mmsegmentation's ADE20K": the dataset's own, never another's)."""
        resize = (f"each image resized to a short side of {self.short_side} px, ratio kept ({pipeline} test resize)"
                  if self.resize == "short_side" else "images at native resolution")
        mode = (f"sliding {self.crop} px windows every {self.stride} px" if self.mode == "slide"
                else "whole-image inference")
        return f"{self.name()}, {resize}, {mode}; predictions scored at the annotation's own resolution"

    def run_size(self, height: int, width: int, eval_size: int) -> tuple[int, int]:
        """The (height, width) an image of this size is run at: resized to the short side
        (``short_side``); else as it is, except that whole-image inference shrinks an image larger
        than `eval_size` to fit (``slide`` never does)."""
        if self.resize == "short_side":
            return short_side_size(height, width, self.short_side)
        if self.mode == "whole":
            return shrunk_size(height, width, eval_size)
        return height, width

    def shrunk_for_scoring(self, sizes: list[tuple[int, int]]) -> list[int]:
        """The indices of the images (of these (height, width) sizes) that this protocol scores shrunk to
        ``max_side``; none under the plain protocol, whose batched path shrinks to the eval size instead."""
        if self.plain or self.max_side is None:
            return []
        return [index for index, size in enumerate(sizes) if max(size) > self.max_side]

    def record(self) -> dict:
        """What results.json records about the protocol."""
        return {"name": self.name(), "resize": self.resize,
                "short_side": self.short_side if self.resize == "short_side" else None, "mode": self.mode,
                "crop": self.crop if self.mode == "slide" else None,
                "stride": self.stride if self.mode == "slide" else None,
                "scales": list(self.scales), "flip": self.flip, "max_side": self.max_side}


def protocol_from_record(record: dict | None) -> EvalProtocol:
    """The `EvalProtocol` a results.json ``evaluation`` record describes (records written before
    protocols existed: the plain one, which every run used then)."""
    if not record:
        return EvalProtocol()
    return EvalProtocol(resize=record["resize"], short_side=record.get("short_side"), mode=record["mode"],
                        crop=record.get("crop"), stride=record.get("stride"),
                        scales=tuple(record.get("scales") or (1.0,)), flip=bool(record.get("flip")),
                        max_side=record.get("max_side"))


def short_side_size(height: int, width: int, short_side: int,
                    long_side: int | None = None) -> tuple[int, int]:
    """(height, width) resized so the short side is `short_side` and the long side at most
    `long_side` (default 4× the short), ratio kept, rounded as mmsegmentation's ``rescale_size``."""
    long_side = long_side or MMSEG_LONG_SIDE_RATIO * short_side
    scale = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A uint8 image tensor ``[3, H, W]`` at `size` (height, width), resized as mmcv's ``imresize``
    resizes (OpenCV's bilinear, ``cv2.INTER_LINEAR``, in its fixed-point arithmetic, no antialiasing):
    the one resize every evaluation and the saved image processor apply, so that `segment()` and the
    pipeline answer what the evaluation scored, and a resized image is the very one mmsegmentation's
    test pipeline makes. Unchanged when already that size."""
    import cv2

    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    channels_last = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
    resized = cv2.resize(channels_last, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized.reshape(*size, -1)).permute(2, 0, 1).contiguous()


def normalize_pixels(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """A uint8 image ``[3, H, W]`` as float32 ``(pixels - 255 mean) / (255 std)``: mmsegmentation's
    ``SegDataPreProcessor`` arithmetic on 0-255 values (the same numbers as (pixels / 255 - mean) / std
    up to the last bit, which an argmax between two near-equal logits can see)."""
    scale = torch.tensor([255.0 * value for value in mean], dtype=torch.float32).reshape(-1, 1, 1)
    spread = torch.tensor([255.0 * value for value in std], dtype=torch.float32).reshape(-1, 1, 1)
    return (pixels.to(torch.float32) - scale) / spread


def protocol_transform(protocol: EvalProtocol, eval_size: int, mean, std):
    """A `Dataset.with_transform` function for `protocol`: {image, label} -> pixel_values (the image
    as the protocol runs it, normalised), labels (the annotation untouched), and both sizes, so
    the prediction can be brought back to the annotation's own resolution.

    The image: at `EvalProtocol.run_size` (`resize_image`), normalised by `normalize_pixels`. An
    annotation larger than the protocol's ``max_side`` is shrunk to it (nearest neighbour) and its
    image run as an image of that size.
    """
    from ..data.images import to_rgb
    from ..data.masks import mask_to_array

    def transform(batch: dict) -> dict:
        output = {"pixel_values": [], "labels": [], "image_size": [], "label_size": []}
        for image, mask in zip(batch["image"], batch["label"]):
            image = to_rgb(image)
            labels = torch.from_numpy(mask_to_array(mask).astype("int64"))
            height, width = image.height, image.width
            if protocol.max_side is not None and max(labels.shape) > protocol.max_side:
                height, width = shrunk_size(*labels.shape, protocol.max_side)
                labels = TF.resize(labels[None], [height, width], interpolation=v2.InterpolationMode.NEAREST)[0]
            size = protocol.run_size(height, width, eval_size)
            output["pixel_values"].append(normalize_pixels(resize_image(TF.pil_to_tensor(image), size), mean, std))
            output["labels"].append(labels)
            output["image_size"].append(list(size))
            output["label_size"].append(list(labels.shape))
        return output

    return transform


def _padded(pixels: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """`pixels` ``[N, 3, h, w]`` padded bottom/right with 0 (after normalisation: the mean colour) to
    multiples of `multiple`, as ``SegDataPreProcessor`` with a size divisor pads, and to at least
    `minimum` a side (where mmsegmentation's model would fail on so small an image); as they are else."""
    height, width = pixels.shape[-2:]
    padding = (0, padded_side(width, multiple, minimum) - width, 0, padded_side(height, multiple, minimum) - height)
    return F.pad(pixels, padding) if any(padding) else pixels


def _logits_at(model, pixels: torch.Tensor) -> torch.Tensor:
    """The model's logits for `pixels` ``[N, 3, h, w]`` resized bilinearly to ``h × w`` (the decode
    head's ``predict_by_feat``)."""
    logits = model(pixel_values=pixels).logits
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return F.interpolate(logits.float(), size=pixels.shape[-2:], mode="bilinear", align_corners=False)


def window_boxes(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of the windows of `crop` px every `stride` px over an image of
    ``height × width``, row by row; the last window of a row or column ends at the image's edge
    (mmsegmentation's ``slide_inference``). All windows of an image have one size."""
    rows = max(height - crop + stride - 1, 0) // stride + 1
    columns = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for row in range(rows):
        for column in range(columns):
            bottom, right = min(row * stride + crop, height), min(column * stride + crop, width)
            boxes.append((max(bottom - crop, 0), bottom, max(right - crop, 0), right))
    return boxes


def _slide_logits(model, pixels: torch.Tensor, crop: int, stride: int, batch_size: int) -> torch.Tensor:
    """Logits averaged over the `window_boxes` of `pixels` ``[N, 3, h, w]``, the windows of all N
    images run `batch_size` at a time. Each image's windows are added in the same order whatever
    the batch, so the sums are those of one image at a time."""
    count_images, _, height, width = pixels.shape
    boxes = window_boxes(height, width, crop, stride)
    windows = [(box, image) for box in boxes for image in range(count_images)]
    total = None
    for start in range(0, len(windows), batch_size):
        chunk = windows[start: start + batch_size]
        crops = torch.stack([pixels[image, :, top:bottom, left:right] for (top, bottom, left, right), image in chunk])
        logits = _logits_at(model, crops)
        if total is None:
            total = logits.new_zeros((count_images, logits.shape[1], height, width))
        for ((top, bottom, left, right), image), window in zip(chunk, logits):
            total[image, :, top:bottom, left:right] += window
    count = total.new_zeros((1, 1, height, width))
    for top, bottom, left, right in boxes:
        count[..., top:bottom, left:right] += 1
    return total / count


def _one_run(model, pixels: torch.Tensor, protocol: EvalProtocol, scale: float, mirrored: bool,
             padding: tuple[int, int], batch_size: int, size: tuple[int, int]):
    """Each image's logits ``[1, C, *size]`` from one run of the N images `pixels` at `scale` (and
    mirrored), mmsegmentation's steps: padded to `padding`'s (multiple, minimum) (`_padded`), whole-image
    or sliding-window logits at the padded size, the padding cropped off, un-mirrored, resized to `size`. The per-pixel
    work after the model runs image by image (one image's maps stay in the CPU's cache, a batch's do not)."""
    height, width = pixels.shape[-2:]
    scaled_size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
    scaled = pixels if scaled_size == (height, width) else F.interpolate(pixels, size=scaled_size, mode="bilinear",
                                                                         align_corners=False)
    inputs = _padded(scaled.flip(-1) if mirrored else scaled, *padding)
    if protocol.mode == "slide":
        logits = _slide_logits(model, inputs, protocol.crop, protocol.stride, batch_size)
    else:
        logits = _logits_at(model, inputs)
    for index in range(len(pixels)):
        image_logits = logits[index: index + 1, :, : scaled_size[0], : scaled_size[1]]
        if mirrored:
            image_logits = image_logits.flip(-1)
        yield F.interpolate(image_logits, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def image_logits(model, pixels: torch.Tensor, protocol: EvalProtocol, multiple: int | None = None,
                 batch_size: int | None = None, size: tuple[int, int] | None = None):
    """Yield each image's class scores ``[1, C, *size]``, in order, for normalised images `pixels`
    ``[N, 3, h, w]`` (all of one size) under `protocol`'s mode, scales and flip (its resize is the
    caller's: the images come resized): with one run, the logits resized to `size` (default: the
    images' own), whose argmax is the prediction, as mmsegmentation's ``postprocess_result``; with
    several (scales, flip), the log of the runs' softmax probabilities averaged at `size`, as its
    ``SegTTAModel``. Either way the softmax of the scores is the class probabilities.

    `multiple`: what the model's input sides must be a multiple of (default: the model's own,
    `hf_segcompare.models.input_multiple`; 1: none, and nothing is padded); an image under the model's
    `input_minimum` is padded up to it. Sliding windows run `batch_size` at a time (default: N).
    """
    from ..models.registry import input_minimum, input_multiple

    padding = (input_multiple(model) if multiple is None else multiple, input_minimum(model))
    height, width = pixels.shape[-2:]
    size = (height, width) if size is None else tuple(size)
    batch_size = batch_size or len(pixels)
    mirrors = (False, True) if protocol.flip else (False,)
    runs = [(scale, mirrored) for scale in protocol.scales for mirrored in mirrors]
    if len(runs) == 1:  # nothing to average: each image out at once, while its maps are in the cache
        yield from _one_run(model, pixels, protocol, *runs[0], padding, batch_size, size)
        return
    totals = None
    for scale, mirrored in runs:
        run = [logits.softmax(dim=1) for logits in _one_run(model, pixels, protocol, scale, mirrored, padding,
                                                            batch_size, size)]
        totals = run if totals is None else [total + probabilities for total, probabilities in zip(totals, run)]
    for total in totals:
        yield (total / len(runs)).clamp_min_(PROBABILITY_FLOOR).log_()


def predict_probabilities(model, pixels: torch.Tensor, protocol: EvalProtocol, multiple: int | None = None,
                          batch_size: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The class probabilities of all N images (the softmax of `image_logits`) as one ``[N, C, *size]`` tensor."""
    return torch.cat([scores.softmax(dim=1) for scores in image_logits(model, pixels, protocol, multiple,
                                                                       batch_size, size)])


__all__ = ["EvalProtocol", "image_logits", "normalize_pixels", "predict_probabilities", "protocol_from_record",
           "protocol_transform", "resize_image", "short_side_size", "window_boxes"]

"""How a model is evaluated: the test-time resize, whole-image or sliding-window inference, and
multi-scale + flip test-time augmentation, as published segmentation tables report them.

`EvalProtocol` names one way; `image_probabilities` applies it to normalised images of one size and
yields each image's class probabilities (`predict_probabilities`: all of them as one tensor).
`SegTrainer` uses it whenever the protocol is not the plain one (whole image, native resolution,
one scale, no flip), which keeps its own batched path. Images run together only when they run at
the same size, so each is padded exactly as it would be alone and a batch scores what one image at
a time scores; sliding windows run in batches of windows; the per-pixel work after the model runs
image by image (one image's maps stay in the CPU's cache, a batch's do not).

- ``resize="native"`` never resizes an image that fits the eval size (a larger one is shrunk to
  fit in ``whole`` mode); ``resize="short_side"`` resizes the image so its short side is
  `short_side` with the ratio kept and the long side at most 4× that, as mmsegmentation's VOC test
  pipeline does (``Resize(scale=(2048, 512), keep_ratio=True)``: a 500×375 image runs at 683×512).
  On this per-image path the prediction is always upsampled to the annotation's own size and
  scored there (the batched path shrinks a too-large image's annotation with it instead).
- ``mode="slide"`` runs windows of `crop` px every `stride` px and averages the logits where they
  overlap (mmsegmentation's ``slide_inference``), so a large image is not shrunk.
- `scales` and `flip`: the image is also run at each scale (and mirrored), each prediction is
  brought back to the image's size (and un-mirrored), and their softmax probabilities are
  averaged, as mmsegmentation's ``SegTTAModel`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..data.transforms import SIZE_MULTIPLE, pad_batch, shrunk_size, size_to_fit, to_float_and_normalize
from ..errors import UsageError

MMSEG_LONG_SIDE_RATIO = 4  # mmsegmentation's VOC scale (2048, 512): the long side at most 4x the short
# An annotation with a longer side is scored shrunk to it (nearest neighbour), its image with it: the
# class maps scored at the annotation's size would otherwise grow with the largest image (a 6000 x 4000
# photo's 21 class maps take 2 GB). Cityscapes' 2048 x 1024 and every VOC image fit.
MAX_SCORED_SIDE = 2048


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
    """An image tensor [..., H, W] at `size` (height, width), resized bilinearly with antialiasing
    (as PIL does): the one resize every evaluation and the saved image processor apply, so that
    `segment()` and the pipeline answer what the evaluation scored. Unchanged when already that size."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    return TF.resize(pixels, list(size), antialias=True)


def protocol_transform(protocol: EvalProtocol, eval_size: int, mean, std):
    """A `Dataset.with_transform` function for `protocol`: {image, label} -> pixel_values (the image
    as the protocol runs it, normalised), labels (the annotation untouched), and both sizes, so
    the prediction can be brought back to the annotation's own resolution.

    The image: at `EvalProtocol.run_size`. An annotation larger than the protocol's ``max_side`` is
    shrunk to it (nearest neighbour) and its image run as an image of that size.
    """
    from ..data.images import to_rgb
    from ..data.masks import mask_to_array

    normalize = v2.Compose(to_float_and_normalize(mean, std))

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
            pixels = resize_image(TF.pil_to_tensor(image), size)
            pixels = normalize(tv_tensors.Image(pixels)).as_subclass(torch.Tensor)
            output["pixel_values"].append(pixels)
            output["labels"].append(labels)
            output["image_size"].append(list(size))
            output["label_size"].append(list(labels.shape))
        return output

    return transform


def _model_logits(model, pixels: torch.Tensor, pad_fill: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The model's raw logits for `pixels` ``[N, 3, h, w]`` padded bottom/right to multiples of 32
    (as every evaluation here), and that padded size."""
    padded = pad_batch(list(pixels), pad_fill)
    logits = model(pixel_values=padded).logits
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits, tuple(padded.shape[-2:])


def _at_image_size(logits: torch.Tensor, padded_size: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Raw logits upsampled to the padded input's size and cropped back to ``height × width``."""
    logits = F.interpolate(logits.float(), size=padded_size, mode="bilinear", align_corners=False)
    return logits[..., :height, :width]


def _logits(model, pixels: torch.Tensor, pad_fill: torch.Tensor) -> torch.Tensor:
    """The model's logits for `pixels` ``[N, 3, h, w]`` at ``h × w``: padded, run, upsampled, cropped back."""
    logits, padded_size = _model_logits(model, pixels, pad_fill)
    return _at_image_size(logits, padded_size, *pixels.shape[-2:])


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


def _slide_logits(model, pixels: torch.Tensor, crop: int, stride: int, pad_fill: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
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
        logits = _logits(model, crops, pad_fill)
        if total is None:
            total = logits.new_zeros((count_images, logits.shape[1], height, width))
        for ((top, bottom, left, right), image), window in zip(chunk, logits):
            total[image, :, top:bottom, left:right] += window
    count = total.new_zeros((1, 1, height, width))
    for top, bottom, left, right in boxes:
        count[..., top:bottom, left:right] += 1
    return total / count


def _one_run(model, pixels: torch.Tensor, protocol: EvalProtocol, scale: float, mirrored: bool,
             pad_fill: torch.Tensor | float, batch_size: int):
    """Each image's class probabilities ``[1, C, h, w]`` at the images' size from one run: the N
    images at `scale` (and mirrored), run together; the per-pixel work after the model (upsampling,
    softmax, resizing back) image by image, where a batch's maps would not stay in the cache."""
    height, width = pixels.shape[-2:]
    size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
    scaled = pixels if size == (height, width) else F.interpolate(pixels, size=size, mode="bilinear",
                                                                  align_corners=False)
    inputs = scaled.flip(-1) if mirrored else scaled
    if protocol.mode == "slide":
        averaged = _slide_logits(model, inputs, protocol.crop, protocol.stride, pad_fill, batch_size)
        per_image = (averaged[index: index + 1] for index in range(len(pixels)))
    else:
        raw, padded_size = _model_logits(model, inputs, pad_fill)
        per_image = (_at_image_size(raw[index: index + 1], padded_size, *size) for index in range(len(pixels)))
    for image_logits in per_image:
        probabilities = image_logits.softmax(dim=1)
        if mirrored:
            probabilities = probabilities.flip(-1)
        if probabilities.shape[-2:] != (height, width):
            probabilities = F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)
        yield probabilities


@torch.no_grad()
def image_probabilities(model, pixels: torch.Tensor, protocol: EvalProtocol, pad_fill: torch.Tensor | float = 0.0,
                        batch_size: int | None = None, size: tuple[int, int] | None = None):
    """Yield each image's class probabilities ``[1, C, *size]``, in order, for normalised images
    `pixels` ``[N, 3, h, w]`` (all of one size) under `protocol`'s mode, scales and flip (its resize
    is the caller's: the images come resized). The N images run together at each scale; sliding
    windows run `batch_size` at a time (default: N). `size`: where the probabilities are resized
    to at the end (bilinearly; default: the images' own size).

    `pad_fill`: the value padding takes (black in the weights' normalisation, one per channel).
    """
    height, width = pixels.shape[-2:]
    size = (height, width) if size is None else tuple(size)
    batch_size = batch_size or len(pixels)
    mirrors = (False, True) if protocol.flip else (False,)
    runs = [(scale, mirrored) for scale in protocol.scales for mirrored in mirrors]
    if len(runs) == 1:  # nothing to average: each image out at once, while its maps are in the cache
        for probabilities in _one_run(model, pixels, protocol, *runs[0], pad_fill, batch_size):
            yield _resized(probabilities, size)
        return
    totals = None
    for scale, mirrored in runs:
        run = list(_one_run(model, pixels, protocol, scale, mirrored, pad_fill, batch_size))
        totals = run if totals is None else [total + probabilities for total, probabilities in zip(totals, run)]
    for total in totals:
        yield _resized(total / len(runs), size)


def _resized(probabilities: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(probabilities.shape[-2:]) == size:
        return probabilities
    return F.interpolate(probabilities, size=size, mode="bilinear", align_corners=False)


def predict_probabilities(model, pixels: torch.Tensor, protocol: EvalProtocol, pad_fill: torch.Tensor | float = 0.0,
                          batch_size: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """`image_probabilities` of all N images as one ``[N, C, *size]`` tensor."""
    return torch.cat(list(image_probabilities(model, pixels, protocol, pad_fill, batch_size, size)))


__all__ = ["EvalProtocol", "image_probabilities", "predict_probabilities", "protocol_from_record",
           "protocol_transform", "resize_image", "short_side_size", "window_boxes"]

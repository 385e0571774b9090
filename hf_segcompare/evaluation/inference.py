"""Run a trained model on images: the image processor saved with every model, and `segment`.

`SegImageProcessor` does what evaluation does to an image: normalise it with the mean/std its
weights were trained with and pad it (bottom/right) to its height and width rounded up to a
multiple of 32 (a batch: to its largest), never resizing, so the aspect ratio is kept; its
`post_process_semantic_segmentation` upsamples the logits to the padded size and crops the padding
away. For a model evaluated under mmsegmentation's protocol it does what that protocol does instead
(resize to the short side with OpenCV, normalise on 0-255 values, pad with 0 only to the model's own
multiple, bring the logits back to the image's size before the argmax). It is saved in every output
folder and registered with `AutoImageProcessor` (by `register_auto_classes`, which importing this
module calls), so ``pipeline("image-segmentation", model=folder)`` and `segment` give the same class
for every pixel.

No transformers image processor pads to a multiple and crops in post-processing (SegFormer's
resizes to a fixed square, which distorts a 500x375 image), hence this small class.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from transformers import AutoImageProcessor
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ..data.images import to_rgb
from ..data.transforms import SIZE_MULTIPLE, batch_shape, black_fill, pad_batch, to_float_and_normalize
from ..models import register_auto_classes as register_model_classes
from ..models.registry import IMAGENET, input_minimum, input_multiple, model_normalization
from ..models.smp import SmpSegConfig
from ..models.vit import ViTSegConfig
from .protocol import normalize_pixels, resize_image, short_side_size


class SegImageProcessor(BaseImageProcessor):
    """Normalise with the weights' mean/std and pad height and width to multiples of
    `size_divisor`; undo the padding on the way out.

    Args:
        image_mean, image_std: the normalisation of the model's weights (RGB, 0-1 pixel values).
        size_divisor: each padded side is the smallest multiple of this that holds the batch's
            largest image on that side (32 suits every architecture here).
        short_side: for a model evaluated under mmsegmentation's protocol (`--protocol mmseg`):
            each image is first resized to this short side, ratio kept (`resize_image`, OpenCV's
            bilinear), normalised as mmsegmentation normalises, padded with 0 after normalisation
            only to `size_divisor` (the model's own multiple, 1 for none), and the logits are brought
            back to the image's own size before the argmax, as that evaluation did; None (the native
            protocol): never resized, padded with black to multiples of 32.
        min_size: the smallest side the model runs on (`input_minimum`); a smaller batch is padded
            up to it with 0 after normalisation (mmsegmentation's protocol only: the native padding to
            multiples of 32 already reaches it).
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_mean: Sequence[float] = IMAGENET.mean, image_std: Sequence[float] = IMAGENET.std,
                 size_divisor: int = SIZE_MULTIPLE, short_side: int | None = None, min_size: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.min_size = min_size
        self.image_mean = [float(value) for value in image_mean]
        self.image_std = [float(value) for value in image_std]
        self.size_divisor = size_divisor
        self.short_side = short_side

    @classmethod
    def for_model(cls, model, short_side: int | None = None) -> "SegImageProcessor":
        """The processor of `model`: its weights' normalisation (`model_normalization`), and the
        short side its evaluation resized images to, if it did (then the padding is the model's own
        multiple, `input_multiple`, as mmsegmentation's)."""
        normalization = model_normalization(model)
        return cls(image_mean=normalization.mean, image_std=normalization.std, short_side=short_side,
                   size_divisor=input_multiple(model) if short_side else SIZE_MULTIPLE,
                   min_size=input_minimum(model) if short_side else 1)

    def run_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size is run at: its own, or resized to `short_side`."""
        return short_side_size(height, width, self.short_side) if self.short_side else (height, width)

    def padded_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The (height, width) a batch of images of these (height, width) sizes is padded to."""
        return batch_shape(sizes, self.size_divisor, self.min_size)

    def padding_fill(self) -> torch.Tensor:
        """What padding takes, one value per channel, as the evaluation padded: black in the weights'
        normalisation (native), or 0 after normalisation, the mean colour (mmsegmentation's protocol)."""
        return torch.zeros(3) if self.short_side else black_fill(self.image_mean, self.image_std)

    def _normalized_tensors(self, images) -> list[torch.Tensor]:
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        tensors = [
            image if isinstance(image, torch.Tensor) else F.pil_to_tensor(to_rgb(image)) for image in images
        ]
        if self.short_side:  # as the evaluation resized and normalised them
            return [normalize_pixels(resize_image(tensor, self.run_size(*tensor.shape[-2:])), self.image_mean,
                                     self.image_std) for tensor in tensors]
        normalize = v2.Compose(to_float_and_normalize(self.image_mean, self.image_std))
        return [normalize(tv_tensors.Image(tensor)).as_subclass(torch.Tensor) for tensor in tensors]

    def normalized(self, image) -> torch.Tensor:
        """``[1, 3, h, w]``: one image (PIL or uint8 tensor) as the model runs it, resized if the
        evaluation resized and normalised, not padded (what the exported ONNX graph takes)."""
        return self._normalized_tensors(image)[0][None]

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """``pixel_values`` [B, 3, H, W]: each image normalised and padded bottom/right (`padding_fill`, as
        in evaluation) to the batch's largest height and width, rounded up to `size_divisor`."""
        pixel_values = pad_batch(self._normalized_tensors(images), self.padding_fill(), self.size_divisor,
                                 self.min_size)
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def post_process_semantic_segmentation(self, outputs, target_sizes: Sequence[tuple[int, int]] | None = None):
        """Class ids per pixel, one [H, W] tensor per image.

        With `target_sizes` (each image's (height, width), as the pipeline passes them) the logits
        are upsampled to the padded size and cropped to the image; without, the argmax of the
        logits at their own resolution.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        if target_sizes is None:
            return list(logits.argmax(dim=1))
        run_sizes = [self.run_size(*size) for size in target_sizes]
        logits = torch.nn.functional.interpolate(logits, size=self.padded_size(run_sizes), mode="bilinear",
                                                 align_corners=False)
        if not self.short_side:
            return [logits[index].argmax(dim=0)[:height, :width] for index, (height, width) in enumerate(target_sizes)]
        # Resized on the way in: the logits go back to the image's size before the argmax, as evaluation
        # scored them (mmsegmentation's postprocess_result).
        return [torch.nn.functional.interpolate(logits[index: index + 1, :, :run_height, :run_width].float(),
                                                size=tuple(size), mode="bilinear", align_corners=False)[0].argmax(dim=0)
                for index, ((run_height, run_width), size) in enumerate(zip(run_sizes, target_sizes))]


def register_auto_classes() -> None:
    """Register every adapter (U-Net / DeepLabV3+, ViT) and `SegImageProcessor` with transformers'
    Auto classes, so ``AutoModelForSemanticSegmentation.from_pretrained(folder)`` and
    ``pipeline("image-segmentation", model=folder)`` load a saved model. Idempotent."""
    register_model_classes()
    # The pipeline finds the class by the name in preprocessor_config.json among registered
    # processors; one registration (any config) makes it findable for every model, SegFormer's
    # included. It works on torchvision tensors: registered as the torchvision backend.
    for config_class in (SmpSegConfig, ViTSegConfig):
        AutoImageProcessor.register(config_class, image_processor_classes={"torchvision": SegImageProcessor},
                                    exist_ok=True)


register_auto_classes()


class _RegisteredModelsAreSupported(logging.Filter):
    """The image-segmentation pipeline checks the model class against transformers' static tables,
    which registered classes never enter, and logs an error although they work; drop that line
    for our classes only."""

    NAMES = ("SmpForSemanticSegmentation", "ViTSegForSemanticSegmentation")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "is not supported for image-segmentation" in message and any(name in message for name in self.NAMES)
        )


logging.getLogger("transformers.pipelines.base").addFilter(_RegisteredModelsAreSupported())


def load_image_processor(name_or_path: str, model) -> SegImageProcessor:
    """The processor saved with a model (folder or Hub id); for a folder without one, `model`'s own."""
    try:
        return SegImageProcessor.from_pretrained(name_or_path)
    except OSError:
        return SegImageProcessor.for_model(model)


@torch.no_grad()
def segment(model, image: Image.Image, processor: SegImageProcessor | None = None) -> np.ndarray:
    """Class id per pixel (H x W, uint8) of `image`, at its own resolution.

    `processor` defaults to the one for `model`'s weights (`SegImageProcessor.for_model`); the
    image is normalised and padded as in evaluation, never resized.
    """
    image = to_rgb(image)
    processor = processor or SegImageProcessor.for_model(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outputs = model(pixel_values=processor(image)["pixel_values"].to(device))
    finally:
        model.train(was_training)
    labels = processor.post_process_semantic_segmentation(outputs, target_sizes=[(image.height, image.width)])[0]
    return labels.to(torch.uint8).cpu().numpy()


__all__ = ["SegImageProcessor", "load_image_processor", "register_auto_classes", "segment"]

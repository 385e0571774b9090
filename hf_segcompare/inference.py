"""Run a trained model on an image: the class id of every pixel."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, size_to_fit


def build_image_processor(size: int):
    """The image processor saved with every model, so ``pipeline("image-segmentation", model=folder)``
    works for all four: resize to `size` (a multiple of 32, which every architecture accepts),
    ImageNet normalisation as in training; logits are resized back to the image by the pipeline.
    `segment` instead pads without resizing, as the evaluation does."""
    from transformers import SegformerImageProcessor

    return SegformerImageProcessor(
        do_resize=True, size={"height": size, "width": size}, image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD), do_reduce_labels=False,
    )


@torch.no_grad()
def segment(model, image: Image.Image) -> np.ndarray:
    """Class id per pixel (H x W, uint8) of `image`, at its own resolution.

    The image is normalised and padded exactly as in evaluation (to the next multiple of 32, so
    every architecture accepts it); the logits are upsampled to the padded size and cropped back.
    """
    image = image.convert("RGB")
    padded = size_to_fit(max(image.size))
    pixel_values = eval_transforms(padded)(tv_tensors.Image(F.pil_to_tensor(image)))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = model(pixel_values=pixel_values[None].to(device)).logits
    model.train(was_training)
    logits = torch.nn.functional.interpolate(logits, size=(padded, padded), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0, : image.height, : image.width].to(torch.uint8).cpu().numpy()

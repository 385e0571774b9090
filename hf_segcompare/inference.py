"""Run a trained model on an image: the class id of every pixel."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .data.transforms import eval_transforms, size_to_fit


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

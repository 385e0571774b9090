"""Evaluation protocols: sliding windows, multi-scale and flip test-time augmentation, and the
short-side test resize, checked against direct computations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hf_segcompare.errors import UsageError
from hf_segcompare.evaluation import EvalProtocol, predict_probabilities, short_side_size
from hf_segcompare.models import create_model

WHOLE = EvalProtocol()


class Pointwise(torch.nn.Module):
    """A 1×1 convolution: each pixel's logits depend on that pixel only, so windows, mirroring and
    padding cannot change them."""

    def __init__(self, num_labels=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, num_labels, 1)

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.conv(pixel_values))


class LeftToRight(Pointwise):
    """Pointwise plus a ramp across the width: a mirrored image gives other logits."""

    def forward(self, pixel_values):
        ramp = torch.linspace(-3, 3, pixel_values.shape[-1]).reshape(1, 1, 1, -1)
        return SimpleNamespace(logits=self.conv(pixel_values) + ramp * torch.arange(5.0).reshape(1, -1, 1, 1))


def _image(height, width, seed=0):
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def segformer():
    torch.manual_seed(1)
    return create_model("segformer-tiny").eval()


def test_slide_and_whole_agree_where_the_image_fits_the_window(segformer):
    image = _image(50, 70)
    whole = predict_probabilities(segformer, image, WHOLE)
    slide = predict_probabilities(segformer, image, EvalProtocol(mode="slide", crop=96, stride=64))
    assert slide.shape == whole.shape == (1, 21, 50, 70)
    assert torch.equal(slide, whole)


def test_slide_windows_cover_every_pixel_once_averaged():
    """With windows smaller than the image (overlapping, the last ones flush with the edges), a
    pointwise model's probabilities are the whole image's."""
    image = _image(100, 130)
    model = Pointwise()
    whole = predict_probabilities(model, image, WHOLE)
    slide = predict_probabilities(model, image, EvalProtocol(mode="slide", crop=64, stride=40))
    assert torch.allclose(slide, whole, atol=1e-6)


def test_flip_of_a_mirror_symmetric_model_is_a_no_op_and_otherwise_averages_the_mirrored_prediction():
    image = _image(40, 56)
    flipped = EvalProtocol(flip=True)
    symmetric = Pointwise()
    assert torch.allclose(predict_probabilities(symmetric, image, flipped),
                          predict_probabilities(symmetric, image, WHOLE), atol=1e-6)
    # A symmetric input through any model: the averaged prediction is itself symmetric.
    mirror_image = torch.cat([image, image.flip(-1)], dim=-1)
    asymmetric = LeftToRight()
    result = predict_probabilities(asymmetric, mirror_image, flipped)
    assert torch.allclose(result, result.flip(-1), atol=1e-6)
    # And it is the mean of the plain prediction and the un-mirrored prediction of the mirror
    # image (at a size the padding to multiples of 32 leaves alone).
    image = _image(32, 64)
    plain = asymmetric(image).logits.softmax(1)
    mirrored = asymmetric(image.flip(-1)).logits.softmax(1).flip(-1)
    assert torch.allclose(predict_probabilities(asymmetric, image, flipped), (plain + mirrored) / 2, atol=1e-6)


def test_scales_average_probabilities_at_the_native_resolution(segformer):
    image = _image(48, 80)
    result = predict_probabilities(segformer, image, EvalProtocol(scales=(0.5, 1.0, 1.5)))
    assert result.shape == (1, 21, 48, 80)
    expected = 0
    for size in ((24, 40), (48, 80), (72, 120)):
        scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        padded = torch.zeros(1, 3, -(-size[0] // 32) * 32, -(-size[1] // 32) * 32)
        padded[..., : size[0], : size[1]] = scaled
        with torch.no_grad():
            logits = F.interpolate(segformer(pixel_values=padded).logits, size=padded.shape[-2:], mode="bilinear",
                                   align_corners=False)[..., : size[0], : size[1]]
        expected = expected + F.interpolate(logits.softmax(1), size=(48, 80), mode="bilinear", align_corners=False)
    assert torch.allclose(result, expected / 3, atol=1e-5)
    assert torch.allclose(result.sum(1), torch.ones(1, 48, 80), atol=1e-5)  # still probabilities


def test_the_short_side_resize_is_mmsegmentations():
    assert short_side_size(375, 500, 512) == (512, 683)  # the example: 500×375 runs at 683×512
    assert short_side_size(500, 333, 512) == (769, 512)
    assert short_side_size(100, 1000, 512) == (205, 2048)  # the long side is held at 2048


def test_protocol_names_and_refusals():
    assert EvalProtocol().plain and EvalProtocol().name() == "single-scale"
    assert EvalProtocol(scales=(0.5, 1.0, 1.5), flip=True).name() == "multi-scale (0.5, 1, 1.5) + flip"
    assert not EvalProtocol(resize="short_side").plain and not EvalProtocol(resize="short_side").augmented
    with pytest.raises(UsageError, match="--eval_crop 500"):
        EvalProtocol(mode="slide", crop=500, stride=300)
    with pytest.raises(UsageError, match="--eval_stride 600"):
        EvalProtocol(mode="slide", crop=512, stride=600)
    with pytest.raises(UsageError, match="--eval_scales"):
        EvalProtocol(scales=(0.0,))

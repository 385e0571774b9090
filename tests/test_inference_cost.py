"""FLOPs per image and inference speed, as every training run records them."""

from __future__ import annotations

import pytest
import torch

from hf_segcompare.evaluation.cost import flops_per_image, inference_speed
from hf_segcompare.models import create_model

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


class OneByOne(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 21, kernel_size=1)

    def forward(self, pixel_values):
        return self.conv(pixel_values)


def test_a_multiply_add_counts_two_flops():
    assert flops_per_image(OneByOne(), 8, 10) == 2 * 3 * 21 * 8 * 10


@pytest.mark.parametrize("name", ["unet-tiny", "segformer-tiny"])
def test_flops_are_counted_at_the_size_asked(name):
    """Convolutions and SegFormer's reduced attention cost in proportion to the pixels: doubling the side
    gives four times the FLOPs, so the figure is the one at the eval size."""
    model = create_model(name)
    assert flops_per_image(model, 128, 128) == 4 * flops_per_image(model, 64, 64)
    assert model.training  # measuring puts the model back as it was


def test_speed_is_measured_after_warm_up_at_both_batch_sizes():
    model = create_model("segformer-tiny")
    speed = inference_speed(model, 64, 64, batch_size=4, warmup=1, repeats=3)
    assert speed["batch_size"] == 4 and speed["repeats"] == 3 and speed["warmup"] == 1
    assert speed["latency_ms_batch_1"] > 0 and speed["throughput_images_per_s"] > 0

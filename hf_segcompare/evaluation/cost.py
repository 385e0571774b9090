"""What a trained model costs to run: FLOPs per image, latency at batch 1, throughput at a batch.

Measured by every training run on the device it trained on, into results.json (``inference``),
the card and the comparison page, because "lighter" is a claim about exactly these numbers.

- FLOPs as `torch.utils.flop_counter` counts them, for one ``eval_size`` x ``eval_size`` image: a
  multiply-add is 2 FLOPs. Papers that print "GFLOPs" from mmcv or fvcore (the SegFormer paper's
  table among them) count a multiply-add as 1: halve ours to compare.
- Latency: the median wall time of one forward pass at batch 1; throughput: images per second of
  the median forward pass at the evaluation batch. Warm-up passes are excluded, the GPU is
  synchronised around each timed pass, and the model runs in eval mode without gradients, under
  the autocast the run trained with.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def flops_per_image(model: torch.nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on one ``height`` x ``width`` image (a multiply-add counts 2)."""
    with _evaluating(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=_blank_images(model, 1, height, width))
    return int(counter.get_total_flops())


def _blank_images(model: torch.nn.Module, count: int, height: int, width: int) -> torch.Tensor:
    """Zero images on the model's device, in its weights' dtype."""
    parameter = next(model.parameters())
    return torch.zeros(count, 3, height, width, device=parameter.device, dtype=parameter.dtype)


def _timed_passes(model, pixels: torch.Tensor, warmup: int, repeats: int, autocast) -> list[float]:
    synchronise = torch.cuda.synchronize if pixels.device.type == "cuda" else (lambda: None)
    seconds = []
    with _evaluating(model), torch.no_grad(), autocast():
        for index in range(warmup + repeats):
            synchronise()
            started = time.perf_counter()
            model(pixel_values=pixels)
            synchronise()
            if index >= warmup:
                seconds.append(time.perf_counter() - started)
    return seconds


def inference_speed(model: torch.nn.Module, height: int, width: int, batch_size: int, warmup: int = 2,
                    repeats: int = 5, autocast=contextlib.nullcontext) -> dict[str, Any]:
    """Latency at batch 1 and throughput at `batch_size` on the model's device (medians of `repeats`)."""
    latency = statistics.median(_timed_passes(model, _blank_images(model, 1, height, width), warmup, repeats,
                                              autocast))
    per_batch = statistics.median(_timed_passes(model, _blank_images(model, batch_size, height, width), warmup,
                                                repeats, autocast))
    return {"latency_ms_batch_1": latency * 1000, "throughput_images_per_s": batch_size / per_batch,
            "batch_size": batch_size, "warmup": warmup, "repeats": repeats}


def measure_inference(model: torch.nn.Module, eval_size: int, batch_size: int, device_name: str,
                      autocast=contextlib.nullcontext) -> dict[str, Any]:
    """results.json's ``inference`` block: FLOPs per image, latency and throughput at `eval_size`."""
    return {
        "input_size": [eval_size, eval_size],
        "flops_per_image": flops_per_image(model, eval_size, eval_size),
        **inference_speed(model, eval_size, eval_size, batch_size, autocast=autocast),
        "device": device_name,
    }


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


__all__ = ["flops_per_image", "inference_speed", "measure_inference"]

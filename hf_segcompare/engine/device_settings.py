"""What a run turns on for the device it runs on, where the user chose nothing.

On a CUDA GPU: bf16 autocast where the GPU supports it (fp16 with loss scaling otherwise), TF32
matmul and convolutions on Ampere and newer, ``channels_last`` memory format for the CNNs, and
data-loader workers from the cores each process has (pinned memory, torch's two batches prefetched
per worker), so the GPU is not kept waiting for decoded, augmented images. Workers are started
anew each epoch unless ``--dataloader_persistent_workers``: keeping them skips the global random
draw a new data-loader iterator makes, which shifts the shuffling (and dropout) of later epochs (a
run with them ends with other weights though every sample's augmentation is the same), so
a resumed run is only guaranteed to repeat an uninterrupted one without them.

On a CPU none of it: fp32, the usual memory format, and the images prepared in the main process.
The run is then exact and repeatable, and the cores compute the model (``bench/bench_train.py``
measures preparing a batch against a training step).

Each switch is a `SegTrainingArguments` field whose default None means "choose"; a value the user
gives is kept. What a run used goes into results.json (``speed``) and the card.
"""

from __future__ import annotations

import os
from typing import Any

import torch

MAX_WORKERS = 8  # per training process: each worker holds its own prefetched batches


def cores_per_process(environ=None) -> int:
    """The cores this process may run on, shared among the processes on its machine."""
    environ = os.environ if environ is None else environ
    return max(1, len(os.sched_getaffinity(0)) // int(environ.get("LOCAL_WORLD_SIZE", "1")))


def device_defaults(cuda: bool, bf16_supported: bool = False, tf32_supported: bool = False,
                    cores: int = 1) -> dict[str, Any]:
    """The `TrainingArguments` values to use where the user gave none.

    Args:
        cuda: the run trains on a CUDA GPU.
        bf16_supported, tf32_supported: that GPU can (`torch.cuda.is_bf16_supported`, compute
            capability 8.0 or later).
        cores: the CPU cores of this process (`cores_per_process`): one stays with the main process.
    """
    if not cuda:
        return {"bf16": False, "fp16": False, "tf32": None, "dataloader_num_workers": 0}
    return {"bf16": bf16_supported, "fp16": not bf16_supported, "tf32": True if tf32_supported else None,
            "dataloader_num_workers": min(MAX_WORKERS, max(1, cores - 1))}


def resolve_device_defaults(args) -> None:
    """Fill each of `args`' device switches that is None (unset) with `device_defaults` for the
    device the arguments will train on; called before `TrainingArguments.__post_init__`."""
    cuda = torch.cuda.is_available() and not args.use_cpu
    if not cuda and not args.use_cpu and (args.bf16 or args.fp16):
        from ..errors import UsageError

        raise UsageError(f"--{'bf16' if args.bf16 else 'fp16'} without a CUDA GPU: add --use_cpu to train in it on the "
                         "CPU (not exact there), or leave it unset.")
    defaults = device_defaults(
        cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        tf32_supported=cuda and torch.cuda.get_device_capability()[0] >= 8,
        cores=cores_per_process(),
    )
    chosen_precision = args.bf16 or args.fp16
    for name, value in defaults.items():
        if name in ("bf16", "fp16") and chosen_precision:
            value = False  # the user picked the other one
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def uses_channels_last(requested: bool | None, args, model) -> bool:
    """`requested` (``--channels_last``) when given; None: on for a CNN trained on a CUDA GPU."""
    if requested is not None:
        return bool(requested)
    from ..models import get_entry

    name = getattr(model.config, "segcompare_model", None)
    try:
        family = get_entry(name).family if name else None
    except ValueError:  # a model registered in another process, or none of ours
        family = None
    return args.device.type == "cuda" and family == "cnn"


def speed_record(args, channels_last: bool) -> dict[str, Any]:
    """What results.json records of the switches a run trained with."""
    return {
        "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "tf32": bool(args.tf32),
        "channels_last": channels_last,
        "torch_compile": bool(args.torch_compile),
        "dataloader_num_workers": args.dataloader_num_workers,
        "dataloader_persistent_workers": bool(args.dataloader_persistent_workers and args.dataloader_num_workers),
        "dataloader_pin_memory": bool(args.dataloader_pin_memory and args.device.type == "cuda"),
    }


__all__ = ["cores_per_process", "device_defaults", "resolve_device_defaults", "speed_record", "uses_channels_last"]

"""SyncBatchNorm: BatchNorm statistics over the whole global batch when several GPU processes train.

The published recipes split a global batch of 16 over the processes, so on 4 GPUs each BatchNorm
would see 4 images; mmsegmentation trains with SyncBN (its ``norm_cfg=dict(type='SyncBN')``), and
so does this toolkit by default when more than one process trains on CUDA GPUs. On CPU processes
torch's `SyncBatchNorm` does not run (it needs a GPU), so there each process keeps its own
statistics, and the record says so.

`torch.nn.SyncBatchNorm.convert_sync_batchnorm` swaps each BatchNorm layer in place, keeping its
attribute name, weights and buffers: the state dict, the checkpoints and the saved model keep the
ordinary BatchNorm names, so a converted run resumes exactly and its model loads anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from ..errors import UsageError


@dataclass(frozen=True)
class SyncBatchNormChoice:
    """Whether a run synchronises BatchNorm, why, and over how many layers (for the record)."""

    enabled: bool
    reason: str
    layers: int = 0

    def record(self) -> dict:
        return asdict(self)


def batchnorm_layers(model: nn.Module) -> int:
    """How many BatchNorm layers `model` has (already synchronised ones included)."""
    return sum(isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in model.modules())


def resolve_sync_batchnorm(requested: bool | None, model: nn.Module, world_size: int,
                           device_type: str) -> SyncBatchNormChoice:
    """``--sync_bn`` decided: as asked, else on when the model has BatchNorm and more than one
    process trains on CUDA GPUs (mmsegmentation's setting for the published recipes).

    Raises:
        UsageError: ``--sync_bn`` asked for on CPU processes, where torch cannot synchronise.
    """
    check_sync_batchnorm_device(requested, device_type)
    layers = batchnorm_layers(model)
    if not layers:
        return SyncBatchNormChoice(False, "the model has no BatchNorm layer")
    if requested is False:
        return SyncBatchNormChoice(False, "off, as asked (--sync_bn false): each process keeps its own "
                                          "BatchNorm statistics", layers)
    if world_size == 1:
        return SyncBatchNormChoice(False, "one process, so BatchNorm already sees the whole batch", layers)
    if device_type != "cuda":
        return SyncBatchNormChoice(False, f"off: torch's SyncBatchNorm runs on GPUs only; each of the {world_size} "
                                          "CPU processes keeps its own BatchNorm statistics", layers)
    reason = "as asked (--sync_bn)" if requested else \
        f"on by default: {world_size} GPU processes share every BatchNorm's statistics, as mmsegmentation's SyncBN"
    return SyncBatchNormChoice(True, reason, layers)


def check_sync_batchnorm_device(requested: bool | None, device_type: str) -> None:
    """Raise `UsageError` for ``--sync_bn`` asked for where torch cannot synchronise (not CUDA)."""
    if requested and device_type != "cuda":
        raise UsageError("--sync_bn: torch's SyncBatchNorm runs on CUDA GPUs only, and this run trains on "
                         f"{device_type.upper()} processes: drop --sync_bn (each process then keeps its own "
                         "BatchNorm statistics, as the record says).")


def convert_to_sync_batchnorm(model: nn.Module) -> nn.Module:
    """`model` with every BatchNorm layer a `SyncBatchNorm` (same names, weights and buffers)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)

"""Pretrained starting points: load an encoder's weights into a freshly built model.

The model is built first (random decoder and head for the 21 VOC classes), then only its encoder
is overwritten, after construction, as DESIGN.md asks: `from_pretrained` builds on the meta
device and must never trigger downloads.

=================  ===========================================  =============================================
model              default ``--pretrained``                     also accepted
=================  ===========================================  =============================================
unet               ``imagenet`` (smp's ResNet-50 weights)       a ``.safetensors``/``.pth`` encoder state dict
deeplabv3plus      ``imagenet``                                 the same
vit                ``google/vit-base-patch16-224-in21k``        any `ViTModel` folder or Hub id
segformer-b0       ``nvidia/mit-b0``                            any `SegformerModel` / SegFormer folder or id
=================  ===========================================  =============================================

Where the Hub cannot be reached the load fails within seconds, naming the model, what was looked
for, and the two ways out (a local path, or ``--from_scratch``).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PRETRAINED = {
    "unet": "imagenet",
    "deeplabv3plus": "imagenet",
    "vit": "google/vit-base-patch16-224-in21k",
    "segformer-b0": "nvidia/mit-b0",
}


class PretrainedUnavailable(RuntimeError):
    """The starting point cannot be had; the message says what to pass instead."""


def _unavailable(model_name: str, source: str, reason: str) -> PretrainedUnavailable:
    return PretrainedUnavailable(
        f"--model {model_name}: cannot load the pretrained starting point {source!r} ({reason}). "
        f"Pass --pretrained with a local path (for this model: {_local_hint(model_name)}), "
        "or --from_scratch to start from random weights."
    )


def _local_hint(model_name: str) -> str:
    base = model_name.removesuffix("-tiny")
    if base in ("unet", "deeplabv3plus"):
        return "an encoder state dict file, .safetensors or .pth"
    if base == "vit":
        return "a folder saved by ViTModel.save_pretrained"
    return "a folder saved by SegformerModel or SegformerForSemanticSegmentation.save_pretrained"


def _require_hub(model_name: str, source: str) -> None:
    """Fail fast, naming the ways out, when a non-local source needs a Hub that is not there."""
    from ..hub import hub_offline_mode, hub_unreachable_reason

    if hub_offline_mode():
        raise _unavailable(model_name, source, "HF_HUB_OFFLINE is set and it is not a local path")
    reason = hub_unreachable_reason()
    if reason:
        raise _unavailable(model_name, source, reason)


def _unreadable(model_name: str, path: Path, error: Exception) -> PretrainedUnavailable:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return _unavailable(model_name, str(path), f"the file cannot be read as {path.suffix or 'a state dict'}: {reason}")


def _load_state_dict(path: Path, model_name: str) -> dict:
    """The tensors of a ``.safetensors`` or ``.pth`` file, or `PretrainedUnavailable` naming the file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as error:  # safetensors, pickle and zip each raise their own kinds for a bad file
        raise _unreadable(model_name, path, error) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise _unavailable(model_name, str(path), "the file holds no state dict (a mapping of names to tensors)")
    return state


def check_pretrained_source(model_name: str, source: str) -> None:
    """Fail before any data loads when `source` is a local weights file that cannot be read.

    Raises:
        PretrainedUnavailable: naming the file and what to pass instead.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        return
    if path.suffix != ".safetensors":  # a pickle has no header to check: load it
        _load_state_dict(path, model_name)
        return
    from safetensors import safe_open

    try:  # the header names every tensor: reading it checks the file without loading the weights
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as error:
        raise _unreadable(model_name, path, error) from None


def _load_smp_encoder(model, model_name: str, source: str) -> None:
    path = Path(source).expanduser()
    if path.is_file():
        state = _load_state_dict(path, model_name)
    else:
        from segmentation_models_pytorch.encoders import encoders

        settings = encoders[model.config.encoder_name]["pretrained_settings"]
        if source not in settings:
            raise _unavailable(model_name, source, f"not a file, and smp knows {sorted(settings)} for "
                                                   f"{model.config.encoder_name}")
        _require_hub(model_name, source)
        from huggingface_hub import hf_hub_download

        weights = hf_hub_download(settings[source]["repo_id"], "model.safetensors", revision=settings[source]["revision"])
        state = _load_state_dict(Path(weights), model_name)
    # torchvision checkpoints carry the classifier (fc.*), which smp encoders drop.
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    # torch's own load_state_dict: smp's and transformers' overrides return nothing to check.
    import torch

    missing, unexpected = torch.nn.Module.load_state_dict(model.smp.encoder, state, strict=False)
    if missing or unexpected:
        raise _unavailable(model_name, source, f"not a {model.config.encoder_name} encoder state dict "
                                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def _load_hf_encoder(model, model_name: str, source: str, encoder_class, target) -> None:
    if not Path(source).expanduser().exists():
        _require_hub(model_name, source)
    try:
        encoder = encoder_class.from_pretrained(source, **({"add_pooling_layer": False}
                                                           if encoder_class.__name__ == "ViTModel" else {}))
    except OSError as error:
        raise _unavailable(model_name, source, str(error).splitlines()[0]) from None
    import torch

    missing, _ = torch.nn.Module.load_state_dict(target, encoder.state_dict(), strict=False)
    if missing:
        raise _unavailable(model_name, source, f"its weights do not fit this encoder (missing {missing[:3]})")


def load_pretrained_encoder(model, model_name: str, source: str) -> None:
    """Overwrite `model`'s encoder with the weights `source` names; decoder and head stay fresh.

    Raises:
        PretrainedUnavailable: the weights cannot be had or do not fit; the message says what to pass.
    """
    from transformers import SegformerModel, ViTModel

    from .smp import SmpForSemanticSegmentation
    from .vit import ViTSegForSemanticSegmentation

    if isinstance(model, SmpForSemanticSegmentation):
        _load_smp_encoder(model, model_name, source)
    elif isinstance(model, ViTSegForSemanticSegmentation):
        _load_hf_encoder(model, model_name, source, ViTModel, model.vit)
    else:
        _load_hf_encoder(model, model_name, source, SegformerModel, model.segformer)
    model.config.pretrained_from = source  # saved in config.json: where the encoder came from

"""Pretrained starting points: what the adapters' encoder loaders share.

The model is built first (random decoder and head for the data's classes), then only its encoder
is overwritten, after construction: `from_pretrained` builds on the meta device and must never
trigger downloads. Each registry entry names its loader (`ModelEntry.load_pretrained`); the
loaders return the source's own input normalisation when the source states it.

Where the Hub cannot be reached a load fails within seconds, naming the model, what was looked
for, and the two ways out (a local source, or random weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import PretrainedUnavailable, UsageError
from ..hub_access import hub_problem, repo_id_problem
from .registry import Normalization, get_entry

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def unavailable(model, source: str, reason: str) -> PretrainedUnavailable:
    """The error for a starting point that cannot be had or does not fit `model`."""
    return unavailable_for(getattr(model.config, "segcompare_model", model.config.model_type), source, reason)


def unavailable_for(model_name: str, source: str, reason: str) -> PretrainedUnavailable:
    try:
        hint = get_entry(model_name).pretrained_hint
    except UsageError:
        hint = "a local copy of the weights"
    return PretrainedUnavailable(model_name, source, reason, hint)


def require_hub_for(model, source: str) -> None:
    """Fail within seconds when `source` needs the Hub and it cannot be reached."""
    reason = hub_problem()
    if reason:
        raise unavailable(model, source, f"not a local path, and {reason}")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth`` file (a plain or ``{"state_dict": ...}`` mapping).

    Raises:
        ValueError: the file cannot be read as such, with the reader's reason.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as error:  # safetensors, pickle and zip each raise their own kinds for a bad file
        # torch's own message advises weights_only=False, which would run the file's code: not for a
        # file that is no state dict at all, and never here.
        reason = _first_line(error) if path.suffix == ".safetensors" else "not a file of tensors saved by torch.save"
        raise ValueError(f"the file cannot be read as {path.suffix or 'a state dict'}: {reason}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError("the file holds no state dict (a mapping of names to tensors)")
    return state


def check_pretrained_source(model_name: str, source: str) -> None:
    """Fail before any data loads when `source` is a local weights file that cannot be read.

    Raises:
        PretrainedUnavailable: naming the file.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        return
    try:
        if path.suffix != ".safetensors":  # a pickle has no header to check: load it
            read_state_dict(path)
            return
        from safetensors import safe_open

        try:  # the header names every tensor: reading it checks the file without loading the weights
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except Exception as error:
            raise ValueError(f"the file cannot be read as .safetensors: {_first_line(error)}") from None
    except ValueError as error:
        raise unavailable_for(model_name, source, str(error)) from None


def load_into(model, part: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Copy `state` into `part` of `model`; every weight of `part` must be found, none left over.

    torch's own `load_state_dict` is called: smp's and transformers' overrides return nothing to check.
    """
    missing, unexpected = torch.nn.Module.load_state_dict(part, state, strict=False)
    if missing or unexpected:
        raise unavailable(
            model, source, f"not {what} (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )


def source_normalization(source: str) -> Normalization | None:
    """The mean/std a folder or Hub repo's ``preprocessor_config.json`` states; None when it has none."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        config = folder / PREPROCESSOR_CONFIG
        return Normalization.from_mapping(json.loads(config.read_text())) if config.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(source, PREPROCESSOR_CONFIG)
    except Exception:  # no such file in the repo (or not fetchable): the registry's values stand
        return None
    return Normalization.from_mapping(json.loads(Path(path).read_text()))


def load_hf_encoder(model, source: str, encoder_class, part: torch.nn.Module, **encoder_kwargs) -> Normalization | None:
    """Load a transformers encoder (`encoder_class`, e.g. `ViTModel`) from a folder or Hub id into `part`.

    A full segmentation checkpoint works too: `from_pretrained` of the bare encoder class keeps
    its encoder and drops the head. Returns the source's normalisation if it states one.
    """
    if not Path(source).expanduser().exists():
        if repo_id_problem(source) is not None:
            raise unavailable(model, source, "no such file or folder, and not a Hub id either")
        require_hub_for(model, source)
    try:
        # Safetensors where the source has them; transformers loads an older .bin with weights_only.
        encoder = encoder_class.from_pretrained(source, **encoder_kwargs)
    except OSError as error:
        raise unavailable(model, source, _first_line(error)) from None
    load_into(model, part, encoder.state_dict(), source, f"a {encoder_class.__name__} checkpoint that fits this model")
    return source_normalization(source)


__all__ = ["PREPROCESSOR_CONFIG", "check_pretrained_source", "load_hf_encoder", "load_into", "read_state_dict",
           "require_hub_for", "source_normalization", "unavailable"]

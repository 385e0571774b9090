"""The model registry: one `ModelEntry` per model holds everything the toolkit knows about it.

An entry says what the model is (family, description), how it is built (config class and model
class, config values), where its weights start (default pretrained source and the adapter function
that loads it), what inputs those weights expect (mean/std), and how it is trained (its recipes).
A ``-tiny`` test variant names its full-size `parent` and shares its recipes. Every other module
asks the registry; none branches on a model's name (timm's ``_registry``/``create_model`` is the
model for this).

Adding a model is one `register_model(ModelEntry(...))` call, plus an adapter module only when the
architecture family is new (a config, a `PreTrainedModel` and an encoder loader).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import PretrainedUnavailable, UsageError, choose
from ..labels import IGNORE_INDEX, VOC_LABELS, label_config


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std (RGB, on 0-1 pixel values) that a set of weights was trained with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_config(self) -> dict[str, list[float]]:
        """The ``image_mean``/``image_std`` fields saved in config.json and the image processor."""
        return {"image_mean": list(self.mean), "image_std": list(self.std)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Normalization | None":
        """From ``image_mean``/``image_std`` (or smp's ``mean``/``std``) when both are there, else None."""
        mean = values.get("image_mean", values.get("mean"))
        std = values.get("image_std", values.get("std"))
        if mean is None or std is None:
            return None
        if isinstance(mean, (int, float)):  # some processors store one value for all channels
            mean, std = [mean] * 3, [std] * 3
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Google's ViT checkpoints (and timm's configs for them) scale pixels to [-1, 1].
HALF = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# Loads a source's encoder weights into a freshly built model; returns the source's own
# normalisation when the source says (a preprocessor config), else None.
PretrainedLoader = Callable[[Any, str], "Normalization | None"]


@dataclass(frozen=True)
class ModelEntry:
    """Everything the toolkit knows about one registered model.

    Args:
        name: the registry name (``--model``), lowercase-hyphenated like a Hub id.
        family: ``"cnn"`` or ``"transformer"``: the two sides of the comparison.
        description: one line for cards and results.json.
        config_class, model_class: the transformers config and `PreTrainedModel` that build it, or
            their names as ``"module:attribute"``, imported when a model is first built (so the
            registry is readable without torch).
        config_kwargs: config values beyond the labels (sizes, encoder name...).
        pretrained: the default pretrained source (a Hub id, an smp weights name); None: none.
        pretrained_hint: what a local pretrained source for this model looks like (for errors).
        load_pretrained: the adapter function that loads a source's encoder weights (or its name).
        normalization: the input mean/std of the default weights (also used from random weights,
            so a model keeps the same inputs whichever way it starts).
        recipes: recipe name -> `hf_segcompare.models.recipes.Recipe`.
        parent: for a test variant, the full-size model it stands in for (recipes come from it).
    """

    name: str
    family: str
    description: str
    config_class: type | str
    model_class: type | str
    config_kwargs: Mapping[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    pretrained_hint: str = "a local copy of the weights"
    load_pretrained: PretrainedLoader | str | None = None
    normalization: Normalization = IMAGENET
    recipes: Mapping[str, Any] = field(default_factory=dict)
    parent: str | None = None

    @property
    def is_test_variant(self) -> bool:
        return self.parent is not None

    def recipe(self, name: str, dataset: str | None = None):
        """The recipe `name` of this model for `dataset`: its own for that release (``"<name>@<dataset>"``)
        where it has one, else the general one (a test variant's come from its parent).

        Raises:
            UsageError: the model has no such recipe; the message lists the ones it has.
        """
        recipes = self.recipes or (get_entry(self.parent).recipes if self.parent else {})
        if dataset and f"{name}@{dataset}" in recipes:
            return recipes[f"{name}@{dataset}"]
        if name not in recipes:
            general = [key for key in recipes if "@" not in key]
            raise UsageError(f"model {self.name} has no recipe {name!r}; it has: {', '.join(general) or 'none'}.")
        return recipes[name]

    def classes(self) -> tuple[type, type, PretrainedLoader | None]:
        """The config class, model class and pretrained loader, imported now if named."""
        return _imported(self.config_class), _imported(self.model_class), _imported(self.load_pretrained)

    def config_field(self, name: str) -> Any:
        """A value this entry sets in the model config (None when unset), looking into smp's arch_kwargs too."""
        if name in self.config_kwargs:
            return self.config_kwargs[name]
        return dict(self.config_kwargs.get("arch_kwargs", {})).get(name)


def _imported(reference):
    """`reference` itself, or the attribute a ``"module:attribute"`` string names."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_REGISTRY: dict[str, ModelEntry] = {}
_BUILT_IN = "hf_segcompare.models.catalog"


def _registry() -> dict[str, ModelEntry]:
    """Every registered entry, the built-in ones first (registered when the registry is first asked)."""
    importlib.import_module(_BUILT_IN)
    return _REGISTRY


def register_model(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add `entry` to the registry; return it. A name taken already is refused unless `replace`."""
    registry = _registry()
    if entry.name in registry and not replace:
        raise ValueError(f"model {entry.name!r} is registered already (pass replace=True to redefine it)")
    if entry.family not in ("cnn", "transformer"):
        raise ValueError(f"model {entry.name!r}: family must be 'cnn' or 'transformer', not {entry.family!r}")
    if entry.parent is not None and entry.parent not in registry:
        raise ValueError(f"model {entry.name!r}: its parent {entry.parent!r} is not registered")
    registry[entry.name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove `name` from the registry (for tests that register a model of their own)."""
    _registry().pop(name, None)


def list_models(include_test_variants: bool = False) -> list[str]:
    """Registered model names; the ``-tiny`` test variants only when asked for."""
    return [name for name, entry in _registry().items() if include_test_variants or not entry.is_test_variant]


def get_entry(name: str) -> ModelEntry:
    """The `ModelEntry` of `name`.

    Raises:
        UsageError: an unknown name; the message lists the registered ones.
    """
    return choose(_registry(), name, "model")  # every registered name, the test variants included


def _labels(num_labels: int | None, id2label: Mapping[int, str] | None) -> dict[int, str]:
    if id2label is not None:
        if num_labels is not None and num_labels != len(id2label):
            raise UsageError(f"num_labels={num_labels} but id2label names {len(id2label)} classes: pass one of them.")
        return {int(key): str(value) for key, value in id2label.items()}
    if num_labels is None or num_labels == VOC_LABELS.num_labels:
        return VOC_LABELS.id2label
    return {index: f"class_{index}" for index in range(num_labels)}


def create_model(
    name: str,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    pretrained: bool | str | None = None,
    ignore_index: int = IGNORE_INDEX,
    **config_overrides,
):
    """Build a registered model, with random weights or a pretrained encoder.

    Args:
        name: one of `list_models(include_test_variants=True)`.
        num_labels, id2label: the classes (default: the 21 Pascal VOC classes; `num_labels` alone
            names them ``class_0``...).
        pretrained: None/False for random weights; True for the model's default source; or a
            source: a Hub id, a local folder, a ``.safetensors``/``.pth`` encoder state dict, or an
            smp weights name (``imagenet``). Only the encoder is loaded; decoder and head start fresh.
        ignore_index: the mask value the loss ignores.
        **config_overrides: config fields to change (e.g. ``decoder_channels=128``).

    The input normalisation of the starting weights (the source's preprocessor config when it has
    one, else the registry's) is saved in the config as ``image_mean``/``image_std``: the
    transforms and the saved image processor read it from there (`model_normalization`).

    Raises:
        UsageError: an unknown name; `PretrainedUnavailable` (a UsageError) for pretrained weights
            that cannot be had or do not fit.
    """
    entry = get_entry(name)
    labels = _labels(num_labels, id2label)
    config_class, model_class, load_pretrained = entry.classes()
    config = config_class(**{**entry.config_kwargs, **config_overrides}, **label_config(labels, ignore_index))
    config.segcompare_model = name  # saved into config.json: a folder says which registered model it holds
    model = model_class(config)
    normalization = entry.normalization
    if pretrained:
        source = entry.pretrained if pretrained is True else str(pretrained)
        if source is None:
            raise PretrainedUnavailable(name, "the default", "the model has no default pretrained weights",
                                        entry.pretrained_hint)
        if load_pretrained is None:
            raise UsageError(f"model {name} cannot load pretrained weights (its entry has no loader).")
        normalization = load_pretrained(model, source) or entry.normalization
        model.config.pretrained_from = source  # saved in config.json: where the encoder came from
    model.config.update(normalization.to_config())
    return model


def model_normalization(model_or_config) -> Normalization:
    """The mean/std a model's inputs are normalised with: from its config, where `create_model`
    records it; ImageNet's for a model saved before that (every model used ImageNet's then)."""
    config = getattr(model_or_config, "config", model_or_config)
    return Normalization.from_mapping(config.to_dict()) or IMAGENET


def input_multiple(model) -> int:
    """What `model`'s input height and width must be multiples of (the adapters' ``input_multiple``; 1, any
    size, for a model without one, as SegFormer, whose overlapping patch embeddings take any size)."""
    return int(getattr(model, "input_multiple", 1))


def input_minimum(model) -> int:
    """The smallest height and width `model` runs on (a smaller image is padded up to it): SegFormer's
    spatial-reduction convolutions need each stage's map at least as large as their kernel (32 px for
    the MiT configurations: stride 4 x ratio 8, 8 x 4, 16 x 2, 32 x 1); else the input multiple."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) == "segformer":
        stride, minimum = 1, 1
        for step, ratio in zip(config.strides, config.sr_ratios):
            stride *= step
            minimum = max(minimum, stride * ratio)
        return minimum
    return input_multiple(model)


def count_parameters(model) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


__all__ = [
    "HALF",
    "IMAGENET",
    "ModelEntry",
    "Normalization",
    "count_parameters",
    "create_model",
    "get_entry",
    "input_minimum",
    "input_multiple",
    "list_models",
    "model_normalization",
    "register_model",
    "unregister_model",
]

"""`SegmentationData`: what every loader returns — the validated splits and everything the run and
its record need to know about them (the label set, where it came from and how masks were decoded,
the samples left out, how a validation split was held out, which columns were read).

Why an object and not attributes on a `DatasetDict`: a `DatasetDict` operation (`map`, `filter`,
a new dict) silently drops attributes stuck on it, and nothing would say which exist. Here they are
fields, and the one way to change the splits (`limited`) keeps them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..labels import LabelSet
from .label_source import ResolvedLabels

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


@dataclass(frozen=True, eq=False)
class SegmentationData(Mapping):
    """The validated ``train`` and ``validation`` splits of one dataset, with their provenance.

    It reads like the `DatasetDict` it holds (``data["train"]``, ``data.keys()``, ``len(data)``),
    so code written against a `DatasetDict` of splits keeps working; ``splits`` is the dict itself.

    Attributes:
        splits: the validated splits (columns ``image``, ``label`` and, where the source has them, ``id``).
        label_info: the `ResolvedLabels` the masks were validated against: the names and their
            source, how mask files were read and decoded, what the masks hold, the checks that fired.
        dropped: the error of each sample ``--drop_invalid`` left out (empty when none was).
        split_info: how the validation split was held out of the training data (None: the source has one).
        columns: the image and label columns read (None: the source is files, not columns).
        source: where the data was read from, as the loader was given it (a folder, a tar or zip, a
            Hub id); the record's ``dataset.path``.
    """

    splits: DatasetDict
    label_info: ResolvedLabels
    source: str = ""
    dropped: tuple[str, ...] = ()
    split_info: dict[str, Any] | None = None
    columns: dict[str, str] | None = None

    @property
    def labels(self) -> LabelSet:
        """The label set the masks were validated against."""
        return self.label_info.labels

    def __getitem__(self, split: str) -> Dataset:
        return self.splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def limited(self, train: int | None = None, validation: int | None = None) -> SegmentationData:
        """The same data with at most `train` / `validation` samples in those splits (the first ones;
        None: all). The provenance is kept: the label evidence still describes the whole validated data."""
        from datasets import DatasetDict

        splits = DatasetDict(self.splits)
        for split, limit in (("train", train), ("validation", validation)):
            if limit is not None:
                splits[split] = splits[split].select(range(min(limit, len(splits[split]))))
        return dataclasses.replace(self, splits=splits)


__all__ = ["SegmentationData"]

"""Evidence that the masks mean what the label set says: counted once, while the data is validated.

Validation proves every mask value is a class id or the ignore value; it cannot prove the ids mean
the classes they are named. A few signs say they do not, each one line of evidence away, so they
are checked on what the validated masks hold (`LabelEvidence`: the pixels of each value, per split)
and reported on the run's first lines and in results.json (`label_checks`):

- ``absent_train`` / ``absent_validation``: a class no training mask holds is never learnt; one no
  validation mask holds has no IoU of its own (NaN, left out of the mean, or 0 where it is predicted).
- ``binary_ignore``: the masks hold one class and the ignore value only, as 0/255 binary masks
  do under the default ``--ignore_index 255`` (the whole foreground ignored);
  ``ignore_dominates``: the ignore value covers more than half of the masks' pixels.
- ``void_class_zero``: class 0 is named like a void class ("other", "unlabeled", ...) and the
  masks hold it, as ADE20K-style masks do when read without ``--reduce_labels``.

They are warnings; ``--strict_labels`` makes them errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..labels import MAX_MASK_VALUE, LabelSet

MAJORITY = 0.5  # the ignore value covering more than this share of the pixels is reported
VOID_LIKE_NAMES = ("other", "others", "unlabeled", "unlabelled", "void", "ignore", "ignored", "unknown", "undefined",
                   "none", "unclassified", "misc")
CLASSES_NAMED = 8  # classes named in one message before "..."


class LabelCheckWarning(UserWarning):
    """A label check that fired, warned where the data is loaded from Python (the command line
    prints it on the run's first lines instead)."""


@dataclass(frozen=True)
class LabelEvidence:
    """Pixels of each stored mask value (0-255) in each split, and the split's image count:
    ``splits`` = ((split, images, counts), ...), `counts` 256 integers."""

    splits: tuple[tuple[str, int, tuple[int, ...]], ...]

    @classmethod
    def from_counts(cls, counts: dict[str, tuple[int, np.ndarray]]) -> "LabelEvidence":
        return cls(tuple((split, int(images), tuple(int(count) for count in pixels))
                         for split, (images, pixels) in counts.items()))

    def counts(self, split: str) -> np.ndarray | None:
        for name, _, pixels in self.splits:
            if name == split:
                return np.asarray(pixels, dtype=np.int64)
        return None

    def total(self) -> np.ndarray:
        return np.sum([np.asarray(pixels, dtype=np.int64) for _, _, pixels in self.splits], axis=0) \
            if self.splits else np.zeros(MAX_MASK_VALUE + 1, dtype=np.int64)

    def record(self, labels: LabelSet) -> dict:
        """results.json's ``class_pixels``: per split, the pixels of each class and the ignored ones."""
        recorded = {}
        for split, images, pixels in self.splits:
            recorded[split] = {"images": images, "per_class": list(pixels[: labels.num_labels]),
                               "ignored": pixels[labels.void]}
        return recorded


@dataclass(frozen=True)
class LabelCheck:
    """One sign that the masks and the label set disagree: a stable `code` and the message."""

    code: str
    message: str

    def record(self) -> dict:
        return {"check": self.code, "message": self.message}


def _named(labels: LabelSet, ids: list[int]) -> str:
    shown = [f"{index} {labels.names[index]}" for index in ids[:CLASSES_NAMED]]
    more = f" and {len(ids) - CLASSES_NAMED} more" if len(ids) > CLASSES_NAMED else ""
    return ", ".join(shown) + more


def _absent(labels: LabelSet, evidence: LabelEvidence, split: str) -> LabelCheck | None:
    counts = evidence.counts(split)
    if counts is None or not counts.sum():
        return None
    missing = [index for index in range(labels.num_labels) if counts[index] == 0]
    if not missing:
        return None
    if split == "train":
        consequence = "the model never sees them, so their IoU can only be 0 where they occur in validation"
    else:
        consequence = "their IoU is undefined (left out of the mean), or 0 wherever the model predicts them"
    return LabelCheck(f"absent_{split}", f"{len(missing)} of {labels.num_labels} classes occur in no {split} mask "
                                         f"({_named(labels, missing)}): {consequence}")


def _ignore_suspect(labels: LabelSet, evidence: LabelEvidence) -> LabelCheck | None:
    """The ignore value covering most pixels, or the masks holding one class and the ignore value
    only: both what binary masks stored as 0/255 look like under ``--ignore_index 255``."""
    if labels.ignore_index is None:
        return None
    total = evidence.total()
    pixels = int(total.sum())
    share = total[labels.ignore_index] / pixels if pixels else 0.0
    held = [int(value) for value in np.flatnonzero(total)]
    binary = labels.num_labels > 1 and len(held) == 2 and labels.ignore_index in held
    if not binary and share <= MAJORITY:
        return None
    message = f"the ignore value {labels.ignore_index} covers {100 * share:.0f} % of the masks' pixels"
    if binary:
        other = next(value for value in held if value != labels.ignore_index)
        mapping = json.dumps({str(other): 0, str(labels.ignore_index): 1})
        void = labels.ignore_index
        return LabelCheck("binary_ignore", f"{message}, and the masks hold only {other} and {void}, as binary masks "
                                           f"stored as {other}/{void} do: if {void} is the foreground, it is neither "
                                           f"trained nor scored; pass --label_map '{mapping}' to make it class 1")
    return LabelCheck("ignore_dominates", f"{message}, so most of every image is neither trained nor scored; if that "
                                          "value is a class, pass --label_map (its class id) or --ignore_index with "
                                          "the real void value")


def _void_class_zero(labels: LabelSet, evidence: LabelEvidence, reduced: bool) -> LabelCheck | None:
    name = labels.names[0]
    if reduced or name.strip().lower() not in VOID_LIKE_NAMES:
        return None
    total = evidence.total()
    pixels = int(total[: labels.num_labels].sum())
    if not pixels or not total[0]:
        return None
    return LabelCheck("void_class_zero", f"class 0 is named {name!r} and covers {100 * total[0] / pixels:.0f} % of the "
                                         "labelled pixels: if 0 means unlabelled (ADE20K's convention), pass "
                                         f"--reduce_labels and drop {name!r} from the class names, or it trains and "
                                         "scores as a class")


def label_checks(labels: LabelSet, evidence: LabelEvidence, reduced: bool) -> tuple[LabelCheck, ...]:
    """The checks that fire on `evidence` for `labels` (`reduced`: ``--reduce_labels`` or the
    release's own reduction already ignores 0)."""
    found = (_absent(labels, evidence, "train"), _absent(labels, evidence, "validation"),
             _ignore_suspect(labels, evidence), _void_class_zero(labels, evidence, reduced))
    return tuple(check for check in found if check is not None)


__all__ = ["LabelCheck", "LabelCheckWarning", "LabelEvidence", "VOID_LIKE_NAMES", "label_checks"]

"""The validation split as an evaluation runs it: ordered, transformed for the protocol, with the
sizes it was fitted to and the protocols it runs under (`EvaluationSet`), and the per-batch helpers
that score a protocol's predictions image by image (`protocol_prediction`).

`SegTrainer` builds one `EvaluationSet` from a raw ``image``/``label`` split and hands each
evaluation batch that is not on the plain path to `protocol_prediction`; neither knows anything of
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.transforms import (
    MAX_EVAL_SIZE,
    SIZE_MULTIPLE,
    eval_transforms,
    fitted_size,
    image_sizes,
    make_batch_transform,
    shape_order,
    shrunk_size,
    size_to_fit,
)
from ..errors import UsageError
from .metrics import TRAINER_PAD_INDEX, ScoredCounts
from .protocol import PROBABILITY_FLOOR, EvalProtocol, image_logits, protocol_transform

EVAL_PADDINGS = ("batch", "square")


@dataclass(frozen=True)
class EvaluationSet:
    """A validation split prepared for evaluation.

    Attributes:
        raw: the raw split in the order it is evaluated (grouped by shape under ``"batch"`` padding).
        dataset: `raw` with the transform of the single-scale protocol.
        eval_size: the largest side an image is evaluated at (larger ones are shrunk).
        protocol: the single-scale protocol every evaluation runs.
        augmented: the protocol with its scales and flip (`SegTrainer.evaluate_augmented`); None: it has none.
        shrunk_for_scoring: the images (positions in the split's own order) scored shrunk to the protocol's max side.
    """

    raw: object
    dataset: object
    eval_size: int
    protocol: EvalProtocol
    augmented: EvalProtocol | None
    shrunk_for_scoring: tuple[int, ...]

    @classmethod
    def build(cls, dataset, protocol: EvalProtocol, *, eval_size: int | None, padding: str, crop_size: int | None,
              mean, std, void: int) -> EvaluationSet:
        """`dataset` (raw ``image``/``label``) ordered by shape and transformed as `protocol` runs it.

        `eval_size` None: fitted to the split (the smallest multiple of 32 holding its largest image,
        at most `MAX_EVAL_SIZE`); the protocol's open values are filled from it and the crop size.

        Raises:
            UsageError: a `padding` other than ``"batch"``/``"square"``, or an `eval_size` that is not a multiple of 32.
        """
        if padding not in EVAL_PADDINGS:
            raise UsageError(f"eval_padding={padding!r}: use 'batch' or 'square'.")
        if eval_size is not None and eval_size % SIZE_MULTIPLE:
            raise UsageError(f"--eval_size {eval_size} is not a multiple of {SIZE_MULTIPLE}, which every model "
                             f"here needs: pass {size_to_fit(eval_size)}.")
        sizes = image_sizes(dataset)
        eval_size = eval_size or fitted_size(dataset, MAX_EVAL_SIZE, sizes)
        completed = protocol.with_defaults(eval_size, crop_size or eval_size)
        if padding == "batch":
            # The metric is a sum over pixels, so the order is free: group the shapes (and, for another
            # protocol, the sizes the images run at: it runs only images of one size together).
            run_sizes = None if completed.plain else [completed.run_size(height, width, eval_size)
                                                      for height, width in sizes]
            dataset = dataset.select(shape_order(sizes, eval_size, run_sizes))
        single = completed.single_scale()
        if single.plain:  # batched, at native resolution
            transformed = dataset.with_transform(with_label_sizes(make_batch_transform(
                eval_transforms(eval_size, mean, std, square=padding == "square", mask_fill=void)), eval_size))
        else:
            transformed = dataset.with_transform(protocol_transform(single, eval_size, mean, std))
        return cls(dataset, transformed, eval_size, single, completed if completed.augmented else None,
                   tuple(completed.shrunk_for_scoring(sizes)))

    def under(self, protocol: EvalProtocol, mean, std):
        """The validation images as `protocol` (e.g. the augmented one) runs them."""
        return self.raw.with_transform(protocol_transform(protocol, self.eval_size, mean, std))

    def image_ids(self, images: int) -> list[str]:
        """The ids of the `images` evaluated, in the evaluation's order: the ``id`` column, or the
        positions where the split has none (or ids that repeat; the order is deterministic)."""
        raw = self.raw
        ids = [str(image_id) for image_id in raw["id"]] if len(raw) == images and "id" in raw.column_names else []
        return ids if len(set(ids)) == images else [str(position) for position in range(images)]


def with_label_sizes(transform, eval_size: int):
    """`transform` (a plain evaluation's) adding each sample's ``label_size``: its mask's size before
    padding (shrunk to fit `eval_size` as the image is), which tells the metrics where the image ends."""

    def transform_with_sizes(batch: dict) -> dict:
        output = transform(batch)
        output["label_size"] = [list(shrunk_size(image.height, image.width, eval_size)) for image in batch["image"]]
        return output

    return transform_with_sizes


def outside_marked(labels: torch.Tensor | None, label_sizes) -> torch.Tensor | None:
    """`labels` with every pixel beyond its sample's ``label_size`` (bottom and right padding) set to
    Trainer's -100: not scored, and the image's edge for boundary IoU. The loss was computed before."""
    if labels is None or label_sizes is None:
        return labels
    labels = labels.to(torch.int64, copy=True)  # -100 must not wrap in a byte
    sizes = label_sizes.tolist() if isinstance(label_sizes, torch.Tensor) else label_sizes
    for index, (height, width) in enumerate(sizes):
        labels[index, height:, :] = TRAINER_PAD_INDEX
        labels[index, :, width:] = TRAINER_PAD_INDEX
    return labels


def same_size_groups(image_sizes: list, label_sizes: list) -> dict[tuple, list[int]]:
    """The indices of a batch's samples grouped by (image size, annotation size), in batch order:
    the images a protocol can run together, each padded as it would be alone."""
    groups: dict[tuple, list[int]] = {}
    for index, sizes in enumerate(zip(map(tuple, image_sizes), map(tuple, label_sizes))):
        groups.setdefault(sizes, []).append(index)
    return groups


def protocol_prediction(model, inputs: dict, protocol: EvalProtocol, multiple: int, metrics=None):
    """One evaluation batch under a protocol that is not the plain one: ``(None, scores, labels)``
    for Trainer's prediction step (no loss: the protocol's outputs are logits or averaged probabilities).

    Images of one run size (and one annotation size) run together, each padded as it would be alone
    (to the model's `multiple`, as mmsegmentation pads), the prediction brought back to its
    annotation's size. With `metrics` (`SegmentationMetrics`) each image is scored as its scores
    arrive, so only one image's class maps at its annotation's size exist at a time (a batch's, padded
    to its largest, would grow with the largest image); the scores are then `ScoredCounts` with one
    placeholder label per image (Trainer computes metrics only for a batch with labels). Without, the
    batch's scores, padded, with the padding marked in the labels.
    """
    image_sizes, label_sizes = inputs.pop("image_size").tolist(), inputs.pop("label_size").tolist()
    pixels, labels = inputs["pixel_values"], inputs["labels"]
    scored = [None] * len(pixels) if metrics is not None else None
    batch_scores = None if scored else torch.full(
        (len(pixels), model.config.num_labels, *labels.shape[-2:]), float(torch.tensor(PROBABILITY_FLOOR).log()),
        device=pixels.device)
    for ((height, width), label_size), indices in same_size_groups(image_sizes, label_sizes).items():
        predicted = image_logits(model, pixels[indices, :, :height, :width], protocol, multiple,
                                 batch_size=len(pixels), size=label_size)
        for index, scores in zip(indices, predicted):
            if scored is None:
                batch_scores[index, :, :label_size[0], :label_size[1]] = scores[0]
                continue
            scored[index] = metrics.score_batch(scores, labels[index: index + 1, :label_size[0], :label_size[1]])
            del scores  # before the next image's maps are made
    if scored is not None:
        return None, ScoredCounts(torch.cat(parts) for parts in zip(*scored)), labels.new_zeros((len(pixels), 1))
    return None, batch_scores, outside_marked(labels, label_sizes)


__all__ = ["EVAL_PADDINGS", "EvaluationSet", "outside_marked", "protocol_prediction", "same_size_groups",
           "with_label_sizes"]

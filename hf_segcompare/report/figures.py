"""The report's figures, drawn from runs' records only: learning curve, confusion matrix (or its
most confused pairs above 40 classes), and the comparison page's mIoU against parameters, time,
FLOPs and speed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..plotting import pyplot
from .results import RunResults

LEARNING_CURVE = "learning_curve.png"
SAMPLE_PREDICTIONS = "sample_predictions.png"
CONFUSION_MATRIX = "confusion_matrix.png"
RELIABILITY_DIAGRAM = "reliability_diagram.png"
# Above this many classes a full confusion matrix is unreadable: the figure shows the most confused pairs.
MATRIX_CLASSES_SHOWN = 40
CONFUSED_PAIRS_SHOWN = 30
def plot_learning_curve(results: RunResults, path: Path) -> bool:
    """Validation mIoU and mean training loss per epoch; False when there is nothing to draw."""
    evaluations = [e for e in results.evaluations if e.epoch is not None]
    if not evaluations:
        return False
    plt = pyplot()
    figure, miou_axis = plt.subplots(figsize=(6, 3.5))
    miou_axis.plot([e.epoch for e in evaluations], [e.mean_iou for e in evaluations], "o-", color="C0")
    miou_axis.set_xlabel("epoch")
    miou_axis.set_ylabel("validation mean IoU", color="C0")
    by_epoch: dict[int, list[float]] = {}
    for entry in results.train_loss:
        if entry.get("epoch") is not None:
            by_epoch.setdefault(math.ceil(entry["epoch"]), []).append(entry["loss"])
    if by_epoch:
        loss_axis = miou_axis.twinx()
        epochs = sorted(by_epoch)
        loss_axis.plot(epochs, [np.mean(by_epoch[e]) for e in epochs], "s--", color="C1")
        loss_axis.set_ylabel("training loss (epoch mean)", color="C1")
    miou_axis.set_title(results.model)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_confusion_matrix(results: RunResults, path: Path) -> bool:
    """The final evaluation's confusion matrix, each row normalised to the annotated pixels of its
    class (so the diagonal is each class's recall), with the class names; False without a matrix.
    Above `MATRIX_CLASSES_SHOWN` classes a grid of names is unreadable: the figure shows the most
    confused pairs instead (`plot_confused_pairs`)."""
    if not results.confusion_matrix:
        return False
    counts = np.asarray(results.confusion_matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    names = results.class_names
    if len(names) > MATRIX_CLASSES_SHOWN:
        return plot_confused_pairs(results.model, shares, names, path)
    plt = pyplot()
    side = 2.5 + 0.32 * len(names)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("annotated class")
    axis.set_title(f"{results.model}: share of each class's pixels", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def confused_pairs(shares: np.ndarray, names: list[str], count: int = CONFUSED_PAIRS_SHOWN) -> list[tuple[str, float]]:
    """The `count` largest off-diagonal shares of a row-normalised confusion matrix, as
    ("annotated → predicted", share) from the largest down (pairs that never occur left out)."""
    off_diagonal = shares.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    order = np.argsort(off_diagonal, axis=None)[::-1][:count]
    pairs = []
    for flat in order:
        row, column = divmod(int(flat), off_diagonal.shape[1])
        if off_diagonal[row, column] <= 0:
            break
        pairs.append((f"{names[row]} → {names[column]}", float(off_diagonal[row, column])))
    return pairs


def plot_confused_pairs(model: str, shares: np.ndarray, names: list[str], path: Path) -> bool:
    """A bar per confused pair (annotated class → predicted class: the share of the annotated
    class's pixels predicted as the other), the largest `CONFUSED_PAIRS_SHOWN`."""
    pairs = confused_pairs(shares, names)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.25 * max(len(pairs), 1)))
    if pairs:
        labels, values = zip(*reversed(pairs))
        axis.barh(range(len(pairs)), values, color="C0")
        axis.set_yticks(range(len(pairs)), labels, fontsize=7)
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of the annotated class's pixels predicted as the other class")
    axis.set_title(f"{model}: the {len(pairs)} most confused class pairs of {len(names)}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_reliability_diagram(results: RunResults, path: Path) -> bool:
    """Accuracy against mean top-class confidence per bin of the final evaluation (the diagonal is
    perfect calibration; each bar's shade is its share of the pixels); False without calibration data."""
    calibration = results.calibration
    if not calibration or not any(calibration["pixels"]):
        return False
    plt = pyplot()
    edges = calibration["bin_edges"]
    total = sum(calibration["pixels"])
    figure, axis = plt.subplots(figsize=(4, 4))
    for low, high, pixels, accuracy in zip(edges, edges[1:], calibration["pixels"], calibration["accuracy"]):
        if pixels:
            axis.bar(low, accuracy, width=high - low, align="edge", color="C0", edgecolor="white",
                     alpha=0.25 + 0.75 * pixels / total)
    axis.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("top-class confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{results.model}: ECE {calibration['ece']:.3f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_miou_against(runs: list[RunResults], value, label: str):
    """A log-x scatter of each run's mean IoU against `value(run)` (runs where it is None left out),
    each point labelled with its model, every label inside the frame; returns the figure."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    measured = [run for run in runs if value(run) is not None]
    middle = np.median([value(run) for run in measured])
    for run in measured:
        point = (value(run), run.mean_iou)
        axis.scatter(*point, label=run.model)
        # Labels point inwards (left of the right-hand points), which keeps short ones in the frame.
        inward = value(run) > middle or len(measured) == 1
        axis.annotate(run.model, point, fontsize=8, textcoords="offset points",
                      xytext=(-5 if inward else 5, 4), ha="right" if inward else "left")
    axis.set_xscale("log")
    axis.margins(x=0.3, y=0.15)
    axis.set_xlabel(label)
    axis.set_ylabel("validation mean IoU")
    figure.tight_layout()
    if not _labels_inside(figure, axis):
        for text in list(axis.texts):  # a label too long for its side: name the points in a legend
            text.remove()
        import textwrap

        handles, names = axis.get_legend_handles_labels()
        axis.legend(handles, ["\n".join(textwrap.wrap(name, 24)) for name in names], fontsize=7, loc="best")
        figure.tight_layout()
    return figure


def _labels_inside(figure, axis) -> bool:
    """Whether every annotation of `axis` lies inside its frame, each moved to the other side of
    its point first if it sticks out on one."""
    figure.canvas.draw()
    frame = axis.get_window_extent()
    for text in axis.texts:
        box = text.get_window_extent()
        if box.x0 < frame.x0 or box.x1 > frame.x1:
            left = box.x0 < frame.x0
            text.set_horizontalalignment("left" if left else "right")
            text.set_position((5 if left else -5, 4))
    figure.canvas.draw()
    return all(frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
               for box in (text.get_window_extent() for text in axis.texts))

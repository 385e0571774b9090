"""Sample predictions of a trained model on a few validation images, drawn when its run finishes
and saved as a figure beside its card (the card itself reads only the record)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.images import to_rgb
from ..data.masks import mask_to_array, voc_palette
from ..plotting import pyplot
from .inference import segment


def sample_predictions_figure(model, validation, count: int = 3):
    """A matplotlib figure: rows of image | ground truth | prediction (in the VOC palette, which
    colours any label set) for the first `count` validation images; None without any. The caller
    closes it."""
    if validation is None or len(validation) == 0:
        return None
    palette = np.array(voc_palette(), dtype=np.uint8)
    plt = pyplot()
    rows = min(count, len(validation))
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row in range(rows):
        sample = validation[row]
        image = to_rgb(sample["image"])
        truth = palette[mask_to_array(sample["label"])]
        prediction = palette[segment(model, image)]
        for column, (picture, title) in enumerate(
            ((image, "image"), (truth, "ground truth"), (prediction, "prediction"))
        ):
            axes[row, column].imshow(picture)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(title)
    figure.tight_layout()
    return figure


def plot_sample_predictions(model, validation, path: Path, count: int = 3) -> bool:
    """`sample_predictions_figure` saved to `path`; False when there is no validation image."""
    figure = sample_predictions_figure(model, validation, count)
    if figure is None:
        return False
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return True

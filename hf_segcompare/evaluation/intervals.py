"""Confidence intervals for mean IoU, and for the difference between models, by resampling images.

The validation set is a sample of the images a model will meet; another sample would give another
mean IoU. The bootstrap estimates that spread from the set itself: draw as many images as it has,
with replacement, recompute mean IoU from the drawn images' per-image counts (summed, so it is the
same statistic as the run's), and repeat; the 2.5th and 97.5th percentiles of the resampled figures
are the 95 % interval (the percentile bootstrap, seeded, so it is the same on every rerun).

Two models scored on the same images are compared **paired**: each resample draws one set of images
and scores every run on it, so the difficulty of the drawn images cancels out of the difference.
Identical predictions therefore give a difference of exactly 0 at every resample.

Training randomness is another source of spread, which the images cannot show: a model trained
with several seeds has a seed-to-seed standard deviation. With two or more seeds for both models
the difference of their seed means gets the interval

    d ± z · sqrt(se_images² + sd_A² / n_A + sd_B² / n_B)

where se_images is the standard deviation of the paired resampled differences (of the seed means)
and sd the standard deviation across each model's seeds: the two sources are independent, so their
variances add (a normal approximation; with two seeds sd is a rough estimate). A model trained
once, compared with one trained several times, is given the largest seed variance measured among
the models compared (the comparison page does so), rather than none. When no model has two seeds
the interval is the paired percentile one, and the seed spread is not in it (the page says so).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from .per_image import PerImageCounts

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_SEED = 0


def resample_weights(images: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``[samples, images]``: how often each image is drawn in each resample (each row sums to `images`)."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, images, size=(samples, images)) + np.arange(samples)[:, None] * images
    return np.bincount(drawn.ravel(), minlength=samples * images).reshape(samples, images).astype(np.float64)


def resampled_mean_iou(counts: PerImageCounts, weights: np.ndarray) -> np.ndarray:
    """``[samples]``: the mean IoU of each resample (`weights` from `resample_weights`, columns in
    the order of `counts`' rows)."""
    intersection = weights @ counts.intersection.astype(np.float64)
    union = weights @ counts.union.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nanmean(intersection / union, axis=1)  # a class in no drawn image is 0/0: left out


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_iou_interval(counts: PerImageCounts, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                      level: float = CONFIDENCE_LEVEL) -> dict:
    """The run's mean IoU with its percentile-bootstrap interval over validation images, as results.json
    records it: ``mean_iou``, ``interval`` [low, high], ``standard_error``, ``samples``, ``level``,
    ``seed``, ``images``."""
    if samples < 1:
        raise ValueError(f"bootstrap samples must be at least 1, not {samples}")
    resampled = resampled_mean_iou(counts, resample_weights(len(counts), samples, seed))
    return {"mean_iou": counts.mean_iou(), "interval": _percentiles(resampled, level),
            "standard_error": float(np.std(resampled, ddof=1)) if samples > 1 else 0.0,
            "method": "percentile bootstrap over validation images", "samples": samples, "level": level,
            "seed": seed, "images": len(counts)}


@dataclass(frozen=True)
class Difference:
    """Model A's mean IoU minus model B's, with its interval (see the module docstring)."""

    difference: float
    interval: tuple[float, float]
    method: str
    level: float
    paired_images: int
    seeds: tuple[int, int]

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0: the data support saying which model is better."""
        low, high = self.interval
        return low > 0 or high < 0


def paired_difference(runs_a: list[PerImageCounts], runs_b: list[PerImageCounts], samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = BOOTSTRAP_SEED, level: float = CONFIDENCE_LEVEL,
                      assumed_seed_variance: float | None = None) -> Difference:
    """Mean IoU of model A (the mean over its runs, one per seed) minus model B's, with the paired
    interval: every resample scores every run on the same drawn images.

    `assumed_seed_variance`: the seed-to-seed variance a model with a single run is taken to have
    (e.g. the largest measured among the compared models'), so that the seed spread is not left out
    because one model was trained once; None: with a single run on either side the interval covers
    the images only.

    Raises:
        ValueError: the runs were not all scored on the same validation images (they cannot be paired).
    """
    runs = [*runs_a, *runs_b]
    ids = sorted(runs[0].ids)
    if any(sorted(run.ids) != ids for run in runs[1:]):
        raise ValueError("the runs were scored on different validation images: their difference cannot be paired")
    aligned = [run.aligned_to(ids) for run in runs]
    weights = resample_weights(len(ids), samples, seed)
    resampled = [resampled_mean_iou(run, weights) for run in aligned]
    observed = [run.mean_iou() for run in aligned]
    count_a = len(runs_a)
    difference = float(np.mean(observed[:count_a]) - np.mean(observed[count_a:]))
    resampled_difference = np.mean(resampled[:count_a], axis=0) - np.mean(resampled[count_a:], axis=0)
    seeds = (len(runs_a), len(runs_b))
    if min(seeds) < 2 and (assumed_seed_variance is None or max(seeds) < 2):
        return Difference(difference, tuple(_percentiles(resampled_difference, level)),
                          "paired percentile bootstrap over validation images", level, len(ids), seeds)
    method = "normal: paired bootstrap over images + spread across seeds"
    seed_variance = 0.0
    for values in (observed[:count_a], observed[count_a:]):
        if len(values) > 1:
            seed_variance += statistics.variance(values) / len(values)
        else:
            seed_variance += assumed_seed_variance
            method = "normal: paired bootstrap over images + spread across seeds (one run: the largest measured)"
    images_variance = float(np.var(resampled_difference, ddof=1))
    half_width = statistics.NormalDist().inv_cdf(0.5 + level / 2) * (images_variance + seed_variance) ** 0.5
    return Difference(difference, (difference - half_width, difference + half_width), method, level, len(ids), seeds)


__all__ = ["BOOTSTRAP_SAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE_LEVEL", "Difference", "mean_iou_interval",
           "paired_difference", "resample_weights", "resampled_mean_iou"]

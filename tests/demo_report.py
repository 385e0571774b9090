"""The demo report (model_cards/demo) rendered from its committed records by today's code: each
run's card and the comparison page, written as the runs and ``scripts/compare.py`` wrote them (the
folders at ``outputs/demo/<run>``, the page from the eight folders in the experiment's order)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from .conftest import REPO_ROOT

DEMO = REPO_ROOT / "model_cards" / "demo"
RUNS = tuple(f"{model}-seed{seed}" for model in ("unet", "deeplabv3plus", "vit", "segformer-b0") for seed in (0, 1))


def render_demo(workdir: Path) -> Path:
    """Copy the demo's records, per-image counts and sample figures into `workdir`/outputs/demo and
    render every card and the page there; the folder returned."""
    from hf_segcompare.report.card import write_model_card
    from hf_segcompare.report.page import write_comparison
    from hf_segcompare.report.results import RunResults

    demo = workdir / "outputs" / "demo"
    for run in RUNS:
        shutil.copytree(DEMO / run, demo / run, ignore=shutil.ignore_patterns("README.md"))
        write_model_card(RunResults.read(demo / run / "results.json"), demo / run, model_ref=f"outputs/demo/{run}")
    with contextlib.chdir(workdir):  # the page names the folders as they were given
        write_comparison([f"outputs/demo/{run}" for run in RUNS], "outputs/demo/comparison")
    return demo

"""--report_to tensorboard: every evaluation's per-class IoU and a grid of fixed validation images with
their annotated and predicted masks, read back with TensorBoard's own reader."""

from __future__ import annotations

import importlib.util
import io
import json
import math

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_segcompare.engine.tensorboard import GRID_TAG

from .conftest import run_seg_in_process


def test_every_evaluation_logs_per_class_iou_and_the_prediction_grid(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        ["--model", "unet-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "no", "--report_to", "tensorboard"],
        capsys)
    assert status == 0, stderr[-3000:]
    (run_dir,) = (output_dir / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    record = json.loads((output_dir / "results.json").read_text())
    evaluations = record["evaluations"]
    assert [entry["step"] for entry in evaluations] == [1, 2]
    for name in record["dataset"]["class_names"]:
        logged = events.Scalars(f"eval/iou_{name}")
        assert [point.step for point in logged] == [1, 2], name
        for point, entry in zip(logged, evaluations):
            expected = entry[f"eval_iou_{name}"]  # null in the record: absent from prediction and annotation
            assert math.isnan(point.value) if expected is None else math.isclose(point.value, expected,
                                                                                 rel_tol=1e-6), name
    grids = events.Images(GRID_TAG)
    assert [grid.step for grid in grids] == [1, 2]
    picture = Image.open(io.BytesIO(grids[-1].encoded_image_string))
    assert picture.size == (grids[-1].width, grids[-1].height) and len(np.unique(np.asarray(picture.convert("L")))) > 10


def test_report_to_tensorboard_without_it_installed_says_what_to_install(tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else find_spec(name, *args))
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--report_to", "tensorboard", "--output_dir",
                                            str(tmp_path / "out")], capsys)
    assert status == 2 and stderr.startswith("error: --report_to tensorboard: TensorBoard is not installed. pip "
                                             "install 'hf_segcompare[tensorboard]'")

"""Where a label set comes from and how raw mask values become class ids: the files, the decoding,
the checks, and the metric without an ignore index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_segcompare.data.ade20k import ade20k_class_names
from hf_segcompare.data.label_source import (
    LabelOptions,
    MaskDecoding,
    parse_ignore_index,
    read_label_map,
    read_label_names,
)
from hf_segcompare.data.validation import validate_sample
from hf_segcompare.errors import DataError
from hf_segcompare.evaluation.metrics import SegmentationMetrics, mean_iou
from hf_segcompare.labels import LabelSet

from .own_data import png_bytes

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


@pytest.mark.parametrize("content, suffix", [
    ('{"0": "road", "2": "car", "1": "sidewalk"}', ".json"),
    ('["road", "sidewalk", "car"]', ".json"),
    ("road\nsidewalk\n\ncar\n", ".txt"),
])
def test_a_labels_file_in_each_form(content, suffix, tmp_path):
    path = tmp_path / f"labels{suffix}"
    path.write_text(content)
    assert read_label_names(path) == ("road", "sidewalk", "car")


@pytest.mark.parametrize("content, problem", [
    ('{"0": "road", "2": "car"}', r"class ids must run from 0 without a gap; \[1\] are missing"),
    ('{"a": "road"}', "the keys must be class ids"),
    ('{"0": "road", "1": "road"}', r"class names must be unique; \['road'\]"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_labels_file_is_named(content, problem, tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{path}.*{problem}"):
        read_label_names(path)
    with pytest.raises(DataError, match=r"--labels .*missing.json: no such file"):
        read_label_names(tmp_path / "missing.json")


def test_a_label_map_in_each_form_and_a_bad_one(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps({"7": 0, "8": 1}))
    (tmp_path / "map.txt").write_text("7 0\n8: 1\n")
    assert read_label_map(tmp_path / "map.json") == read_label_map(tmp_path / "map.txt") == {7: 0, 8: 1}
    # Inline JSON, and raw values of 16-bit masks, are maps too.
    assert read_label_map('{"0": 0, "255": 1}') == {0: 0, 255: 1} and read_label_map('{"1000": 2}') == {1000: 2}
    (tmp_path / "bad.json").write_text(json.dumps({"7": 300}))
    with pytest.raises(DataError, match=r"bad.json: class ids \[300\] are outside 0-255"):
        read_label_map(tmp_path / "bad.json")
    with pytest.raises(DataError, match=r"raw values \[70000\] are outside 0-65535"):
        read_label_map('{"70000": 1}')
    with pytest.raises(DataError, match="--label_map {\"0\": : not valid JSON"):
        read_label_map('{"0": ')


def test_the_decoding_maps_then_reduces_and_ignores_what_it_does_not_map():
    mapped = MaskDecoding.from_mapping({7: 0, 8: 1}).lookup(void=255)
    assert (mapped[7], mapped[8], mapped[0], mapped[255]) == (0, 1, 255, 255)
    reduced = MaskDecoding(reduce_labels=True).lookup(void=255)
    assert (reduced[0], reduced[1], reduced[150], reduced[255]) == (255, 0, 149, 255)
    assert reduced[256] == -1  # a 16-bit value has no meaning once reduced: validation names it
    assert MaskDecoding().lookup(void=255) is None  # values taken as they are


def test_options_that_cannot_work_are_refused():
    with pytest.raises(DataError, match="--ignore_index 300: give the mask value of void pixels"):
        parse_ignore_index("300")
    assert parse_ignore_index("none") is None and parse_ignore_index("0") == 0
    with pytest.raises(DataError, match="--ignore_index none leaves no value for what --reduce_labels"):
        LabelOptions.from_files(ignore_index="none", reduce_labels=True)
    with pytest.raises(DataError, match="ignore_index 0 is also the id of class 'unlabeled'"):
        LabelOptions(ignore_index=0).resolve((("unlabeled", "road"), "id2label.json"), "data")
    # Whose order would decide what a value becomes: refused, saying how to write it as one map.
    with pytest.raises(DataError, match="--label_map and --reduce_labels both say what each raw value becomes"):
        LabelOptions.from_files(label_map='{"1": 0}', reduce_labels=True)


def test_validation_checks_values_after_the_decoding_and_stores_class_ids():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    raw = np.array([[7, 7, 8, 8], [7, 7, 8, 8], [0, 0, 26, 26], [0, 0, 26, 26]], dtype=np.uint8)
    labels = LabelSet(("road", "sidewalk"), 255)
    lookup = MaskDecoding.from_mapping({7: 0, 8: 1}).lookup(255)
    check = validate_sample(png_bytes(image), png_bytes(raw), "image.png", "mask.png", labels, lookup)
    assert check.error is None
    from io import BytesIO

    from PIL import Image

    stored = np.array(Image.open(BytesIO(check.mask_bytes)))
    assert stored.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 255, 255], [255, 255, 255, 255]]
    check = validate_sample(png_bytes(image), png_bytes(raw), "image.png", "mask.png", labels)
    assert check.bad_values == (7, 8, 26) and "mask.png: mask values [7, 8, 26] are not in the label set, 2 " \
        "classes (0 road, 1 sidewalk), 255 ignored" in check.error


def test_ade20k_class_names_keep_the_first_synonym_unless_it_repeats():
    text = "Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n2\t0.1\t1\t1\tplant, flora\n3\t0.1\t1\t1\tplant, pot\n"
    assert ade20k_class_names(text, "objectInfo150.txt") == ("wall", "plant, flora", "plant, pot")
    with pytest.raises(DataError, match="objectInfo150.txt: expected rows"):
        ade20k_class_names("Idx\tName\n", "objectInfo150.txt")


def test_the_trainer_metric_without_an_ignore_index_is_evaluates_one():
    """SegmentationMetrics(names, ignore_index=None) scores every value as evaluate's mean_iou(ignore_index=None)."""
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, 3, size=(2, 8, 8))
    references = rng.integers(0, 4, size=(2, 8, 8))  # 3 is outside the 3 classes: counted on the prediction side
    metrics = SegmentationMetrics(["a", "b", "c"], ignore_index=None)
    logits = torch.nn.functional.one_hot(torch.as_tensor(predictions), 3).permute(0, 3, 1, 2).float()
    matrices = metrics.preprocess_logits(logits, torch.as_tensor(references))

    class Prediction:
        pass

    batch = Prediction()
    batch.predictions = matrices
    scores = metrics.compute(batch)
    expected = mean_iou(list(predictions), list(references), num_labels=3, ignore_index=None)
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert scores["overall_accuracy"] == pytest.approx(expected["overall_accuracy"])

"""Your data, your classes: datasets of one's own, ADE20K and Cityscapes, end to end through
run_seg.py, with the label set read from the data and carried to the model, the record, the card,
the page and the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from hf_segcompare.data import LabelOptions, LabelValuesError
from hf_segcompare.data.ade20k import load_ade20k
from hf_segcompare.data.cityscapes import load_cityscapes
from hf_segcompare.data.image_mask import load_image_mask_dataset
from hf_segcompare.errors import DataError

from .conftest import REPO_ROOT, run_seg_in_process
from .own_data import samples, write_ade20k, write_cityscapes, write_id2label, write_imagefolder, write_parquet

PETS = ["background", "cat", "dog"]
TINY_RUN = ["--model", "segformer-tiny", "--from_scratch", "--save_strategy", "no", "--logging_steps", "1"]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _card_front_matter(folder) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


def _assert_carries_the_classes(output, names: list[str], image_path, tmp_path) -> None:
    """The model config, results.json, the card, the page and the pipeline on the saved model all hold
    the data's classes, by name and count."""
    from transformers import pipeline

    from hf_segcompare.report.page import write_comparison

    assert list(json.loads((output / "config.json").read_text())["id2label"].values()) == names
    results = json.loads((output / "results.json").read_text())
    assert results["dataset"]["class_names"] == names
    assert sum(key.startswith("eval_iou_") for key in results["final_eval"]) == len(names)
    card = (output / "README.md").read_text()
    assert f"semantic segmentation of the {len(names)} classes of" in card
    assert f"| {names[0]} |" in card and f"| {names[-1]} |" in card
    assert _card_front_matter(output)["model-index"][0]["results"][0]["metrics"][0]["args"]["num_labels"] == len(names)
    page = write_comparison([output], tmp_path / "page").read_text()
    assert f"| {names[0]} |" in page and f"| {names[-1]} |" in page and "aeroplane" not in page
    segmenter = pipeline("image-segmentation", model=str(output))
    assert list(segmenter.model.config.id2label.values()) == names
    found = segmenter(Image.open(image_path))
    assert found and {segment["label"] for segment in found} <= set(names)


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A 3-class imagefolder of 64x64 images (0 background, 1 cat, 2 dog) and its labels file, one name a line."""
    root = tmp_path_factory.mktemp("pets")
    write_imagefolder(root / "pets", {"train": samples(24, [1, 2], seed=1, size=(64, 64)),
                                      "validation": samples(8, [1, 2], seed=2, size=(64, 64))})
    (root / "labels.txt").write_text("\n".join(PETS) + "\n")
    return root


@pytest.fixture(scope="module")
def pets_run(pets, tmp_path_factory):
    """segformer-tiny trained 20 steps on the pets under the defaults for data of one's own."""
    import contextlib
    import io

    from hf_segcompare.config.arguments import parse_args
    from hf_segcompare.pipeline.run import run

    output = tmp_path_factory.mktemp("pets-run") / "segformer-tiny"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        run(*parse_args([*TINY_RUN, "--dataset_name", str(pets / "pets"), "--labels", str(pets / "labels.txt"),
                         "--max_steps", "20", "--output_dir", str(output),
                         "--cache_dir", str(output.parent / "cache")]))
    return output, stdout.getvalue()


def test_an_imagefolder_with_a_labels_file_is_a_model_of_its_own_classes(pets, pets_run, tmp_path):
    output, printed = pets_run
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "background", "1": "cat", "2": "dog"}
    results = json.loads((output / "results.json").read_text())
    dataset = results["dataset"]
    assert dataset["class_names"] == PETS and dataset["ignore_index"] == 255
    assert dataset["label_source"] == f"--labels {pets / 'labels.txt'}"
    assert sorted(key for key in results["final_eval"] if key.startswith("eval_iou_")) == [
        "eval_iou_background", "eval_iou_cat", "eval_iou_dog"]
    assert len(results["confusion_matrix"]) == 3
    # The run's first lines say what it read and chose.
    assert f"labels: 3 classes (0 background, 1 cat, 2 dog), 255 ignored, from --labels {pets / 'labels.txt'}" \
        in printed
    assert "recipe: fitted, the default for data without a published recipe" in printed
    assert "protocol: native, images scored at their own size" in printed
    # Data without a published recipe: the crop fitted to its 64 px images, no 8x upscaling, a warm-up
    # that is a share of the run rather than 1,500 steps.
    assert dataset["crop_size"] == 64 and dataset["eval_size"] == 64 and dataset["protocol"] == "native"
    assert dataset["evaluation"]["resize"] == "native"
    assert results["recipe"]["name"] == "fitted" and 0 < results["args"]["training"]["warmup_steps"] < 1
    # The card: the data's classes, its own name (never this machine's path), metric args of its set.
    card = (output / "README.md").read_text()
    assert "semantic segmentation of the 3 classes of `pets` (a local dataset) (background, cat, dog)" in card
    assert "Pascal VOC" not in card and str(pets) not in card
    assert "| cat |" in card and "| dog |" in card and "| aeroplane |" not in card
    index = _card_front_matter(output)["model-index"][0]["results"][0]
    assert index["dataset"]["name"] == "pets"
    assert index["metrics"][0]["args"] == {"num_labels": 3, "ignore_index": 255}
    _assert_carries_the_classes(output, PETS, pets / "pets" / "validation" / "validation000.png", tmp_path)


def test_the_examples_parquet_layout_with_id2label_and_no_validation_split(tmp_path, capsys):
    """The transformers example's layout: data/*.parquet with pixel_values/label, an id2label.json of 35
    classes at the root, and no validation split: one is held out, seeded and recorded."""
    names = [f"class-{index}" for index in range(35)]
    root = write_parquet(tmp_path / "street", {"train": samples(30, list(range(1, 35)), seed=3, per_image=3)})
    write_id2label(root, names)
    output = tmp_path / "out"
    argv = [*TINY_RUN, "--dataset_name", str(root), "--max_steps", "2", "--output_dir", str(output)]
    status, stderr, _ = run_seg_in_process(argv, capsys)
    assert status == 2 and _error_lines(stderr) == [
        f"error: dataset {root} has splits ['train'] and no validation split (named validation, val or valid): pass "
        "--train_val_split 0.15 to hold out 15% of train as validation."]
    status, stderr, stdout = run_seg_in_process([*argv, "--train_val_split", "0.2"], capsys)
    assert status == 0, stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    dataset = results["dataset"]
    assert dataset["class_names"] == names and dataset["label_source"] == str(root / "id2label.json")
    assert dataset["validation_split"] == {"validation_from_train": 0.2, "seed": 0}
    assert dataset["train_samples"] == 24 and dataset["validation_samples"] == 6
    assert dataset["columns"] == {"image": "pixel_values", "label": "label"}
    assert len(json.loads((output / "config.json").read_text())["id2label"]) == 35
    card = (output / "README.md").read_text()
    assert "35 classes of `street`" in card and "held out from the training split: 20%, seed 0" in card
    image, _ = samples(1, [1], seed=12)[0]
    Image.fromarray(image).save(tmp_path / "street.png")
    _assert_carries_the_classes(output, names, tmp_path / "street.png", tmp_path)


def test_a_mask_value_outside_the_label_set_is_one_line_naming_file_value_and_set(pets, tmp_path, capsys):
    (tmp_path / "two.txt").write_text("background\ncat\n")
    status, stderr, _ = run_seg_in_process(
        [*TINY_RUN, "--dataset_name", str(pets / "pets"), "--labels", str(tmp_path / "two.txt"), "--max_steps", "1",
         "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache")], capsys)
    assert status == 2
    [line] = _error_lines(stderr)
    assert "_mask.png: mask values [2] are not in the label set, 2 classes (0 background, 1 cat), 255 ignored" in line
    assert str(pets / "pets") in line and "--labels FILE" in line and "--drop_invalid" in line
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_dataset_that_names_no_classes_is_one_line_saying_what_to_pass(pets, tmp_path, capsys):
    status, stderr, _ = run_seg_in_process(
        [*TINY_RUN, "--dataset_name", str(pets / "pets"), "--max_steps", "1", "--output_dir", str(tmp_path / "out"),
         "--cache_dir", str(tmp_path / "cache")], capsys)
    assert status == 2 and _error_lines(stderr) == [
        f"error: dataset {pets / 'pets'} says nothing about its classes: pass --labels FILE (JSON {{\"0\": \"road\", "
        "\"1\": \"sidewalk\", ...}, or one class name a line), or put an id2label.json of that form at the dataset's "
        "root."]


def test_rewriting_id2label_changes_the_cache_key(tmp_path):
    root = write_parquet(tmp_path / "data", {"train": samples(6, [1, 2], seed=4),
                                             "validation": samples(3, [1, 2], seed=5)})
    write_id2label(root, PETS)
    first = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache")
    again = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache")
    assert again["train"]._fingerprint == first["train"]._fingerprint  # nothing changed: the cache serves
    write_id2label(root, ["sky", "tree", "house"])
    renamed = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache")
    assert list(renamed.labels.names) == ["sky", "tree", "house"]
    assert renamed["train"]._fingerprint != first["train"]._fingerprint
    assert renamed["train"].cache_files[0]["filename"] != first["train"].cache_files[0]["filename"]


def test_compare_and_a_saved_models_evaluation_refuse_another_label_set(pets, pets_run, tmp_path, capsys):
    output, _ = pets_run
    other = tmp_path / "other"
    other.mkdir()
    results = json.loads((output / "results.json").read_text())
    results["dataset"]["class_names"] = ["background", "cat", "bird"]
    (other / "results.json").write_text(json.dumps(results))
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare.py"), str(output), str(other),
                                "--output_dir", str(tmp_path / "page")], capture_output=True, text=True)
    assert completed.returncode == 2
    assert (f"{other / 'results.json'} was trained on 3 classes (0 background, 1 cat, 2 bird), 255 ignored, but "
            f"{output / 'results.json'} on 3 classes (0 background, 1 cat, 2 dog), 255 ignored: only runs on one "
            "label set compare.") in completed.stderr
    (tmp_path / "bird.txt").write_text("background\ncat\nbird\n")
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--model_name_or_path", str(output), "--do_train", "false", "--dataset_name",
         str(pets / "pets"), "--labels", str(tmp_path / "bird.txt"), "--output_dir", str(tmp_path / "eval"),
         "--cache_dir", str(tmp_path / "cache")], capsys)
    assert status == 2
    [line] = _error_lines(stderr)
    assert (f"{output} predicts 3 classes (0 background, 1 cat, 2 dog), but the data's label set is 3 classes "
            "(0 background, 1 cat, 2 bird)") in line


def _ade20k(tmp_path):
    return write_ade20k(tmp_path / "ade", samples(8, [1, 2, 150], seed=6, size=(48, 64)),
                        samples(4, [1, 2, 150], seed=7, size=(48, 64)))


def test_ade20k_is_read_in_place_with_its_reduced_labels(tmp_path):
    """A 0 pixel ("other") is ignored and stored value 1 becomes class 0; folder and zip read alike."""
    root = _ade20k(tmp_path)
    dataset = load_ade20k(root, cache_dir=tmp_path / "cache")
    assert dataset.labels.num_labels == 150 and dataset.labels.names[:2] == ("thing1", "thing2")
    assert dataset.label_info.decoding.reduce_labels and len(dataset["validation"]) == 4
    raw = np.array(Image.open(root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"))
    stored = np.array(dataset["train"][0]["label"])
    assert dataset["train"][0]["id"] == "ADE_train_00000001"
    assert (stored[raw == 0] == 255).all() and (stored[raw == 1] == 0).all() and (stored[raw == 150] == 149).all()
    archive = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((root / "ADEChallengeData2016").rglob("*")):
            zipped.write(path, path.relative_to(root))
    from_zip = load_ade20k(archive, cache_dir=tmp_path / "cache")
    assert from_zip["train"]["id"] == dataset["train"]["id"]
    assert np.array_equal(np.array(from_zip["train"][0]["label"]), stored)
    with pytest.raises(DataError, match="--label_map: ADE20K's masks are read by their own convention"):
        load_ade20k(root, label_options=LabelOptions.from_files(label_map=_label_map(tmp_path)))


def _label_map(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"1": 0}))
    return str(path)


def test_ade20k_end_to_end_under_its_published_recipe(tmp_path, capsys):
    root = _ade20k(tmp_path)
    output = tmp_path / "out"
    status, stderr, stdout = run_seg_in_process(
        [*TINY_RUN, "--dataset_name", "ade20k", "--data_dir", str(root), "--crop_size", "64", "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--output_dir", str(output)], capsys)
    assert status == 0, stderr[-3000:]
    assert "labels: 150 classes (0 thing1, 1 thing2, 2 thing3, 3 thing4, 4 thing5, ..., 149 thing150), 255 ignored" \
        in stdout and "recipe: published, the default on ade20k" in stdout
    results = json.loads((output / "results.json").read_text())
    assert len(results["dataset"]["class_names"]) == 150 and results["dataset"]["reduce_labels"] is True
    assert "segformer_mit-b0_8xb2-160k_ade20k-512x512.py" in results["recipe"]["source"]
    assert results["args"]["training"]["max_steps"] == 2 and results["recipe"]["overridden"]["max_steps"] == 2
    assert len(json.loads((output / "config.json").read_text())["id2label"]) == 150
    card = (output / "README.md").read_text()
    assert "150 classes of `ade20k`" in card and "labels reduced (ADE20K's convention" in card
    # Its own protocol, never VOC's: mmsegmentation's ADE20K test resize and training pipeline.
    assert "VOC" not in card and "(mmsegmentation's ADE20K test resize)" in card
    assert "ratio kept, as mmsegmentation's ADE20K pipeline" in card
    # 150 classes: the figure shows the most confused pairs, not a 150 x 150 grid.
    assert "The most confused class pairs of the final evaluation" in card
    _assert_carries_the_classes(output, [f"thing{index}" for index in range(1, 151)],
                                root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg",
                                tmp_path)
    # Evaluated again, the saved model follows its training record (short side 64), not the recipe's 512.
    status, stderr, stdout = run_seg_in_process(
        ["--model", "segformer-tiny", "--model_name_or_path", str(output), "--do_train", "false", "--dataset_name",
         "ade20k", "--data_dir", str(root), "--output_dir", str(output)], capsys)
    assert status == 0, stderr[-3000:]
    assert f"protocol: mmseg, the one {output / 'results.json'} was evaluated with, so the figures compare" in stdout
    evaluation = json.loads((output / "eval_ade20k_validation.json").read_text())
    assert evaluation["dataset"]["evaluation"]["short_side"] == 64 and evaluation["dataset"]["crop_size"] == 64
    assert evaluation["final_eval"]["eval_mean_iou"] == results["final_eval"]["eval_mean_iou"]


def _cityscapes(tmp_path):
    # Raw label ids: 7 road, 8 sidewalk, 24 person, 26 car; 1 (ego vehicle) has no train id.
    return write_cityscapes(tmp_path / "cityscapes", samples(8, [8, 24, 26, 1], seed=8, background=7),
                            samples(4, [8, 24, 26, 1], seed=9, background=7))


def test_cityscapes_label_ids_become_train_ids_and_unmapped_ids_are_ignored(tmp_path):
    root = _cityscapes(tmp_path)
    dataset = load_cityscapes(root, cache_dir=tmp_path / "cache")
    assert dataset.labels.num_labels == 19 and dataset.labels.names[:2] == ("road", "sidewalk")
    raw = np.stack([np.array(Image.open(root / "gtFine" / "train" / "aachen" / f"{sample_id}_gtFine_labelIds.png"))
                    for sample_id in dataset["train"]["id"]])
    stored = np.stack([np.array(row["label"]) for row in dataset["train"]])
    assert dataset["train"][0]["id"] == "aachen_000000_000019"
    assert (stored[raw == 7] == 0).all() and (stored[raw == 8] == 1).all() and (stored[raw == 26] == 13).all()
    assert (raw == 1).any() and (stored[raw == 1] == 255).all()
    # The two official zips in one folder, read without extracting.
    archives = tmp_path / "zips"
    archives.mkdir()
    for top, name in (("leftImg8bit", "leftImg8bit_trainvaltest.zip"), ("gtFine", "gtFine_trainvaltest.zip")):
        with zipfile.ZipFile(archives / name, "w") as zipped:
            for path in sorted((root / top).rglob("*")):
                zipped.write(path, path.relative_to(root))
    from_zips = load_cityscapes(archives, cache_dir=tmp_path / "cache")
    assert from_zips["validation"]["id"] == dataset["validation"]["id"]
    assert np.array_equal(np.stack([np.array(row["label"]) for row in from_zips["train"]]), stored)


def test_cityscapes_end_to_end_evaluates_in_sliding_windows(tmp_path, capsys):
    root = _cityscapes(tmp_path)
    output = tmp_path / "out"
    status, stderr, stdout = run_seg_in_process(
        [*TINY_RUN, "--dataset_name", "cityscapes", "--data_dir", str(root), "--crop_size", "64", "--short_side", "64",
         "--eval_crop", "64", "--eval_stride", "32", "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--output_dir", str(output)], capsys)
    assert status == 0, stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["dataset"]["class_names"][13] == "car" and results["dataset"]["label_map"]["26"] == 13
    evaluation = results["dataset"]["evaluation"]
    # The published SegFormer recipe evaluates in sliding windows (here made small for 48x64 images).
    assert evaluation["mode"] == "slide" and (evaluation["crop"], evaluation["stride"]) == (64, 32)
    assert "segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py" in results["recipe"]["source"]
    card = (output / "README.md").read_text()
    assert "19 classes of `cityscapes`" in card
    assert "VOC" not in card and "(mmsegmentation's Cityscapes test resize)" in card
    from hf_segcompare.data.cityscapes import CITYSCAPES_NAMES

    image = root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    _assert_carries_the_classes(output, list(CITYSCAPES_NAMES), image, tmp_path)


def test_no_ignore_index_scores_every_value_and_a_255_is_then_invalid(tmp_path, capsys):
    """--ignore_index none: every mask value is a class; padding still never scored."""
    root = write_imagefolder(tmp_path / "full", {"train": samples(8, [1, 2], seed=10), "validation": samples(3, [1, 2],
                                                                                                          seed=11)})
    write_id2label(root, PETS)
    output = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        [*TINY_RUN, "--dataset_name", str(root), "--ignore_index", "none", "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--output_dir", str(output)], capsys)
    assert status == 0, stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["dataset"]["ignore_index"] is None
    # Every validation pixel is scored: the confusion matrix counts each one once, no padding.
    pixels = sum(np.array(Image.open(path)).size for path in (root / "validation").glob("*_mask.png"))
    assert sum(map(sum, results["confusion_matrix"])) == pixels
    card = (output / "README.md").read_text()
    assert "no ignore index" in card
    # The model-index leaves the ignore index out (None), as evaluate's mean_iou takes it: no value is ignored.
    assert _card_front_matter(output)["model-index"][0]["results"][0]["metrics"][0]["args"] == {"num_labels": 3}
    mask_path = root / "train" / "train000_mask.png"
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 255
    Image.fromarray(mask).save(mask_path)
    with pytest.raises(LabelValuesError, match=r"mask values \[255\] are not in the label set, 3 classes .*no ignore"):
        load_image_mask_dataset(str(root), label_options=LabelOptions.from_files(ignore_index="none"),
                                cache_dir=tmp_path / "cache")


def test_a_hub_datasets_id2label_is_read_through_the_hub_client(tmp_path, monkeypatch):
    """The transformers example's convention: the classes in the dataset repo's id2label.json, fetched
    by the real huggingface_hub client from a Hub-compatible server on 127.0.0.1."""
    from hf_segcompare.data.image_mask import hub_id2label

    from .hub_server import HubServer

    server = HubServer()
    server.repos["datasets/someone/street"] = {"sha": "a" * 40, "files": {
        "id2label.json": json.dumps({"0": "road", "1": "car"}).encode()}}
    server.repos["datasets/someone/bare"] = {"sha": "b" * 40, "files": {}}
    with server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        names, where = hub_id2label("someone/street", cache_dir=str(tmp_path / "hub"))
        assert names == ("road", "car") and where == "id2label.json of the Hub dataset someone/street"
        assert hub_id2label("someone/bare", cache_dir=str(tmp_path / "hub")) is None


def test_the_label_features_class_names_are_the_third_source():
    from datasets import ClassLabel, Sequence

    from hf_segcompare.data.label_source import feature_class_names

    assert feature_class_names(ClassLabel(names=["sky", "sea"])) == ("sky", "sea")
    assert feature_class_names(Sequence(ClassLabel(names=["sky", "sea"]))) == ("sky", "sea")
    from datasets import Image as ImageFeature

    assert feature_class_names(ImageFeature()) is None  # a mask image declares no classes: another source must

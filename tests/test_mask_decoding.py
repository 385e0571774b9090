"""Masks read as the data means them, end to end through run_seg.py on data the tests write: colour
tables, 16-bit and binary masks, the label checks, lossy masks refused, and the layouts people have
(images/ + masks/, CamVid's, a save_to_disk folder); every refusal one line with exit status 2.

The unit tests of the libraries' surfaces (Pillow's image modes, datasets' features and load_from_disk)
are in the fast subset, which CI also runs on the declared lower bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hf_segcompare.data import LabelOptions
from hf_segcompare.data.image_mask import load_image_mask_dataset
from hf_segcompare.data.mask_reading import read_colour_table
from hf_segcompare.data.masks import voc_palette
from hf_segcompare.errors import DataError

from .conftest import REPO_ROOT, run_script_in_process, run_seg_in_process
from .own_data import (
    CAMVID_TABLE,
    samples,
    write_camvid,
    write_id2label,
    write_images_and_masks,
    write_saved_dataset,
)

TINY_RUN = ["--model", "segformer-tiny", "--from_scratch", "--save_strategy", "no", "--max_steps", "2",
            "--per_device_train_batch_size", "4"]
CAMVID_NAMES = [name for name, _ in CAMVID_TABLE]


def _run(argv, tmp_path, capsys, name="out"):
    output = tmp_path / name
    status, stderr, stdout = run_seg_in_process([*TINY_RUN, *argv, "--output_dir", str(output),
                                                 "--cache_dir", str(tmp_path / "cache")], capsys)
    return status, stderr, stdout, output


def _one_error_line(status: int, stderr: str) -> str:
    """The one ``error:`` line of a refused run (exit status 2, no traceback)."""
    assert status == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


def _pairs(count, ids, seed, background=0):
    return samples(count, ids, seed=seed, size=(48, 64), background=background)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid") / "CamVid"
    return write_camvid(root, _pairs(8, [0, 1, 2, 3], seed=21, background=4), _pairs(4, [0, 1, 2, 3], seed=22,
                                                                                     background=4))


def test_camvid_rgb_masks_train_with_the_class_dicts_classes_not_the_voc_palettes(camvid, tmp_path, capsys):
    """CamVid's Sky, Building, Tree and Void are VOC palette colours: read through the table, Sky is
    class 0, never the palette's class 7."""
    palette = voc_palette()
    assert {colour for _, colour in CAMVID_TABLE} & set(palette[:21]) >= {(128, 128, 128), (128, 0, 0), (0, 0, 0)}
    status, stderr, stdout, output = _run(["--dataset_name", str(camvid)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    assert (f"labels: 5 classes (0 Sky, 1 Building, 2 Tree, 3 Car, 4 Void), 255 ignored, from the colour table "
            f"{camvid / 'class_dict.csv'}; masks: RGB colours through the colour table {camvid / 'class_dict.csv'} "
            "(5 colours)") in stdout
    results = json.loads((output / "results.json").read_text())
    dataset = results["dataset"]
    assert dataset["class_names"] == CAMVID_NAMES and dataset["train_samples"] == 8
    assert dataset["validation_samples"] == 4  # CamVid's test/ split is not scored
    assert dataset["mask_reading"]["kind"] == "colour_table"
    assert dataset["mask_reading"]["colours"]["128,128,128"] == 0
    assert f"colour table {camvid / 'class_dict.csv'} (5 colours)" in dataset["mask_decoding"]
    card = (output / "README.md").read_text()
    assert "RGB colours through the colour table class_dict.csv (5 colours)" in card and str(camvid) not in card
    # The masks as cached: each colour is its row's class.
    loaded = load_image_mask_dataset(str(camvid), cache_dir=tmp_path / "cache")
    sample = loaded["train"][0]
    rgb = np.array(Image.open(camvid / "train_labels" / f"{sample['id']}_L.png"))
    stored = np.array(sample["label"])
    for class_id, (_, colour) in enumerate(CAMVID_TABLE):
        assert (stored[(rgb == colour).all(axis=-1)] == class_id).all()
    # pipeline() on the saved model names the table's classes.
    from transformers import pipeline

    segmenter = pipeline("image-segmentation", model=str(output))
    found = segmenter(Image.open(camvid / "val" / "0001TP_000000.png"))
    assert found and {segment["label"] for segment in found} <= set(CAMVID_NAMES)


def test_rgb_masks_without_a_colour_table_are_one_line(tmp_path, capsys):
    root = write_camvid(tmp_path / "camvid", _pairs(4, [0, 1], seed=23, background=4),
                        _pairs(2, [0, 1], seed=24, background=4), table=None)
    write_id2label(root, CAMVID_NAMES)
    line = _one_error_line(*_run(["--dataset_name", str(root)], tmp_path, capsys)[:2])
    assert "_L.png: an RGB mask and no colour table says which colour is which class; 5 more sample(s) too" in line
    assert "pass --mask_colors FILE (CSV rows name,r,g,b as CamVid's class_dict.csv" in line
    # Given as --mask_colors, the same table reads them.
    table = tmp_path / "colours.csv"
    table.write_text("name,r,g,b\n" + "".join(f"{name},{r},{g},{b}\n" for name, (r, g, b) in CAMVID_TABLE))
    status, stderr, stdout, output = _run(["--dataset_name", str(root), "--mask_colors", str(table)], tmp_path,
                                          capsys, name="with-table")
    assert status == 0, stderr[-3000:]
    assert json.loads((output / "results.json").read_text())["dataset"]["class_names"] == CAMVID_NAMES


@pytest.mark.fast
def test_a_colour_table_in_each_form_and_void_colours(tmp_path):
    csv_with_ids = tmp_path / "ids.csv"
    csv_with_ids.write_text("name,r,g,b,id\nroad,128,64,128,0\ncar,64,0,128,1\nunlabelled,0,0,0,ignore\n")
    table = read_colour_table(csv_with_ids)
    assert table.names == ("road", "car") and table.void_colours == ((0, 0, 0),)
    assert table.lookup(void=255) == {(128, 64, 128): 0, (64, 0, 128): 1, (0, 0, 0): 255}
    as_json = tmp_path / "colours.json"
    as_json.write_text(json.dumps({"road": [128, 64, 128], "car": [64, 0, 128]}))
    assert read_colour_table(as_json).names == ("road", "car")
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([{"name": "road", "color": [128, 64, 128], "id": 0},
                                   {"name": "void", "color": [0, 0, 0], "id": "ignore"}]))
    assert read_colour_table(as_list).names == ("road",)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,r,g,b\nroad,128,64,128\ncar,128,64,128\n")
    with pytest.raises(DataError, match=r"the colours \[\(128, 64, 128\)\] are listed more than once"):
        read_colour_table(bad)
    bad.write_text("label,red\nroad,1\n")
    with pytest.raises(DataError, match="needs a header with the columns name, r, g, b"):
        read_colour_table(bad)


def _save_16_bit(mask, path):
    Image.fromarray(mask.astype(np.uint16)).save(path)  # mode I;16


def test_a_16_bit_mask_is_read_as_class_ids_not_as_a_colour(tmp_path, capsys):
    """0/1/2 in a 16-bit PNG are classes 0, 1, 2 (before, 16-bit masks went through RGB: 128 was VOC's
    class 7); a 16-bit value beyond 255 needs a label map."""
    root = write_images_and_masks(tmp_path / "deep", {"train": _pairs(8, [1, 2], seed=25),
                                                      "val": _pairs(4, [1, 2], seed=26)}, save_mask=_save_16_bit)
    assert Image.open(next((root / "masks" / "train").iterdir())).mode == "I;16"
    write_id2label(root, ["background", "cell", "nucleus"])
    status, stderr, stdout, output = _run(["--dataset_name", str(root)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    loaded = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache")
    raw = np.array(Image.open(root / "masks" / "train" / "0000.png"))
    assert np.array_equal(np.array(loaded["train"].sort("id")[0]["label"]), raw)
    # Values beyond 8 bits: a label map gives them classes.
    wide = write_images_and_masks(tmp_path / "wide", {"train": _pairs(4, [1, 2], seed=27),
                                                      "val": _pairs(2, [1, 2], seed=28)},
                                  save_mask=lambda mask, path: _save_16_bit(mask.astype(np.uint16) * 1000, path))
    write_id2label(wide, ["background", "cell", "nucleus"])
    with pytest.raises(DataError, match=r"mask values \[1000, 2000\] are not in the label set"):
        load_image_mask_dataset(str(wide), cache_dir=tmp_path / "cache")
    mapped = load_image_mask_dataset(str(wide), cache_dir=tmp_path / "cache", label_options=LabelOptions.from_files(
        label_map='{"0": 0, "1000": 1, "2000": 2}'))
    assert set(np.unique(np.array(mapped["train"][0]["label"]))) <= {0, 1, 2}


def test_binary_masks_stored_as_0_and_255_warn_and_train_both_classes_with_the_suggested_map(tmp_path, capsys):
    root = write_images_and_masks(tmp_path / "binary", {"train": _pairs(8, [255], seed=29),
                                                        "val": _pairs(4, [255], seed=30)})
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nlesion\n")
    status, stderr, stdout, output = _run(["--dataset_name", str(root), "--labels", str(labels)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    checks = [line for line in stdout.splitlines() if line.startswith("label check:")]
    binary = next(line for line in checks if "the masks hold only 0 and 255" in line)
    assert "pass --label_map '{\"0\": 0, \"255\": 1}' to make it class 1" in binary
    assert any("1 of 2 classes occur in no train mask (1 lesion)" in line for line in checks)
    recorded = json.loads((output / "results.json").read_text())["dataset"]["label_checks"]
    assert {check["check"] for check in recorded} >= {"binary_ignore", "absent_train"}
    assert "Label check: the ignore value 255 covers" in (output / "README.md").read_text()
    # The suggested option, as printed: both classes train, and nothing is left to warn about.
    status, stderr, stdout, output = _run(["--dataset_name", str(root), "--labels", str(labels), "--label_map",
                                           '{"0": 0, "255": 1}'], tmp_path, capsys, name="mapped")
    assert status == 0, stderr[-3000:]
    assert "label check:" not in stdout
    dataset = json.loads((output / "results.json").read_text())["dataset"]
    assert dataset["label_checks"] == [] and all(dataset["class_pixels"]["train"]["per_class"])
    assert dataset["class_pixels"]["train"]["ignored"] == 0
    # --strict_labels makes the warning an error.
    line = _one_error_line(*_run(["--dataset_name", str(root), "--labels", str(labels), "--strict_labels"], tmp_path,
                                 capsys, name="strict")[:2])
    assert line.startswith("error: --strict_labels: ") and "the masks hold only 0 and 255" in line


def test_ade_style_masks_without_reduce_labels_warn_and_the_reduction_trains(tmp_path, capsys):
    """Masks whose 0 is "other" and classes 1..N: read as they are, class 0 'other' trains as a class."""
    # Walls (1) around the scene, patches of floor (2), ceiling (3) and unlabelled "other" (0), as ADE20K's masks.
    pairs = {"train": _pairs(8, [0, 2, 3], seed=31, background=1), "val": _pairs(4, [0, 2, 3], seed=32, background=1)}
    root = write_images_and_masks(tmp_path / "scenes", pairs)
    write_id2label(root, ["other", "wall", "floor", "ceiling"])
    status, stderr, stdout, _ = _run(["--dataset_name", str(root)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    assert any(line.startswith("label check: class 0 is named 'other' and covers") and "pass --reduce_labels" in line
               for line in stdout.splitlines())
    reduced = tmp_path / "three.txt"
    reduced.write_text("wall\nfloor\nceiling\n")
    status, stderr, stdout, output = _run(["--dataset_name", str(root), "--labels", str(reduced), "--reduce_labels"],
                                          tmp_path, capsys, name="reduced")
    assert status == 0, stderr[-3000:]
    assert "label check:" not in stdout
    assert json.loads((output / "results.json").read_text())["dataset"]["reduce_labels"] is True
    # Named without "other" and read without the reduction: the top value is one above the top class id.
    line = _one_error_line(*_run(["--dataset_name", str(root), "--labels", str(reduced)], tmp_path, capsys,
                                 name="shifted")[:2])
    assert "3 is one above the top class id 2: if the masks' 0 means 'other' or unlabelled (ADE20K's convention), " \
           "pass --reduce_labels" in line


def _save_jpeg(mask, path):
    Image.fromarray(mask).save(path, quality=75)


@pytest.mark.parametrize("layout", ["images-and-masks", "camvid", "save_to_disk"])
def test_the_layouts_people_have_each_train(layout, camvid, tmp_path, capsys):
    names = ["background", "cat", "dog"]
    pairs = {"train": _pairs(8, [1, 2], seed=33), "validation": _pairs(4, [1, 2], seed=34)}
    if layout == "images-and-masks":
        root = write_images_and_masks(tmp_path / "pets", pairs)
        write_id2label(root, names)
    elif layout == "save_to_disk":
        root = write_saved_dataset(tmp_path / "saved", pairs, names)
    else:
        root, names = camvid, CAMVID_NAMES
    before = sorted(path.relative_to(root) for path in root.rglob("*"))
    status, stderr, stdout, output = _run(["--dataset_name", str(root)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    dataset = json.loads((output / "results.json").read_text())["dataset"]
    assert dataset["class_names"] == names
    assert (dataset["train_samples"], dataset["validation_samples"]) == (8, 4)
    assert sorted(path.relative_to(root) for path in root.rglob("*")) == before  # nothing written into the data


@pytest.mark.fast
def test_paired_folders_in_each_arrangement_pair_by_name(tmp_path):
    """Split folders holding images/ and masks/, images/ + masks/ with no split (held out with
    --train_val_split), and masks named with a suffix beside their images."""
    from hf_segcompare.data.paired_folders import find_paired_layout

    pairs = _pairs(6, [1, 2], seed=35)
    for split in ("train", "val"):
        for index, (image, mask) in enumerate(pairs):
            (tmp_path / "a" / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / "a" / split / "annotations").mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / "a" / split / "images" / f"{index}.png")
            Image.fromarray(mask).save(tmp_path / "a" / split / "annotations" / f"{index}.png")
            (tmp_path / "c" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "c" / split / f"{index}.jpg")
            Image.fromarray(mask).save(tmp_path / "c" / split / f"{index}_mask.png")
    write_images_and_masks(tmp_path / "b", {"all": pairs})
    for folder in ("b/images/all", "b/masks/all"):
        for path in (tmp_path / folder).iterdir():
            path.rename(path.parent.parent / path.name)
    layouts = {name: find_paired_layout(tmp_path / name) for name in "abc"}
    assert layouts["a"].splits == (("train", "train/images", "train/annotations"),
                                   ("validation", "val/images", "val/annotations"))
    assert layouts["b"].splits == (("train", "images", "masks"),)
    assert layouts["c"].samples()["train"][0] == ("0", "train/0.jpg", "train/0_mask.png", None)
    names = LabelOptions(names=("background", "cat", "dog"))
    for name in "ac":
        loaded = load_image_mask_dataset(str(tmp_path / name), cache_dir=tmp_path / "cache", label_options=names)
        assert (len(loaded["train"]), len(loaded["validation"])) == (6, 6)
    with pytest.raises(DataError, match="no validation split .* pass --train_val_split 0.15"):
        load_image_mask_dataset(str(tmp_path / "b"), cache_dir=tmp_path / "cache", label_options=names)
    held = load_image_mask_dataset(str(tmp_path / "b"), cache_dir=tmp_path / "cache", label_options=names,
                                   train_val_split=0.5)
    assert (len(held["train"]), len(held["validation"])) == (3, 3) and held.split_info["seed"] == 0


@pytest.mark.fast
def test_a_mask_column_of_integer_arrays_is_read_as_class_ids(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    from datasets import Image as ImageFeature

    from .own_data import png_bytes

    pairs = _pairs(4, [1, 2], seed=36)
    features = Features({"image": ImageFeature(), "label": Sequence(Sequence(Value("int32")))})
    DatasetDict({split: Dataset.from_dict({"image": [{"bytes": png_bytes(image), "path": None} for image, _ in pairs],
                                           "label": [mask.tolist() for _, mask in pairs]}, features=features)
                 for split in ("train", "validation")}).save_to_disk(str(tmp_path / "arrays"))
    loaded = load_image_mask_dataset(str(tmp_path / "arrays"), cache_dir=tmp_path / "cache",
                                     label_options=LabelOptions(names=("background", "cat", "dog")))
    assert np.array_equal(np.array(loaded["train"][0]["label"]), pairs[0][1])


ERRORS = {
    "jpeg masks": ("lossy", ": a JPEG mask, lossy (", "Export the masks as PNG (lossless)"),
    "drop_invalid empties validation": ("drop", "error: --drop_invalid left the validation split empty: all 4 of its "
                                                "samples are invalid", "Fix the data or the label options"),
    "a folder in no layout": ("nothing", "is a folder in none of the layouts a dataset is read from",
                              "images/ + masks/"),
    "a label map with --reduce_labels": ("map-and-reduce", "--label_map and --reduce_labels both say", "v - 1"),
    "a colour table with a label map": ("table-and-map", "--mask_colors gives each colour its class id",
                                        "put the ids in the table"),
    "an image without its mask": ("orphan", "1 image(s) under", "have no mask in"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_each_refusal_is_one_line_with_exit_status_2(case, tmp_path, capsys):
    kind, *expected = ERRORS[case]
    pairs = {"train": _pairs(4, [1, 2], seed=37), "val": _pairs(4, [1, 2], seed=38)}
    root = tmp_path / "data"
    options = []
    if kind == "lossy":
        write_images_and_masks(root, pairs, mask_suffix=".jpg", save_mask=_save_jpeg)
    elif kind == "drop":
        write_images_and_masks(root, pairs)
        for path in (root / "masks" / "val").iterdir():  # every validation mask a size off
            Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(path)
        options = ["--drop_invalid"]
    elif kind == "nothing":
        (root / "notes").mkdir(parents=True)
        (root / "notes" / "readme.txt").write_text("no images here")
    else:
        write_images_and_masks(root, pairs)
        if kind == "orphan":
            next((root / "masks" / "train").iterdir()).unlink()
        options = {"map-and-reduce": ["--label_map", '{"1": 0}', "--reduce_labels"],
                   "table-and-map": ["--mask_colors", str(tmp_path / "c.csv"), "--label_map", '{"1": 0}']}.get(kind, [])
    write_id2label(root, ["background", "cat", "dog"])
    line = _one_error_line(*_run(["--dataset_name", str(root), *options], tmp_path, capsys)[:2])
    for words in expected:
        assert words in line, line


def test_predict_on_a_dataset_folder_segments_the_photos_and_skips_their_masks(camvid, tmp_path, capsys):
    """x.jpg beside x.png (its mask): one prediction, of the photo; mask folders and _mask files skipped;
    two photos of one name both written."""
    status, stderr, _, output = _run(["--dataset_name", str(camvid)], tmp_path, capsys)
    assert status == 0, stderr[-3000:]
    photos = tmp_path / "photos"
    (photos / "masks").mkdir(parents=True)
    (image, mask), (other, _) = _pairs(2, [1, 2], seed=39)
    Image.fromarray(image).save(photos / "x.jpg")
    Image.fromarray(mask).save(photos / "x.png")  # one channel, beside the photo x.jpg: its mask
    Image.fromarray(mask).save(photos / "y_mask.png")
    Image.fromarray(mask).save(photos / "masks" / "z.png")
    Image.fromarray(other).save(photos / "w.jpg")
    Image.fromarray(image).save(photos / "w.png")  # a photo too: both are written, neither over the other
    status, stderr, stdout = run_script_in_process(REPO_ROOT / "scripts" / "predict.py", [
        "--model", str(output), "--input", str(photos), "--output_dir", str(tmp_path / "predictions")], capsys)
    assert status == 0, stderr[-2000:]
    written = sorted(path.name for path in (tmp_path / "predictions").rglob("*_mask.png"))
    assert written == ["w_jpg_mask.png", "w_png_mask.png", "x_mask.png"]
    assert "3 image(s) segmented" in stdout and "3 mask file(s) skipped" in stdout
    from transformers import AutoModelForSemanticSegmentation

    from hf_segcompare.evaluation.inference import segment

    model = AutoModelForSemanticSegmentation.from_pretrained(output)
    predicted = np.array(Image.open(tmp_path / "predictions" / "x_mask.png"))
    assert np.array_equal(predicted, segment(model, Image.open(photos / "x.jpg")))


@pytest.mark.fast
def test_each_mask_mode_is_read_as_its_source_declares():
    """Palette PNGs by index, 1-bit and opaque greyscale+alpha as values; RGB only through a table or
    VOC's colour map; transparency, JPEG and floating point refused, each by kind."""
    import io

    from hf_segcompare.data.mask_reading import MaskReading

    values = np.array([[0, 1], [2, 255]], dtype=np.uint8)

    def opened(image, format="PNG", **save):
        buffer = io.BytesIO()
        image.save(buffer, format=format, **save)
        loaded = Image.open(io.BytesIO(buffer.getvalue()))
        loaded.load()
        return loaded

    palette = Image.fromarray(values, mode="L").convert("P")
    palette.putpalette([channel for colour in voc_palette() for channel in colour])
    index, voc = MaskReading.index(), MaskReading.voc_palette()
    assert np.array_equal(index.pixels(opened(palette), "p.png", 255)[0], values)
    assert np.array_equal(index.pixels(opened(Image.fromarray(values > 0)), "b.png", 255)[0], values > 0)
    opaque = Image.merge("LA", (Image.fromarray(values), Image.new("L", (2, 2), 255)))
    assert np.array_equal(index.pixels(opened(opaque), "la.png", 255)[0], values)
    holed = Image.merge("LA", (Image.fromarray(values), Image.fromarray(np.array([[255, 0], [255, 255]], np.uint8))))
    assert index.pixels(opened(holed), "holed.png", 255)[1].kind == "unreadable_pixels"
    rgb = opened(palette.convert("RGB"))
    assert index.pixels(rgb, "rgb.png", 255)[1].kind == "rgb_without_table"
    assert np.array_equal(voc.pixels(rgb, "rgb.png", 255)[0], values)  # VOC-format colour masks
    jpeg = opened(Image.fromarray(values), format="JPEG")
    pixels, problem = index.pixels(jpeg, "m.jpg", 255)
    assert pixels is None and problem.kind == "lossy" and "a JPEG mask, lossy (" in problem.message
    floating = opened(Image.fromarray(values.astype(np.float32)), format="TIFF")
    assert index.pixels(floating, "f.tif", 255)[1].kind == "unreadable_pixels"

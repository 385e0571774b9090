"""Model cards, the comparison page, and inference on a saved model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from hf_segcompare import segment
from hf_segcompare.config.arguments import parse_args
from hf_segcompare.errors import UsageError
from hf_segcompare.models import create_model
from hf_segcompare.pipeline.run import run
from hf_segcompare.report.page import conclusion, read_per_image, write_comparison
from hf_segcompare.report.results import RunResults

from .conftest import REPO_ROOT, run_script_in_process

TINY_MODELS = ["segformer-tiny", "unet-tiny", "deeplabv3plus-tiny", "vit-tiny"]


@pytest.fixture(scope="module")
def runs(voc_tree, tmp_path_factory):
    """Short in-process runs of each tiny architecture, with evaluations at steps 2 and 4."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for model in TINY_MODELS:
        folders[model] = root / model
        run(
            *parse_args(
                [
                    "--model", model, "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
                    str(voc_tree), "--output_dir", str(folders[model]), "--max_steps", "4", "--eval_strategy",
                    "steps", "--eval_steps", "2", "--logging_steps", "1", "--save_strategy", "no", "--cache_dir",
                    str(root / "cache"),
                ]
            )
        )
    return folders


def test_the_card_carries_the_runs_own_numbers(runs):
    folder = runs["segformer-tiny"]
    results = json.loads((folder / "results.json").read_text())
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-segmentation" and card.data.library_name == "transformers"
    by_type = {r.metric_type: r for r in card.data.eval_results}
    assert by_type["mean_iou"].metric_value == results["final_eval"]["eval_mean_iou"]
    assert by_type["mean_accuracy"].metric_value == results["final_eval"]["eval_mean_accuracy"]
    assert by_type["mean_iou"].metric_args == {"num_labels": 21, "ignore_index": 255}
    text = (folder / "README.md").read_text()
    assert f"| parameters | {results['parameters']:,} |" in text
    assert f"| mean IoU | {results['final_eval']['eval_mean_iou']:.4f} |" in text
    assert "| aeroplane |" in text and "| tvmonitor |" in text
    for figure in ("learning_curve.png", "sample_predictions.png"):
        assert (folder / figure).stat().st_size > 1000 and f"]({figure})" in text
    # The recipe, what was given on top of it, and the optimizer's groups as trained.
    assert f"- Recipe `demo`: {results['recipe']['source']}." in text and "`--max_steps 4`" in text
    for group in results["recipe"]["param_groups"]:
        assert f"{group['name']}: {group['parameters']:,} parameters at learning rate {group['initial_lr']}" in text


def test_the_cards_snippet_runs_against_the_saved_model(runs, tmp_path):
    folder = runs["unet-tiny"]
    snippet = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)
    image_path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(image_path)
    assert "path/to/image.jpg" in snippet and str(folder) in snippet
    completed = subprocess.run([sys.executable, "-c", snippet.replace("path/to/image.jpg", str(image_path))],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    names = eval(completed.stdout.strip().splitlines()[-1])  # the snippet prints a list of class names
    assert names and set(names) <= set(json.loads((folder / "config.json").read_text())["id2label"].values())


@pytest.mark.parametrize("name", ["unet-tiny", "deeplabv3plus-tiny", "vit-tiny", "segformer-tiny"])
def test_segment_returns_one_class_per_pixel_at_the_images_size(name):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    mask = segment(create_model(name), image)
    assert mask.shape == (37, 53) and mask.dtype == np.uint8 and mask.max() < 21


def test_comparison_page_tables_figures_and_computed_conclusion(runs, tmp_path):
    page = write_comparison([runs["segformer-tiny"], runs["unet-tiny"] / "results.json"], tmp_path / "cmp")
    text = page.read_text()
    for name in ("miou_per_epoch.png", "miou_vs_parameters.png", "miou_vs_train_time.png", "miou_vs_flops.png",
                 "miou_vs_inference_speed.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 1000 and name in text
    results = {m: json.loads((runs[m] / "results.json").read_text()) for m in ("segformer-tiny", "unet-tiny")}
    for model, r in results.items():
        assert f"| {model} | {r['family']} | random weights | demo | {r['train']['epochs']:.1f} epochs, 4 steps" in text
        assert f"| {model} | {r['parameters']:,} |" in text
        assert f"| {r['inference']['flops_per_image'] / 1e9:.3g} | {r['inference']['latency_ms_batch_1']:.1f} |" in text
        assert f"`{runs[model]}" in text  # the page names the records it was made from
        card = (runs[model] / "README.md").read_text()
        assert f"| FLOPs per 64×64 image | {r['inference']['flops_per_image'] / 1e9:.3g} G" in card
    lines = conclusion([RunResults.read(runs[m] / "results.json") for m in ("segformer-tiny", "unet-tiny")],
                       read_per_image([runs[m] for m in ("segformer-tiny", "unet-tiny")]))
    assert all(line in text for line in lines)
    t, c = results["segformer-tiny"], results["unet-tiny"]
    assert f"with {t['parameters'] / c['parameters']:.2f}× the parameters" in lines[2]
    # Without the per-image counts (an older record) no difference is claimed.
    unpaired = conclusion([RunResults.read(runs[m] / "results.json") for m in ("segformer-tiny", "unet-tiny")])
    assert "no claim: a run has no per-image counts" in unpaired[1]
    # Per-class IoU across the models, in class order.
    per_class = text[text.index("## Per-class IoU"):]
    assert "| class | segformer-tiny | unet-tiny |" in per_class
    def four(value):  # an absent class scores NaN, written null, shown n/a
        return "n/a" if value is None else f"{value:.4f}"

    for name in ("background", "aeroplane", "tvmonitor"):
        key = f"eval_iou_{name}"
        assert f"| {name} | {four(t['final_eval'][key])} | {four(c['final_eval'][key])} |" in per_class
    assert "differ in more than the architecture" not in text  # same recipe, budget, start, device


def test_the_scatter_labels_stay_inside_the_frame(runs):
    from hf_segcompare.report.figures import plot_miou_against

    records = [RunResults.read(runs[model] / "results.json") for model in TINY_MODELS]
    for record, name in zip(records, ("a-long-model-name-number-one", "another-rather-long-model-name", "x", "y")):
        record.model = name
    too_long = RunResults.read(runs["unet-tiny"] / "results.json")
    too_long.model = "a-model-name-longer-than-either-half-of-the-plot-" * 2  # only a legend holds it
    for value in (lambda r: r.parameters, lambda r: r.inference["flops_per_image"]):
        for chosen in (records, records[:1], records[:2], [records[0], too_long]):
            figure = plot_miou_against(chosen, value, "x")
            figure.canvas.draw()
            axis = figure.axes[0]
            frame = axis.get_window_extent()
            # Each point is named: beside it, or in the legend when a name cannot fit beside it.
            legend = axis.get_legend()
            names = [text.get_text().replace("\n", "") for text in (legend.get_texts() if legend else axis.texts)]
            assert sorted(names) == sorted(record.model for record in chosen)
            if legend:
                box = legend.get_window_extent()
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            for text in axis.texts:
                box = text.get_window_extent()
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                    text.get_text()
            figure.clf()


def test_the_page_warns_when_runs_had_different_budgets(runs, tmp_path):
    longer = tmp_path / "longer"
    shutil.copytree(runs["unet-tiny"], longer)
    record = json.loads((longer / "results.json").read_text())
    record["train"].update(steps=40, epochs=20.0)
    (longer / "results.json").write_text(json.dumps(record))
    text = write_comparison([runs["segformer-tiny"], longer], tmp_path / "cmp").read_text()
    warning = text[text.index("**Warning"):text.index("| model |")]
    assert "different training budgets" in warning and "unet-tiny: 20.0 epochs, 40 steps" in warning
    assert "different recipes" not in warning
    assert "These runs differ in budget" in text


def test_compare_refuses_a_folder_without_results_and_mixed_datasets(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=f"{empty} has no results.json"):
        write_comparison([runs["unet-tiny"], empty], tmp_path / "out")
    other = tmp_path / "other"
    shutil.copytree(runs["unet-tiny"], other)
    results = json.loads((other / "results.json").read_text())
    results["dataset"]["name"] = "synthetic"
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(UsageError, match=f"{other}/results.json was evaluated on dataset 'synthetic'"):
        write_comparison([runs["segformer-tiny"], other], tmp_path / "out")
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare.py"), str(empty)],
                               capture_output=True, text=True)
    assert completed.returncode == 2 and "has no results.json" in completed.stderr


def test_eval_results_file_for_a_hub_dataset_only(runs, tmp_path):
    import yaml

    from hf_segcompare.report.card import write_eval_results

    results = RunResults.read(runs["unet-tiny"] / "results.json")
    assert write_eval_results(results, tmp_path) is None  # a local VOC folder names no Hub benchmark
    results.dataset["name"] = "someone/voc-seg"
    path = write_eval_results(results, tmp_path)
    entries = yaml.safe_load(path.read_text())
    assert entries[0]["dataset"]["id"] == "someone/voc-seg"
    assert entries[0]["value"] == results.mean_iou and "ignore_index=255" in entries[0]["notes"]


@pytest.mark.parametrize("model", TINY_MODELS)
def test_pipeline_runs_on_a_saved_run(runs, model):
    from transformers import pipeline

    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (45, 61, 3), dtype=np.uint8))
    segments = pipeline("image-segmentation", model=str(runs[model]))(image)
    class_names = set(json.loads((runs[model] / "config.json").read_text())["id2label"].values())
    assert segments and {s["label"] for s in segments} <= class_names
    assert all(s["mask"].size == image.size for s in segments)


def _predict(argv, capsys):
    """scripts/predict.py's main() in this process: exit status, stderr, stdout."""
    return run_script_in_process(REPO_ROOT / "scripts" / "predict.py", argv, capsys)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_predict_script_writes_what_segment_predicts(runs, model, tmp_path, capsys):
    from transformers import AutoModelForSemanticSegmentation

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for name, size in (("a.jpg", (40, 30)), ("b.png", (33, 47))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    status, stderr, stdout = _predict(["--model", str(runs[model]), "--input", str(photos),
                                       "--output_dir", str(tmp_path / "out")], capsys)
    assert status == 0, stderr[-2000:]
    assert "2 image(s) segmented" in stdout
    trained = AutoModelForSemanticSegmentation.from_pretrained(runs[model])
    for stem, size in (("a", (40, 30)), ("b", (33, 47))):
        mask = Image.open(tmp_path / "out" / f"{stem}_mask.png")
        assert mask.mode == "P" and mask.size == size
        image = Image.open(photos / f"{stem}{'.jpg' if stem == 'a' else '.png'}")
        assert np.array_equal(np.array(mask), segment(trained, image))
        assert Image.open(tmp_path / "out" / f"{stem}_overlay.jpg").size == size
    if model == "segformer-tiny":
        status, stderr, _ = _predict(["--model", str(runs[model]), "--input", str(tmp_path / "nothing")], capsys)
        assert status == 2 and "nothing is not an image" in stderr


def test_the_page_claims_a_difference_only_when_its_paired_interval_excludes_zero(runs, tmp_path):
    """A copy of a run under another name (identical predictions) is not distinguishable, with a
    zero-width interval; the difference between two models follows their paired interval."""
    from hf_segcompare.evaluation.intervals import paired_difference
    from hf_segcompare.evaluation.per_image import PerImageCounts

    twin = tmp_path / "twin"
    shutil.copytree(runs["unet-tiny"], twin)
    record = json.loads((twin / "results.json").read_text())
    record["model"] = "unet-twin"
    (twin / "results.json").write_text(json.dumps(record))
    text = write_comparison([runs["unet-tiny"], twin], tmp_path / "cmp").read_text()
    assert "| unet-tiny − unet-twin | +0.0000 | 0.0000 – 0.0000 | paired percentile bootstrap" in text \
        or "| unet-twin − unet-tiny | +0.0000 | 0.0000 – 0.0000 | paired percentile bootstrap" in text
    assert "are not distinguishable on this validation set" in text and "is better than" not in text
    assert "Each model here was trained once" in text

    text = write_comparison([runs["segformer-tiny"], runs["deeplabv3plus-tiny"]], tmp_path / "cmp2").read_text()
    counts = {m: PerImageCounts.load(runs[m] / "per_image.npz") for m in ("segformer-tiny", "deeplabv3plus-tiny")}
    results = {m: json.loads((runs[m] / "results.json").read_text()) for m in counts}
    higher, lower = sorted(counts, key=lambda m: -results[m]["final_eval"]["eval_mean_iou"])
    difference = paired_difference([counts[higher]], [counts[lower]])
    low, high = difference.interval
    assert f"| {higher} − {lower} | {difference.difference:+.4f} | {low:.4f} – {high:.4f} |" in text
    claim = (f"{higher} is better than {lower} by {difference.difference:.4f} (95 % CI [{low:.4f}, {high:.4f}])."
             if low > 0 else f"{higher} and {lower} are not distinguishable on this validation set")
    assert claim in text
    for model, record in results.items():  # each run's own interval, boundary IoU and ECE in the table
        interval = record["bootstrap"]["interval"]
        assert f"| {interval[0]:.4f} – {interval[1]:.4f} | {record['final_eval']['eval_boundary_iou']:.4f} | " \
               f"{record['final_eval']['eval_ece']:.4f} |" in text


def test_runs_on_different_validation_images_are_not_paired_and_nothing_is_claimed(runs, tmp_path):
    from hf_segcompare.evaluation.per_image import PerImageCounts

    other = tmp_path / "other"
    shutil.copytree(runs["unet-tiny"], other)
    counts = PerImageCounts.load(other / "per_image.npz")
    counts.ids = [f"elsewhere-{image_id}" for image_id in counts.ids]
    counts.save(other / "per_image.npz")
    record = json.loads((other / "results.json").read_text())
    record["model"] = "unet-elsewhere"
    (other / "results.json").write_text(json.dumps(record))
    text = write_comparison([runs["segformer-tiny"], other], tmp_path / "cmp").read_text()
    assert "they were scored on different validation images, so their difference is not paired" in text
    claims = text[text.index("## What the numbers say"):]
    assert "is better than" not in text and "are not distinguishable" not in claims
    assert "no claim: they were scored on different validation images" in claims


def test_the_card_shows_the_interval_boundary_iou_calibration_and_the_per_image_file(runs):
    from hf_segcompare.evaluation.per_image import PerImageCounts

    folder = runs["deeplabv3plus-tiny"]
    record = json.loads((folder / "results.json").read_text())
    text = (folder / "README.md").read_text()
    low, high = record["bootstrap"]["interval"]
    assert record["bootstrap"]["samples"] == 1000 and record["bootstrap"]["per_image_file"] == "per_image.npz"
    assert low <= record["final_eval"]["eval_mean_iou"] <= high
    assert f"| mean IoU, 95 % interval | {low:.4f} – {high:.4f} |" in text
    assert f"| boundary IoU | {record['final_eval']['eval_boundary_iou']:.4f} |" in text
    assert f"| expected calibration error | {record['final_eval']['eval_ece']:.4f} |" in text
    assert record["calibration"]["ece"] == pytest.approx(record["final_eval"]["eval_ece"])
    assert (folder / "reliability_diagram.png").stat().st_size > 1000 and "](reliability_diagram.png)" in text
    counts = PerImageCounts.load(folder / "per_image.npz")
    assert len(counts) == record["dataset"]["validation_samples"] == record["bootstrap"]["images"]
    assert counts.mean_iou() == pytest.approx(record["final_eval"]["eval_mean_iou"], abs=1e-12)


def _copy_run(runs, tmp_path, name="copy", model="unet-tiny"):
    folder = tmp_path / name
    shutil.copytree(runs[model], folder)
    return folder, json.loads((folder / "results.json").read_text())


def _compare_cli(argv, capsys):
    status, stderr, _ = run_script_in_process(REPO_ROOT / "scripts" / "compare.py", [*map(str, argv)], capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    return status, lines[0]


@pytest.mark.parametrize(("where", "value"), [(("final_eval", "eval_mean_iou"), 0.99),
                                              (("final_eval", "eval_iou_background"), 0.5),
                                              (("bootstrap", "interval"), [0.4, 0.6])])
def test_the_page_refuses_a_record_that_its_own_counts_contradict(where, value, runs, tmp_path, capsys):
    """An edited figure beside its own interval (0.99 shown beside 0.0000 - 0.0003) is refused, one line."""
    folder, record = _copy_run(runs, tmp_path, model="segformer-tiny")
    record[where[0]][where[1]] = value
    (folder / "results.json").write_text(json.dumps(record))
    status, line = _compare_cli([runs["unet-tiny"], folder, "--output_dir", tmp_path / "page"], capsys)
    assert status == 2 and f"{folder}/results.json: its {where[0]}" in line
    assert "but its per-image counts (per_image.npz) give" in line and "the record was edited" in line
    assert not (tmp_path / "page" / "comparison.md").exists()


def test_the_page_shows_the_figures_its_counts_give(runs, tmp_path):
    """A figure off in its last bits (within the tolerance) is replaced by what the counts compute:
    every figure the page shows comes from per_image.npz when the run has one."""
    from hf_segcompare.evaluation.metrics import scores_from_counts
    from hf_segcompare.evaluation.per_image import PerImageCounts
    from hf_segcompare.report.page import recomputed_from_counts

    folder, record = _copy_run(runs, tmp_path)
    counts = PerImageCounts.load(folder / "per_image.npz")
    computed = scores_from_counts(counts, record["dataset"]["class_names"])
    record["final_eval"]["eval_mean_accuracy"] += 4e-10
    (folder / "results.json").write_text(json.dumps(record))
    shown = recomputed_from_counts(RunResults.read(folder / "results.json"), counts, folder / "results.json")
    assert shown.final_eval["eval_mean_accuracy"] == computed["mean_accuracy"] != record["final_eval"][
        "eval_mean_accuracy"]
    assert all(shown.final_eval[f"eval_{name}"] == value or np.isnan(value) for name, value in computed.items())
    assert shown.bootstrap["interval"] == record["bootstrap"]["interval"]


def test_one_run_given_twice_is_refused_not_counted_as_two_seeds(runs, tmp_path, capsys):
    folder = runs["unet-tiny"]
    status, line = _compare_cli([folder, folder / "results.json", "--output_dir", tmp_path / "page"], capsys)
    assert status == 2 and f"{folder} and" in line and "are the same run" in line and "pass each run's folder once" \
        in line
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(UsageError, match="are the same run"):
        write_comparison([folder, link], tmp_path / "page")


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "pickled"])
def test_damaged_per_image_counts_are_one_line_naming_the_file(damage, runs, tmp_path, capsys):
    folder, _ = _copy_run(runs, tmp_path)
    counts_file = folder / "per_image.npz"
    if damage == "truncated":
        counts_file.write_bytes(counts_file.read_bytes()[:300])
    elif damage == "random bytes":
        counts_file.write_bytes(np.random.default_rng(0).bytes(2000))
    else:  # an archive of object arrays: loading them would unpickle
        np.savez(counts_file, ids=np.array(["a", None], dtype=object), class_names=np.array(["x"]))
    status, line = _compare_cli([runs["segformer-tiny"], folder, "--output_dir", tmp_path / "page"], capsys)
    assert status == 2 and f"{counts_file} cannot be read as per-image counts" in line and "Restore it" in line


@pytest.mark.parametrize(("field", "value", "said"), [
    ("final_eval", "0.99", 'final_eval is "0.99", where a run writes a dict or null'),
    ("final_eval", {"eval_mean_iou": "high"}, 'final_eval.eval_mean_iou is "high", where a run writes a number'),
    ("parameters", 1.5e6, "parameters is 1500000.0, where a run writes a int"),
    ("evaluations", {}, "evaluations is {}, where a run writes a list"),
])
def test_a_record_with_a_field_of_the_wrong_kind_is_one_line(field, value, said, runs, tmp_path, capsys):
    folder, record = _copy_run(runs, tmp_path)
    record[field] = value
    (folder / "results.json").write_text(json.dumps(record))
    status, line = _compare_cli([runs["segformer-tiny"], folder, "--output_dir", tmp_path / "page"], capsys)
    assert status == 2 and f"{folder}/results.json: {said}" in line and "edited or damaged" in line
    (folder / "results.json").write_text('{"model": "unet-tiny", ')
    status, line = _compare_cli([folder], capsys)
    assert status == 2 and "is not a run record (not JSON" in line

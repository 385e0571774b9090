"""Evaluation protocols: sliding windows, multi-scale and flip test-time augmentation, and the
short-side test resize, checked against direct computations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_segcompare.data.transforms import shrunk_size
from hf_segcompare.errors import UsageError
from hf_segcompare.evaluation.protocol import EvalProtocol, image_logits, predict_probabilities, short_side_size
from hf_segcompare.models import create_model

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

WHOLE = EvalProtocol()


class Pointwise(torch.nn.Module):
    """A 1×1 convolution: each pixel's logits depend on that pixel only, so windows, mirroring and
    padding cannot change them."""

    def __init__(self, num_labels=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, num_labels, 1)

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.conv(pixel_values))


class LeftToRight(Pointwise):
    """Pointwise plus a ramp across the width: a mirrored image gives other logits."""

    def forward(self, pixel_values):
        ramp = torch.linspace(-3, 3, pixel_values.shape[-1]).reshape(1, 1, 1, -1)
        return SimpleNamespace(logits=self.conv(pixel_values) + ramp * torch.arange(5.0).reshape(1, -1, 1, 1))


def _image(height, width, seed=0):
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def segformer():
    torch.manual_seed(1)
    return create_model("segformer-tiny").eval()


def test_slide_and_whole_agree_where_the_image_fits_the_window(segformer):
    image = _image(50, 70)
    whole = predict_probabilities(segformer, image, WHOLE)
    slide = predict_probabilities(segformer, image, EvalProtocol(mode="slide", crop=96, stride=64))
    assert slide.shape == whole.shape == (1, 21, 50, 70)
    assert torch.equal(slide, whole)


def test_slide_windows_cover_every_pixel_once_averaged():
    """With windows smaller than the image (overlapping, the last ones flush with the edges), a
    pointwise model's probabilities are the whole image's."""
    image = _image(100, 130)
    model = Pointwise()
    whole = predict_probabilities(model, image, WHOLE)
    slide = predict_probabilities(model, image, EvalProtocol(mode="slide", crop=64, stride=40))
    assert torch.allclose(slide, whole, atol=1e-6)


def test_flip_of_a_mirror_symmetric_model_is_a_no_op_and_otherwise_averages_the_mirrored_prediction():
    image = _image(40, 56)
    flipped = EvalProtocol(flip=True)
    symmetric = Pointwise()
    assert torch.allclose(predict_probabilities(symmetric, image, flipped),
                          predict_probabilities(symmetric, image, WHOLE), atol=1e-6)
    # A symmetric input through any model: the averaged prediction is itself symmetric.
    mirror_image = torch.cat([image, image.flip(-1)], dim=-1)
    asymmetric = LeftToRight()
    result = predict_probabilities(asymmetric, mirror_image, flipped)
    assert torch.allclose(result, result.flip(-1), atol=1e-6)
    # And it is the mean of the plain prediction and the un-mirrored prediction of the mirror
    # image (at a size the padding to multiples of 32 leaves alone).
    image = _image(32, 64)
    plain = asymmetric(image).logits.softmax(1)
    mirrored = asymmetric(image.flip(-1)).logits.softmax(1).flip(-1)
    assert torch.allclose(predict_probabilities(asymmetric, image, flipped), (plain + mirrored) / 2, atol=1e-6)


def test_scales_average_probabilities_at_the_native_resolution(segformer):
    """mmsegmentation's SegTTAModel: each scale's logits (SegFormer's, unpadded) resized to the image, then
    their softmax probabilities averaged."""
    image = _image(48, 80)
    result = predict_probabilities(segformer, image, EvalProtocol(scales=(0.5, 1.0, 1.5)))
    assert result.shape == (1, 21, 48, 80)
    expected = 0
    for size in ((24, 40), (48, 80), (72, 120)):
        scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        padded = F.pad(scaled, (0, 0, 0, max(0, 32 - size[0])))  # SegFormer's smallest input: 32 px a side
        with torch.no_grad():
            logits = F.interpolate(segformer(pixel_values=padded).logits, size=padded.shape[-2:], mode="bilinear",
                                   align_corners=False)[..., : size[0], : size[1]]
        expected = expected + F.interpolate(logits, size=(48, 80), mode="bilinear", align_corners=False).softmax(1)
    assert torch.allclose(result, expected / 3, atol=1e-5)
    assert torch.allclose(result.sum(1), torch.ones(1, 48, 80), atol=1e-5)  # still probabilities


def test_the_short_side_resize_is_mmsegmentations():
    assert short_side_size(375, 500, 512) == (512, 683)  # the example: 500×375 runs at 683×512
    assert short_side_size(500, 333, 512) == (769, 512)
    assert short_side_size(100, 1000, 512) == (205, 2048)  # the long side is held at 2048


def test_protocol_names_and_refusals():
    assert EvalProtocol().plain and EvalProtocol().name() == "single-scale"
    assert EvalProtocol(scales=(0.5, 1.0, 1.5), flip=True).name() == "multi-scale (0.5, 1, 1.5) + flip"
    assert EvalProtocol(flip=True).name() == "flip" and EvalProtocol(scales=(0.75,)).name() == "scale 0.75"
    assert not EvalProtocol(resize="short_side").plain and not EvalProtocol(resize="short_side").augmented
    with pytest.raises(UsageError, match="--eval_crop 500"):
        EvalProtocol(mode="slide", crop=500, stride=300)
    assert EvalProtocol(mode="slide").with_defaults(512, None).stride == 341  # mmsegmentation's
    with pytest.raises(UsageError, match="--eval_stride 600"):
        EvalProtocol(mode="slide", crop=512, stride=600)
    with pytest.raises(UsageError, match="--eval_mode slide"):
        EvalProtocol(crop=512)
    with pytest.raises(UsageError, match="--eval_scales"):
        EvalProtocol(scales=(0.0,))


# ----------------------------------------------------------------------------- through the trainer


def _trainer(voc_tree, tmp_path, protocol=None, model="segformer-tiny", eval_batch=3):
    from hf_segcompare.config.arguments import from_recipe
    from hf_segcompare.data import load_voc
    from hf_segcompare.engine.trainer import SegTrainer

    torch.manual_seed(0)
    dataset = load_voc(voc_tree, cache_dir=tmp_path / "arrow")
    args = from_recipe(model, "demo", output_dir=str(tmp_path / "out"),
                       per_device_eval_batch_size=eval_batch, use_cpu=True)
    return SegTrainer(create_model(model).eval(), args, None, dataset["validation"], eval_size=64,
                      eval_protocol=protocol)


def test_the_protocol_path_scores_mmsegmentations_steps_written_out(voc_tree, tmp_path):
    """Sliding windows as large as the eval size go through the protocol path; on images that fit they
    must score what mmsegmentation's steps give written out by hand: the image normalised on 0-255
    values, not padded (SegFormer takes any size), logits resized to the image, argmax; every image's
    areas equal, boundary regions included."""
    from torchvision.transforms.v2 import functional as TF

    from hf_segcompare.data.images import to_rgb
    from hf_segcompare.evaluation.boundary import boundary_counts
    from hf_segcompare.evaluation.protocol import normalize_pixels
    from hf_segcompare.models import model_normalization

    slide = _trainer(voc_tree, tmp_path, EvalProtocol(mode="slide", crop=64, stride=32))
    scores = slide.evaluate()
    assert slide.eval_protocol.mode == "slide" and not slide.eval_protocol.plain
    normalization = model_normalization(slide.model)
    counts = slide.final_counts()
    assert len(counts) == 7
    predictions, references = [], []
    for sample in slide.evaluation_set.raw:
        pixels = normalize_pixels(TF.pil_to_tensor(to_rgb(sample["image"])), normalization.mean, normalization.std)
        with torch.no_grad():
            logits = F.interpolate(slide.model(pixel_values=pixels[None]).logits, size=pixels.shape[-2:],
                                   mode="bilinear", align_corners=False)
        prediction, reference = logits.argmax(1)[0], torch.as_tensor(np.asarray(sample["label"]), dtype=torch.int64)
        row = counts.ids.index(str(sample["id"]))
        scored = reference != 255
        for name, value in (("intersection", (prediction == reference) & scored), ("predicted_area", scored),
                            ("label_area", scored)):
            kept = (prediction if name == "predicted_area" else reference)[value]
            expected = torch.bincount(kept[kept < 21], minlength=21).numpy()
            assert np.array_equal(getattr(counts, name)[row], expected), (name, sample["id"])
        assert np.array_equal(counts.boundary[row], boundary_counts(prediction, reference, 21, 255).numpy())
        predictions.append(prediction.numpy())
        references.append(reference.numpy())
    from hf_segcompare.evaluation.metrics import mean_iou

    assert scores["eval_mean_iou"] == pytest.approx(mean_iou(predictions, references, 21, 255)["mean_iou"], abs=1e-12)


@pytest.fixture(scope="module")
def two_shape_tree(tmp_path_factory):
    """Eleven validation images of two shapes (48x72 and 72x48, mixed), so protocol batches
    hold images of one size, and of two where the shapes meet."""
    from hf_segcompare.data import generate_synthetic_voc

    root = tmp_path_factory.mktemp("two-shapes")
    generate_synthetic_voc(root, num_train=1, num_val=11, min_size=48, max_size=48, longer_side=72, seed=5)
    return root


@pytest.mark.parametrize("protocol", [
    EvalProtocol(resize="short_side", short_side=64),
    EvalProtocol(mode="slide", crop=32, stride=24),
    EvalProtocol(scales=(0.5, 1.0), flip=True),
], ids=["mmseg", "slide", "multi-scale-flip"])
def test_batched_protocols_score_what_one_image_at_a_time_scores(two_shape_tree, tmp_path, protocol):
    """Under each protocol, eval batch 4 gives eval batch 1's confusion matrix and per-image
    counts exactly, in fewer forward calls: images of one run size run together (sliding windows
    several at a time), each padded as it would be alone."""
    runs = {}
    for batch in (1, 4):
        trainer = _trainer(two_shape_tree, tmp_path / str(batch), protocol, eval_batch=batch)
        # What is tested is the toolkit's grouping and padding. transformers 5.25 runs SegFormer's attention
        # through SDPA, whose CPU kernels round a batch of 4 unlike a batch of 1 in the last bits (one pixel
        # of 33,471 moved under the mmseg resize): eager attention computes each image alike in any batch.
        trainer.model.set_attn_implementation("eager")
        calls = []
        trainer.model.register_forward_hook(lambda module, args, output: calls.append(len(args[0]) if args else 1))
        if protocol.augmented:
            trainer.evaluate_augmented()
            prefix = "eval_tta"
        else:
            trainer.evaluate()
            prefix = "eval"
        runs[batch] = (trainer.confusion_matrices[prefix], trainer.final_counts(prefix), len(calls))
    (single_matrix, single_counts, single_calls), (batched_matrix, batched_counts, batched_calls) = runs[1], runs[4]
    assert single_matrix.sum() > 0 and (batched_matrix == single_matrix).all()
    assert batched_counts.ids == single_counts.ids and len(batched_counts) == 11
    for name in ("intersection", "predicted_area", "label_area", "boundary"):
        assert np.array_equal(getattr(batched_counts, name), getattr(single_counts, name)), name
    assert batched_calls < single_calls / 2, (batched_calls, single_calls)


@pytest.mark.parametrize("protocol", [EvalProtocol(resize="short_side", short_side=64),
                                      EvalProtocol(mode="slide", crop=32, stride=24)], ids=["mmseg", "slide"])
def test_protocols_score_image_by_image_as_the_whole_batch_would(two_shape_tree, tmp_path, protocol):
    """The toolkit's metrics score each image as its probabilities arrive (no batch of class maps padded
    to its largest annotation): the counts are those of the batch's log-probabilities scored together."""
    runs = {}
    for per_image in (True, False):
        trainer = _trainer(two_shape_tree, tmp_path / str(per_image), protocol, eval_batch=4)
        trainer.model.set_attn_implementation("eager")
        scored = []
        metrics = trainer.segmentation_metrics
        original, original_score = metrics.preprocess_logits, metrics.score_batch

        def recorded(logits, labels):
            scored.append(type(logits).__name__)
            return original(logits, labels)

        def recorded_score(logits, labels):
            scored.append("scored")
            return original_score(logits, labels)

        metrics.preprocess_logits = trainer.preprocess_logits_for_metrics = recorded
        metrics.score_batch = recorded_score
        if not per_image:  # prediction_step then returns the batch's log-probabilities, as for other metrics
            trainer.segmentation_metrics = None
        scores = trainer.evaluate()
        runs[per_image] = (scores, metrics.last_counts, scored)
    (scores, counts, calls), (batch_scores, batch_counts, batch_calls) = runs[True], runs[False]
    # image by image: scored in prediction_step, the counts handed to Trainer's hook; as a batch: the hook scores
    assert "ScoredCounts" in calls and "Tensor" not in calls and "scored" in calls
    assert set(batch_calls) == {"Tensor", "scored"}
    assert scores["eval_mean_iou"] == batch_scores["eval_mean_iou"] and len(counts["intersection"]) == 11
    for name in ("intersection", "predicted_area", "label_area", "boundary", "calibration"):
        assert np.allclose(counts[name], batch_counts[name], rtol=0, atol=1e-6), name


def test_an_annotation_larger_than_the_max_eval_side_is_scored_shrunk_to_it(voc_tree, tmp_path):
    """Evaluation memory follows --max_eval_side, not the largest image: no map larger is ever scored,
    and images are scored one at a time; every pixel of the shrunk annotations is scored once."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    protocol = EvalProtocol(resize="short_side", short_side=48, max_side=40)
    trainer = _trainer(voc_tree, tmp_path, protocol)
    sizes = [(image.height, image.width) for image in trainer.evaluation_set.raw["image"]]
    assert len(trainer.shrunk_for_scoring) == sum(max(size) > 40 for size in sizes) > 0
    shapes = []
    original = trainer.segmentation_metrics.score_batch

    def recorded(logits, labels):
        shapes.append(tuple(labels.shape))
        return original(logits, labels)

    trainer.segmentation_metrics.score_batch = recorded
    trainer.evaluate()
    scored = [shape for shape in shapes if len(shape) == 3 and shape[1] > 1]
    assert len(scored) == len(sizes) and all(shape[0] == 1 and max(shape[1:]) <= 40 for shape in scored)
    annotated = 0
    for sample in trainer.evaluation_set.raw:
        mask = torch.as_tensor(np.asarray(sample["label"]))[None]
        if max(mask.shape[1:]) > 40:
            mask = TF.resize(mask, list(shrunk_size(*mask.shape[1:], 40)), interpolation=InterpolationMode.NEAREST)
        annotated += int((mask != 255).sum())
    assert trainer.confusion_matrices["eval"].sum() == annotated


def test_the_max_eval_side_is_recorded_printed_and_on_the_card(voc_tree, tmp_path, capsys):
    from .conftest import run_seg_in_process

    output = tmp_path / "out"
    status, stderr, stdout = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output), "--max_steps", "1", "--per_device_train_batch_size", "4",
         "--protocol", "mmseg", "--max_eval_side", "48", "--save_strategy", "no"], capsys)
    assert status == 0, stderr[-3000:]
    record = json.loads((output / "results.json").read_text())
    evaluation = record["dataset"]["evaluation"]
    shrunk = evaluation["shrunk_images"]
    assert evaluation["max_side"] == 48 and 0 < shrunk < record["dataset"]["validation_samples"]
    assert f"scoring: {shrunk} validation image(s) larger than 48 px a side (" in stdout
    assert f"{shrunk} validation image(s) larger than 48 px a side scored shrunk to fit" in \
        (output / "README.md").read_text()
    status, stderr, _ = run_seg_in_process(["--model", "segformer-tiny", "--max_eval_side", "16", "--output_dir",
                                            str(tmp_path / "other")], capsys)
    assert status == 2 and "error: --max_eval_side 16: give at least 32 px" in stderr


def test_the_short_side_protocol_runs_resized_images_and_scores_native_annotations(voc_tree, tmp_path):
    trainer = _trainer(voc_tree, tmp_path, EvalProtocol(resize="short_side", short_side=96))
    sample = trainer.eval_dataset[0]
    raw = trainer.evaluation_set.raw[0]
    height, width = raw["image"].height, raw["image"].width
    assert tuple(sample["label_size"]) == (height, width) == tuple(sample["labels"].shape)
    assert tuple(sample["image_size"]) == short_side_size(height, width, 96) == tuple(sample["pixel_values"].shape[1:])
    scores = trainer.evaluate()
    # Every annotated pixel was scored once, at its own resolution.
    annotated = sum(int((np.asarray(sample["label"]) != 255).sum()) for sample in trainer.evaluation_set.raw)
    assert trainer.confusion_matrices["eval"].sum() == annotated and 0 <= scores["eval_mean_iou"] <= 1


def test_the_mmseg_training_jitter_draws_the_short_side():
    from torchvision import tv_tensors

    from hf_segcompare.data.transforms import train_transforms

    pipeline = train_transforms(64, (0, 0, 0), (1, 1, 1), short_side=64)
    rescale = pipeline.transforms[0]
    shorts = set()
    for seed in range(40):
        torch.manual_seed(seed)
        image = rescale(tv_tensors.Image(torch.zeros(3, 50, 100, dtype=torch.uint8)))
        assert abs(image.shape[2] / image.shape[1] - 2) < 0.05  # ratio kept
        shorts.add(image.shape[1])
    assert min(shorts) >= 32 and max(shorts) <= 128 and max(shorts) - min(shorts) > 48  # 0.5-2.0 x 64


def test_a_multi_scale_flip_run_writes_two_model_index_entries(voc_tree, tmp_path, capsys):
    import json

    import yaml

    from .conftest import run_seg_in_process

    output = tmp_path / "run"
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output), "--max_steps", "2", "--save_strategy", "no",
         "--eval_scales", "0.5", "1.0", "1.5", "--eval_flip"], capsys)
    assert status == 0, stderr[-2000:]
    results = json.loads((output / "results.json").read_text())
    augmented = results["augmented_eval"]
    assert augmented["protocol"]["scales"] == [0.5, 1.0, 1.5] and augmented["protocol"]["flip"] is True
    assert results["dataset"]["evaluation"]["name"] == "single-scale" and results["dataset"]["protocol"] == "native"
    card = (output / "README.md").read_text()
    model_index = yaml.safe_load(card.split("---")[1])["model-index"]
    assert [entry["name"] for entry in model_index] == [
        "segformer-tiny on Pascal VOC 2012", "segformer-tiny on Pascal VOC 2012, multi-scale (0.5, 1, 1.5) + flip"]
    values = [{m["type"]: m["value"] for m in entry["results"][0]["metrics"]}["mean_iou"] for entry in model_index]
    assert values == [results["final_eval"]["eval_mean_iou"], augmented["eval_mean_iou"]]
    assert f"| mean IoU, multi-scale (0.5, 1, 1.5) + flip | {augmented['eval_mean_iou']:.4f} |" in card
    # The single-scale confusion matrix, as counted, and its figure.
    matrix = results["confusion_matrix"]
    assert len(matrix) == 21 and all(len(row) == 21 for row in matrix)
    assert (output / "confusion_matrix.png").stat().st_size > 1000 and "](confusion_matrix.png)" in card


def test_the_published_recipe_runs_mmsegmentations_protocol_unless_told_otherwise(voc_tree, tmp_path, capsys):
    import json

    from hf_segcompare.config.arguments import parse_args
    from hf_segcompare.pipeline.resolve import resolve_run

    from .conftest import run_seg_in_process

    output = tmp_path / "published"
    status, stderr, _ = run_seg_in_process(
        ["--model", "deeplabv3plus-tiny", "--from_scratch", "--recipe", "published", "--dataset_name", "voc",
         "--data_dir", str(voc_tree), "--output_dir", str(output), "--max_steps", "1", "--crop_size", "64",
         "--per_device_train_batch_size", "4", "--save_strategy", "no"], capsys)
    assert status == 0, stderr[-2000:]
    results = json.loads((output / "results.json").read_text())
    assert results["dataset"]["protocol"] == "mmseg"
    assert results["dataset"]["evaluation"]["resize"] == "short_side" and results["dataset"]["evaluation"][
        "short_side"] == 64
    card = (output / "README.md").read_text()
    assert "random resize of the short side to 0.5–2.0 × 64 px" in card
    assert "each image resized to a short side of 64 px, ratio kept (mmsegmentation's Pascal VOC test resize)" in card
    assert "ratio kept, as mmsegmentation's Pascal VOC pipeline" in card
    # The saved processor resizes as this evaluation did, so predict() and the pipeline agree with it.
    assert json.loads((output / "preprocessor_config.json").read_text())["short_side"] == 64
    # Asked for, the native protocol; under another recipe, native by default.
    for argv, expected in ((["--recipe", "published", "--protocol", "native"], "native"),
                           (["--recipe", "quick-10"], "native"), (["--recipe", "published"], "mmseg")):
        model_args, data_args, training_args = parse_args(["--model", "unet", "--dataset_name", "voc", *argv])
        assert resolve_run(model_args, data_args, training_args).data_args.protocol == expected


def test_the_saved_processor_predicts_what_the_short_side_evaluation_scored(voc_tree, tmp_path):
    """A model evaluated under mmsegmentation's protocol: segment() and the pipeline resize as the
    evaluation did and answer at the image's own size, pixel for pixel the evaluation's argmax."""
    from transformers import pipeline

    from hf_segcompare.evaluation.inference import SegImageProcessor, segment

    trainer = _trainer(voc_tree, tmp_path, EvalProtocol(resize="short_side", short_side=96))
    model = trainer.model.eval()
    processor = SegImageProcessor.for_model(model, short_side=96)
    for index in range(3):
        sample = trainer.eval_dataset[index]
        height, width = sample["image_size"]
        expected = next(image_logits(model, sample["pixel_values"][None], trainer.eval_protocol,
                                     size=tuple(sample["label_size"])))[0].argmax(0)
        image = trainer.evaluation_set.raw[index]["image"]
        assert torch.equal(torch.from_numpy(segment(model, image, processor)).long(), expected)
    # Saved and loaded back, as the pipeline finds it beside the model.
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    assert SegImageProcessor.from_pretrained(tmp_path / "saved").short_side == 96
    masks = pipeline("image-segmentation", model=str(tmp_path / "saved"))(image)
    assert all(mask["mask"].size == image.size for mask in masks)

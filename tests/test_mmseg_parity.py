"""``--protocol mmseg`` against mmsegmentation itself: the same weights and images through mmsegmentation
1.2.2's own test pipeline, data preprocessor, whole or sliding-window inference, ``postprocess_result`` and
``IoUMetric`` (tests/mmseg_reference.py) and through the toolkit's evaluation (`SegTrainer.evaluate`), every
image's intersection, prediction and label areas per class equal. Images of VOC's, ADE20K's and Cityscapes'
shapes, at their datasets' test resizes (``Resize(scale=(2048, 512))``, ``(2048, 1024)``), for SegFormer (any
input size: never padded) and DeepLabV3+ (a multiple of 16: padded with 0 after normalisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_segcompare.evaluation.protocol import EvalProtocol
from hf_segcompare.models import create_model, input_multiple, model_normalization

from .mmseg_reference import mmseg_areas

# (height, width) of each dataset's images: VOC's 500 x 375 and its odd ones, ADE20K's varied ones (shrunk to a
# short side of 512, or enlarged), Cityscapes' 2048 x 1024
SHAPES = {
    "voc": ((375, 500), (500, 375), (333, 500), (281, 500), (500, 486), (366, 500)),
    "ade20k": ((512, 683), (768, 1024), (256, 341), (1200, 1600), (683, 512)),
    "cityscapes": ((1024, 2048),),
}
# the short side each dataset's mmsegmentation test resize gives (its long-side cap, 2048, binds none of these)
SHORT_SIDE = {"voc": 512, "ade20k": 512, "cityscapes": 1024}
SLIDE = {"voc": (512, 341), "ade20k": (512, 341), "cityscapes": (1024, 768)}  # mmseg's crop and stride


def _voc_tree(root: Path, shapes, seed: int) -> tuple[Path, list[dict]]:
    """A VOC-format tree of smooth random images (JPEG) and blocky masks with a void band (palette PNG)."""
    from hf_segcompare.data.masks import voc_palette

    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    samples = []
    for index, (height, width) in enumerate([*shapes, (64, 64)]):  # the last, small, is the training split
        image_id = f"2007_{seed:02d}{index:04d}"
        coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3)).astype(np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        mask = np.kron(rng.integers(0, 21, (height // 40 + 1, width // 40 + 1)), np.ones((40, 40), dtype=np.int64))
        mask = mask[:height, :width].astype(np.uint8)
        edges = np.zeros_like(mask, dtype=bool)
        edges[1:] |= mask[1:] != mask[:-1]
        edges[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        mask[edges] = 255
        png = Image.fromarray(mask, mode="P")
        png.putpalette([channel for colour in voc_palette() for channel in colour])
        png.save(voc / "SegmentationClass" / f"{image_id}.png")
        samples.append({"id": image_id, "img_path": str(voc / "JPEGImages" / f"{image_id}.jpg"),
                        "seg_map_path": str(voc / "SegmentationClass" / f"{image_id}.png")})
    *samples, training = samples
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text(training["id"] + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(sample["id"] for sample in samples) + "\n")
    return root, samples


def _toolkit_areas(model, tree: Path, protocol: EvalProtocol, tmp_path: Path) -> dict[str, dict[str, list]]:
    """Every image's areas from the toolkit's own evaluation (`SegTrainer.evaluate`), by id."""
    from hf_segcompare.config.arguments import from_recipe
    from hf_segcompare.data import load_voc
    from hf_segcompare.engine.trainer import SegTrainer

    dataset = load_voc(tree, cache_dir=tmp_path / "arrow")
    args = from_recipe("segformer-tiny", "demo", output_dir=str(tmp_path / "out"), per_device_eval_batch_size=1,
                       use_cpu=True, report_to=[])
    trainer = SegTrainer(model, args, None, dataset["validation"], eval_size=512, eval_protocol=protocol)
    trainer.evaluate()
    counts = trainer.final_counts()
    return {image_id: {name: getattr(counts, name)[row].tolist()
                       for name in ("intersection", "predicted_area", "label_area")}
            for row, image_id in enumerate(counts.ids)}


@pytest.mark.parametrize("model_name", ["segformer-tiny", "deeplabv3plus-tiny"])
@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_the_mmseg_protocol_scores_what_mmsegmentation_scores(tmp_path, model_name, mode):
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    normalization = model_normalization(model)
    multiple = input_multiple(model)
    assert multiple == (1 if model_name.startswith("segformer") else 16)
    compared = 0
    for seed, (dataset, shapes) in enumerate(SHAPES.items()):
        tree, samples = _voc_tree(tmp_path / dataset, shapes, seed)
        crop, stride = SLIDE[dataset]
        protocol = EvalProtocol(resize="short_side", short_side=SHORT_SIDE[dataset], mode=mode,
                                crop=crop if mode == "slide" else None, stride=stride if mode == "slide" else None)
        ours = _toolkit_areas(model, tree, protocol, tmp_path / f"{dataset}-run")
        theirs = mmseg_areas(model, samples, scale=(2048, SHORT_SIDE[dataset]), mode=mode, crop=crop, stride=stride,
                             size_divisor=multiple if multiple > 1 else None, mean=normalization.mean,
                             std=normalization.std)
        assert sorted(ours) == sorted(theirs)
        for image_id, areas in theirs.items():
            assert ours[image_id] == areas, (dataset, image_id)
            compared += 1
    assert compared == 12

"""Segment images with a trained model: a VOC-palette colour mask and an overlay per image.

From an installed package: ``hf-segcompare predict ...`` (or ``python -m hf_segcompare.cli.predict``);
in the checkout, ``scripts/predict.py``.

    python scripts/predict.py --model outputs/segformer-b0 --input photo.jpg --output_dir predictions
    python scripts/predict.py --model you/segformer-b0-voc --input photos/ --output_dir predictions

--model is a folder saved by run_seg.py or a Hub repo id; --input an image, or a folder of images
(.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp) searched with its subfolders. A dataset folder works as
it is: mask folders (masks/, annotations/, train_labels/ ...), files named like masks (x_mask.png,
x_L.png) and a one-channel x.png beside the photo x.jpg are skipped as masks, and said. For each image
it writes <name>_mask.png (palette PNG whose pixel values are class ids) and <name>_overlay.jpg (the
mask blended over the image), under the image's subfolder; two images of one name in one folder
(x.jpg and x.png, both photos) are written as x_jpg_* and x_png_*, never one over the other.
"""

import argparse
import sys
from pathlib import Path


def output_stems(images: list, root) -> dict:
    """Where each image's outputs go, relative to the output folder, without the ``_mask.png`` /
    ``_overlay.jpg`` ending: its subfolder under `root` and its name, with its extension added where
    two images of one folder share a name."""
    from collections import Counter
    from pathlib import Path

    root = Path(root)
    shared = Counter((image.parent, image.stem) for image in images)
    stems = {}
    for image in images:
        folder = image.parent.relative_to(root) if root.is_dir() else Path()
        name = image.stem if shared[(image.parent, image.stem)] == 1 else f"{image.stem}_{image.suffix.lstrip('.')}"
        stems[image] = folder / name
    return stems


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a folder saved by run_seg.py, or a Hub repo id")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_dir", default="predictions")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask in the overlay")
    args = parser.parse_args(argv)

    from hf_segcompare.data.paired_folders import IMAGE_SUFFIXES, photos_under
    from hf_segcompare.errors import UsageError

    source = Path(args.input)
    images, masks = photos_under(source) if source.exists() else ([], [])
    if not images:
        also = f" ({len(masks)} file(s) there are masks)" if masks else ""
        print(f"error: {source} is not an image or a folder holding images ({', '.join(IMAGE_SUFFIXES)}){also}",
              file=sys.stderr)
        return 2
    try:
        model = _saved_model(args.model)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir)
    stems = output_stems(images, source)
    failed = _segment_each(model, args.model, images, stems, output_dir, args.alpha)
    for message in failed:
        print(f"skipped {message}", file=sys.stderr)
    renamed = sum(stem.name != path.stem for path, stem in stems.items())
    print(f"{len(images) - len(failed)} image(s) segmented into {output_dir}"
          + (f"; {len(masks)} mask file(s) skipped: {', '.join(masks[:3])}{', ...' if len(masks) > 3 else ''}"
             if masks else "")
          + (f"; {renamed} image(s) sharing a name with another written with their extension (x_jpg_mask.png)"
             if renamed else ""))
    return 1 if failed else 0


def _saved_model(name: str):
    """The model saved in the folder or Hub repo `name`, in eval mode (safetensors only).

    Raises:
        UsageError: no such folder (and not a Hub id), weights damaged since they were saved, or no model there.
    """
    from transformers import AutoModelForSemanticSegmentation

    from hf_segcompare.engine.checkpoints import unreadable_weights
    from hf_segcompare.errors import UsageError
    from hf_segcompare.evaluation.inference import register_auto_classes

    register_auto_classes()  # the U-Net / DeepLabV3+ / ViT adapters load through the Auto classes
    local = Path(name).expanduser()
    # owner/name whose owner is no folder here reads as a Hub id; anything else names a folder.
    hub_like = len(local.parts) == 2 and not name.startswith((".", "/", "~")) and not local.parent.is_dir()
    if not local.is_dir() and not hub_like:
        raise UsageError(f"--model {name}: no such folder. Pass a folder that run_seg.py trained into, or a Hub "
                         "repo id (owner/name).")
    damage = unreadable_weights(local) if local.is_dir() else None
    if damage:
        raise UsageError(f"--model {name}: its weights cannot be read ({damage}): the file was damaged after it "
                         "was saved. Restore it from a copy, or train the model again.")
    try:
        return AutoModelForSemanticSegmentation.from_pretrained(name, use_safetensors=True).eval()
    except OSError as error:
        raise UsageError(f"cannot load a model from {name}: {str(error).splitlines()[0]}") from None


def _segment_each(model, name: str, images: list[Path], stems: dict[Path, Path], output_dir: Path,
                  alpha: float) -> list[str]:
    """Write each image's mask and overlay under `output_dir` (at its stem); the images that could not
    be read, each with why."""
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    from hf_segcompare.data import voc_palette
    from hf_segcompare.data.images import UnsupportedImage, open_rgb
    from hf_segcompare.evaluation.inference import load_image_processor, segment

    # The normalisation the model was trained with, as saved beside it.
    processor = load_image_processor(name, model)
    flat_palette = [channel for colour in voc_palette() for channel in colour]
    output_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in tqdm(images, desc="segmenting", unit="image"):
        try:
            image = open_rgb(path)  # as training decoded its images: EXIF orientation, 16-bit scaled
        except (UnidentifiedImageError, OSError, UnsupportedImage) as error:
            failed.append(f"{path}: {error}")
            continue
        mask = Image.fromarray(segment(model, image, processor), mode="L").convert("P")
        mask.putpalette(flat_palette)
        stem = output_dir / stems[path]
        stem.parent.mkdir(parents=True, exist_ok=True)
        mask.save(f"{stem}_mask.png")
        Image.blend(image, mask.convert("RGB"), alpha).save(f"{stem}_overlay.jpg", quality=92)
    return failed


if __name__ == "__main__":
    sys.exit(main())

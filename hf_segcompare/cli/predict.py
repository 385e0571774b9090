"""Segment images with a trained model: a VOC-palette colour mask and an overlay per image.

From an installed package: ``python -m hf_segcompare.cli.predict ...`` (``scripts/predict.py`` in the checkout).

    python scripts/predict.py --model outputs/segformer-b0 --input photo.jpg --output_dir predictions
    python scripts/predict.py --model you/segformer-b0-voc --input photos/ --output_dir predictions

--model is a folder saved by run_seg.py or a Hub repo id; --input a file or a folder of images
(.jpg, .jpeg, .png, .bmp, .webp). For each image it writes <name>_mask.png (palette PNG whose pixel
values are class ids) and <name>_overlay.jpg (the mask blended over the image).
"""

import argparse
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a folder saved by run_seg.py, or a Hub repo id")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_dir", default="predictions")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask in the overlay")
    args = parser.parse_args(argv)

    source = Path(args.input)
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if source.is_dir() else [source]
    if not source.exists() or not images:
        print(f"error: {source} is not an image or a folder holding images ({', '.join(sorted(IMAGE_SUFFIXES))})",
              file=sys.stderr)
        return 2

    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm
    from transformers import AutoModelForSemanticSegmentation

    from hf_segcompare.data import voc_palette
    from hf_segcompare.data.images import UnsupportedImage, open_rgb
    from hf_segcompare.evaluation.inference import load_image_processor, register_auto_classes, segment

    register_auto_classes()  # the U-Net / DeepLabV3+ / ViT adapters load through the Auto classes

    local = Path(args.model).expanduser()
    # owner/name whose owner is no folder here reads as a Hub id; anything else names a folder.
    hub_like = len(local.parts) == 2 and not args.model.startswith((".", "/", "~")) and not local.parent.is_dir()
    if not local.is_dir() and not hub_like:
        print(f"error: --model {args.model}: no such folder. Pass a folder that run_seg.py trained into, or a Hub "
              "repo id (owner/name).", file=sys.stderr)
        return 2
    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(args.model, use_safetensors=True).eval()
    except OSError as error:
        print(f"error: cannot load a model from {args.model}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    # The normalisation the model was trained with, as saved beside it.
    processor = load_image_processor(args.model, model)
    flat_palette = [channel for colour in voc_palette() for channel in colour]
    output_dir = Path(args.output_dir)
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
        mask.save(output_dir / f"{path.stem}_mask.png")
        Image.blend(image, mask.convert("RGB"), args.alpha).save(output_dir / f"{path.stem}_overlay.jpg", quality=92)
    for message in failed:
        print(f"skipped {message}", file=sys.stderr)
    print(f"{len(images) - len(failed)} image(s) segmented into {output_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

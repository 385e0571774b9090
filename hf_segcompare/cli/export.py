r"""Export a trained run's model and check the export against PyTorch on the run's validation images.

From an installed package: ``hf-segcompare export ...`` (or ``python -m hf_segcompare.cli.export``);
in the checkout, ``scripts/export.py``.

    python scripts/export.py outputs/segformer-b0 --format onnx
    python scripts/export.py outputs/unet --format onnx --images 32

Writes RUN_DIR/model.onnx (torch's dynamo exporter; batch, height and width dynamic, height and width
multiples of 32; output: the model's logits) and RUN_DIR/export.json (the largest logit difference
and the argmax agreement with PyTorch on the first --images validation images), and adds both to
the card. Needs the export extra: pip install 'hf_segcompare[export]'. An export whose argmax agrees
on less than 99.9 % of the positions is refused (exit status 1) and nothing is kept.
"""

import argparse
import sys


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the output folder of a finished training run")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="the export format (onnx)")
    parser.add_argument("--images", type=int, default=8, help="validation images the export is checked on")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    args = parser.parse_args(argv)

    from hf_segcompare.cli import error_status
    from hf_segcompare.errors import SegCompareError, UsageError
    from hf_segcompare.pipeline.export import export_run

    try:
        if args.images < 1:
            raise UsageError(f"--images {args.images}: give at least 1.")
        record = export_run(args.run_dir, images=args.images, opset=args.opset)
    except SegCompareError as error:  # bad input (2), or stopped with what was kept said (1)
        return error_status(error)
    print(f"exported: {args.run_dir}/{record['file']}; on {record['checked_on']['images']} validation images "
          f"argmax agreement {100 * record['argmax_agreement']:.4f} %, largest logit difference "
          f"{record['max_abs_logit_difference']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

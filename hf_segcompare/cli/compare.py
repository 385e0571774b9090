r"""Put several runs side by side: a comparison page with its tables, figures and computed conclusions.

From an installed package: ``hf-segcompare compare ...`` (or ``python -m hf_segcompare.cli.compare``);
in the checkout, ``scripts/compare.py``.

    python scripts/compare.py outputs/unet outputs/deeplabv3plus outputs/vit outputs/segformer-b0 \
        --output_dir model_cards/comparison

Each argument is a run's output folder (or its results.json). Runs must share the data set and
label set.
"""

import argparse
import sys

from hf_segcompare.errors import UsageError
from hf_segcompare.report.page import write_comparison


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="output folders (or results.json files) of run_seg.py runs")
    parser.add_argument("--output_dir", default="comparison", help="where comparison.md and the figures go")
    args = parser.parse_args(argv)
    try:
        page = write_comparison(args.runs, args.output_dir)
    except (UsageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"comparison page: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

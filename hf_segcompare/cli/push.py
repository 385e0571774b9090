"""Push an output folder that is already on disk to the Hub (a retry after a failed push, or a comparison page).

From an installed package: ``hf-segcompare push ...`` (or ``python -m hf_segcompare.cli.push``);
in the checkout, ``scripts/push.py``.

    .venv/bin/python scripts/push.py outputs/segformer-b0 --hub_model_id you/segformer-b0-voc
    .venv/bin/python scripts/push.py comparison --hub_model_id you/segcompare-report

The token comes from --token, else HF_TOKEN or `hf auth login`. Checkpoints and Trainer's pickled
arguments are not uploaded. A run's results.json then records the commit (its "hub" field).
"""

import argparse
import sys

from hf_segcompare.errors import PushError, UsageError
from hf_segcompare.report.push import push_folder


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="a run's output folder, or a comparison folder")
    parser.add_argument("--hub_model_id", required=True, help="the repo to push to, e.g. you/segformer-b0-voc")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    args = parser.parse_args(argv)
    try:
        url = push_folder(args.output_dir, args.hub_model_id, token=args.token, private=args.private or None)
    except UsageError as error:  # bad input: nothing was sent
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"pushed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

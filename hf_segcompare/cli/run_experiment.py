r"""Run a named experiment: each of its models in its own `accelerate launch`, then the comparison page.

From an installed package: ``hf-segcompare experiment ...`` (or ``python -m hf_segcompare.cli.run_experiment``);
in the checkout, ``scripts/run_experiment.py``.

    # the article's first experiment: U-Net vs ViT from random weights, 10 epochs each (quick-10)
    python scripts/run_experiment.py article-1 -- --dataset_name voc --data_dir /data/VOCdevkit

    # the second: DeepLabV3+ vs SegFormer-b0 from pretrained encoders, 15 epochs each (quick-15),
    # on 4 GPUs, with local copies of the encoder weights
    python scripts/run_experiment.py article-2 --launch "--multi_gpu --num_processes 4" \
        --pretrained deeplabv3plus=/models/resnet50.pth segformer-b0=/models/mit-b0 \
        -- --dataset_name voc --data_dir /data/VOCdevkit --sbd_dir /data/SegmentationClassAug

    # all four under their published recipes, every card and the page pushed to the Hub
    python scripts/run_experiment.py all-four --push_to_hub --hub_owner you -- --dataset_name voc ...

    # the first with three seeds per model: mean ± sd on the page, differences judged with both spreads
    python scripts/run_experiment.py article-1 --seeds 0 1 2 -- --dataset_name voc --data_dir /data/VOCdevkit

Each model trains into OUTPUT_DIR/<model> (OUTPUT_DIR/<model>-seed<N> with --seeds; default
OUTPUT_DIR outputs/<experiment>), the page goes to
OUTPUT_DIR/comparison. Run the same command again after an interruption: finished models are
skipped, an interrupted one resumes from its last checkpoint. Options after `--` go to every
run_seg.py (see run_seg.py --help); the experiment sets --model, --recipe, the start,
--output_dir and the push itself.
"""

import argparse
import shlex
import sys
from pathlib import Path


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from hf_segcompare.pipeline.experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=list(EXPERIMENTS),
                        help="; ".join(f"{e.name}: {e.question} ({e.recipe})" for e in EXPERIMENTS.values()))
    parser.add_argument("--output_dir", default=None, help="where the models and the page go (default "
                                                           "outputs/<experiment>)")
    parser.add_argument("--launch", default="", help="accelerate launch options for every model, as one string, e.g. "
                                                     "\"--multi_gpu --num_processes 4\"")
    parser.add_argument("--pretrained", nargs="+", default=[], metavar="MODEL=SOURCE",
                        help="where a model's encoder weights come from (a local folder or file, a Hub id); default "
                             "each model's own (which needs the Hub)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="train every model once per seed (into OUTPUT_DIR/<model>-seed<N>); the page then shows "
                             "mean ± sd over seeds and its conclusions count the spread across seeds")
    parser.add_argument("--tiny", action="store_true", help="the -tiny test variants of the models (seconds on a CPU)")
    parser.add_argument("--push_to_hub", action="store_true",
                        help="push each model to <hub_owner>/<experiment>-<model> and the page to "
                             "<hub_owner>/<experiment>-comparison, linked to them")
    parser.add_argument("--hub_owner", default=None, help="the Hub user or organisation to push to")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    return parser


def main(argv=None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_seg_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own_args = argv[:argv.index("--")] if "--" in argv else argv
    args = build_parser(prog).parse_args(own_args)

    from hf_segcompare.cli import error_status
    from hf_segcompare.errors import SegCompareError, UsageError
    from hf_segcompare.pipeline.experiments import get_experiment, model_commands, run_experiment

    try:
        if args.push_to_hub != bool(args.hub_owner):
            raise UsageError("--push_to_hub and --hub_owner go together: pass both to publish, neither to keep "
                             "everything local.")
        experiment = get_experiment(args.experiment)
        output_dir = Path(args.output_dir or Path("outputs") / experiment.name)
        commands = model_commands(experiment, output_dir, run_seg_args, tiny=args.tiny, pretrained=args.pretrained,
                                  seeds=args.seeds)
        page = run_experiment(experiment, output_dir, commands, launch_args=shlex.split(args.launch),
                              hub_owner=args.hub_owner, hub_token=args.hub_token,
                              run_seg=["-m", __package__ + ".run_seg"])
    except SegCompareError as error:  # bad input (2), or stopped with what was kept said (1)
        return error_status(error)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (finished models are skipped, the "
              "interrupted one resumes from its last checkpoint).", file=sys.stderr)
        return 130
    print(f"comparison page: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

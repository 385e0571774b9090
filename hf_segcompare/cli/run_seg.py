r"""Fine-tune and evaluate one segmentation model on Pascal VOC, ADE20K, Cityscapes, your own data, or
the embedded VOC-format data.

From an installed package (no checkout): ``hf-segcompare train ...`` or
``accelerate launch -m hf_segcompare.cli.run_seg ...``;
in the checkout, ``scripts/run_seg.py`` is the same command.

    # fine-tune from the model's pretrained encoder (nvidia/mit-b0 here; needs the Hub or --pretrained PATH)
    accelerate launch scripts/run_seg.py --model segformer-b0 --pretrained /models/mit-b0

    # the embedded synthetic data, SegFormer-b0 from random weights (a few minutes on a CPU)
    accelerate launch scripts/run_seg.py --model segformer-b0 --from_scratch

    # the other architectures: unet, deeplabv3plus, vit (and -tiny test variants)
    accelerate launch scripts/run_seg.py --model unet --from_scratch

    # the published recipe (default on real data; see README "Recipes"), or its 10-epoch version
    accelerate launch --multi_gpu --num_processes 4 scripts/run_seg.py --model segformer-b0 \
        --pretrained /models/mit-b0 --dataset_name voc --data_dir /data/VOCdevkit
    accelerate launch scripts/run_seg.py --model deeplabv3plus --recipe quick-10 \
        --dataset_name voc --data_dir /data/VOCdevkit

    # replay a run from the arguments it wrote (options after the file override it)
    accelerate launch scripts/run_seg.py outputs/segformer-b0/run_args.json --output_dir outputs/again

    # a VOC-format folder on disk (holding VOCdevkit/VOC2012), or the official tar read in place
    accelerate launch scripts/run_seg.py --model deeplabv3plus --from_scratch \
        --dataset_name voc --data_dir /data/VOCdevkit
    accelerate launch scripts/run_seg.py --model deeplabv3plus --from_scratch \
        --dataset_name voc --data_dir /data/VOCtrainval_11-May-2012.tar

    # your own data: an imagefolder, parquet (data/*.parquet + id2label.json) or a Hub dataset id; its classes
    # come from --labels FILE or its id2label.json, and it trains under the fitted recipe
    accelerate launch scripts/run_seg.py --model segformer-b0 --pretrained /models/mit-b0 \
        --dataset_name /data/pets --labels /data/pets/labels.txt

    # ADE20K and Cityscapes read in place, under mmsegmentation's published recipe for each
    accelerate launch --multi_gpu --num_processes 8 scripts/run_seg.py --model segformer-b0 \
        --pretrained /models/mit-b0 --dataset_name ade20k --data_dir /data/ADEChallengeData2016.zip
    accelerate launch --multi_gpu --num_processes 8 scripts/run_seg.py --model segformer-b0 \
        --pretrained /models/mit-b0 --dataset_name cityscapes --data_dir /data/cityscapes

    # VOC "train_aug" (10,582 ids): VOC train + SBD masks minus VOC val
    accelerate launch scripts/run_seg.py --model deeplabv3plus --from_scratch \
        --dataset_name voc --data_dir /data/VOCdevkit --sbd_dir /data/SegmentationClassAug

    # evaluate a saved model only, on two processes: writes eval_<dataset>_validation.json beside
    # it and adds the figures to its card; its results.json (the training record) is left alone
    accelerate launch --multi_gpu --num_processes 2 scripts/run_seg.py --model segformer-b0 \
        --model_name_or_path outputs/segformer-b0 --do_train false --output_dir outputs/segformer-b0

    # resume: a run whose --output_dir holds checkpoints resumes from the last complete one
    # (--resume_from_checkpoint PATH|last to choose; --overwrite_output_dir to start afresh)

    # publish: weights, config, card and figures, results.json (retry a failed push with scripts/push.py)
    accelerate launch scripts/run_seg.py --model segformer-b0 --from_scratch --push_to_hub \
        --hub_model_id you/segformer-b0-voc

Every `TrainingArguments` option passes through (--output_dir, --num_train_epochs, --max_steps,
--learning_rate, --per_device_train_batch_size, ...); the model's recipe (--recipe) supplies the
defaults, with --lr_multipliers and --no_decay for its parameter groups. The run writes
run_args.json, the model, its checkpoints, card and results.json into --output_dir (default
outputs/<model>).
"""

import os
import sys

from hf_segcompare.config.option_names import quick_check  # the standard library and the registry only


def main(argv=None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mistake = quick_check(argv)  # an unknown option or model, answered before torch loads
    if mistake:
        print(f"error: {mistake}", file=sys.stderr)
        return 2

    from hf_segcompare.cli import stop_signals_interrupt
    from hf_segcompare.config.arguments import parse_args
    from hf_segcompare.errors import Interrupted, SegCompareError, UsageError
    from hf_segcompare.pipeline.run import run
    from hf_segcompare.report.results import summary_line

    # The handlers stay until the one line is printed: a second signal must not cut it short.
    with stop_signals_interrupt() as stop:
        try:
            model_args, data_args, training_args = parse_args(argv, prog=prog)
            results = run(model_args, data_args, training_args)
        except (UsageError, FileNotFoundError) as error:  # bad input: nothing was trained
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as error:  # Ctrl-C: one line (the first process's), the shell's exit status
            if os.environ.get("RANK", "0") == "0":  # every process of a distributed run gets the signal
                print("\nerror: " + (str(error) if isinstance(error, Interrupted) else
                                     "interrupted before training started; nothing was trained or published."),
                      file=sys.stderr, flush=True)
            return stop.exit_status()
        # Stopped with nothing published, or trained and saved but the push failed: each says what is kept.
        except SegCompareError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if training_args.process_index == 0:
        print(summary_line(results, training_args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

r"""hf-segcompare: fine-tune, compare and publish segmentation models through the Hugging Face Trainer.

One command with a verb per task, as ``accelerate launch|config|env``:

    # train and evaluate one model (launched through accelerate; the embedded synthetic data by default)
    hf-segcompare train --model segformer-b0 --from_scratch
    hf-segcompare train --launch "--multi_gpu --num_processes 4" --model deeplabv3plus \
        --dataset_name voc --data_dir /data/VOCdevkit

    # put runs side by side on one page, run a named experiment, list the models
    hf-segcompare compare outputs/unet outputs/segformer-b0 --output_dir comparison
    hf-segcompare experiment article-1 --tiny
    hf-segcompare models

    # use a trained model: segment images, export it to ONNX, publish its folder
    hf-segcompare predict --model outputs/segformer-b0 --input photos/ --output_dir predictions
    hf-segcompare export outputs/segformer-b0 --format onnx
    hf-segcompare push outputs/segformer-b0 --hub_model_id you/segformer-b0-voc

``hf-segcompare VERB --help`` says what each takes. The same commands run as
``python -m hf_segcompare.cli.<module>`` and, in the checkout, ``scripts/<module>.py``
(``accelerate launch scripts/run_seg.py`` trains). Exit status: 0 done, 2 bad input (nothing
trained or written), 1 stopped with what was kept said, 130 interrupted.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass

PROG = "hf-segcompare"


@dataclass(frozen=True)
class Verb:
    """A verb of the command: the module under ``hf_segcompare.cli`` whose ``main(argv, prog)`` runs it."""

    module: str
    summary: str


VERBS = {
    "train": Verb("run_seg", "fine-tune and evaluate one model, launched through accelerate (--launch OPTIONS)"),
    "compare": Verb("compare", "a comparison page of several runs: tables, figures, intervals, conclusions"),
    "experiment": Verb("run_experiment", "a named experiment: each model in turn, then its comparison page"),
    "predict": Verb("predict", "segment images with a trained model: class-id PNG masks and overlays"),
    "export": Verb("export", "export a trained model to ONNX, checked against PyTorch"),
    "push": Verb("push", "publish a run's or a page's folder to the Hub"),
    "models": Verb("models", "list the registered models, their families and recipes"),
}
LAUNCH_OPTION = "--launch"


def usage() -> str:
    """The command's help: what it is for, then each verb with its one line."""
    width = max(len(name) for name in VERBS)
    verbs = "\n".join(f"  {name.ljust(width)}  {verb.summary}" for name, verb in VERBS.items())
    return (f"usage: {PROG} VERB [OPTIONS]   ({PROG} VERB --help for a verb's options)\n\nverbs:\n{verbs}\n\n"
            f"options:\n  -h, --help  show this help and exit\n  --version   show the version and where it is "
            f"installed, and exit\n\n{__doc__}")


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-segcompare VERB ...`` and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        import hf_segcompare

        print(f"{PROG} {hf_segcompare.__version__} from {hf_segcompare.__path__[0]} (Python "
              f"{sys.version.split()[0]})")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in VERBS:
        close = difflib.get_close_matches(name, VERBS, n=2, cutoff=0.6)
        print(f"error: {PROG}: no verb {name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
              + f"; the verbs: {', '.join(VERBS)}. See {PROG} --help.", file=sys.stderr)
        return 2
    if name == "train":
        return train(rest)
    module = importlib.import_module(f"{__package__}.{VERBS[name].module}")
    return module.main(rest, prog=f"{PROG} {name}")


def train(argv: list[str]) -> int:
    """``hf-segcompare train [--launch "ACCELERATE OPTIONS"] RUN OPTIONS``: the run, as its own
    ``accelerate launch -m hf_segcompare.cli.run_seg`` (so multi-GPU, DeepSpeed and FSDP come from
    accelerate's options or config, as with ``accelerate launch scripts/run_seg.py``)."""
    import shlex

    launch, run_args = _launch_options(argv)
    if launch is None:
        return 2
    if any(argument in ("-h", "--help") for argument in run_args):
        print(f"usage: {PROG} train [{LAUNCH_OPTION} \"ACCELERATE LAUNCH OPTIONS\"] RUN OPTIONS\n\n"
              f"{LAUNCH_OPTION}: accelerate launch's options as one string (default: none, so `accelerate config`'s "
              "defaults), e.g. \"--multi_gpu --num_processes 4\". The run options follow:\n", flush=True)
        from .run_seg import main as run_seg

        return run_seg(["--help"], prog=f"{PROG} train")
    from ..config.option_names import quick_check

    mistake = quick_check(run_args)  # an unknown option or model, answered before accelerate starts anything
    if mistake:
        print(f"error: {mistake}", file=sys.stderr)
        return 2
    return _launched(shlex.split(launch), run_args)


def _launch_options(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--launch VALUE`` (or ``--launch=VALUE``) taken out of `argv`: (the value, the rest). The
    value is None (and the error printed) when ``--launch`` is given no value."""
    launch, rest, arguments = "", [], iter(argv)
    for argument in arguments:
        if argument == LAUNCH_OPTION:
            value = next(arguments, None)
            if value is None:
                print(f"error: {LAUNCH_OPTION} needs a value: accelerate launch's options as one string, e.g. "
                      f"{LAUNCH_OPTION} \"--multi_gpu --num_processes 4\".", file=sys.stderr)
                return None, []
            launch = f"{launch} {value}"
        elif argument.startswith(LAUNCH_OPTION + "="):
            launch = f"{launch} {argument.partition('=')[2]}"
        else:
            rest.append(argument)
    return launch.strip(), rest


def _launch_mistake(parser, launch_args: list[str]) -> str | None:
    """What accelerate's launcher would refuse in `launch_args` (None: nothing), found before it prints
    its whole usage: an option it does not have, or a value it cannot take."""
    import argparse

    known = parser._option_string_actions  # argparse's table of option strings
    unknown = [token for token in launch_args if token.startswith("-") and token.split("=")[0] not in known]
    if unknown:
        return f"accelerate launch has no option {', '.join(unknown)}"

    class Refused(Exception):
        pass

    def refuse(message):
        raise Refused(message)

    parser.error = refuse  # this parser only: a bad value becomes one line, not the usage and an exit
    try:
        parser.parse_args([*launch_args, "-m", "check"])
    except (Refused, argparse.ArgumentError) as error:
        return str(error)
    finally:
        del parser.error
    return None


def _launched(launch_args: list[str], run_args: list[str]) -> int:
    """Run ``accelerate launch LAUNCH_ARGS -m hf_segcompare.cli.run_seg RUN_ARGS`` (accelerate's own
    launcher, in this process) and return the run's exit status.

    ``accelerate launch`` itself ends a failed run with a traceback of its own and status 1 under
    the run's one-line error; here the run's status comes back instead (2: bad input, nothing
    trained; 1: stopped with what was kept said; 130: interrupted), with the run's error as the last line.
    """
    import subprocess

    from accelerate.commands.launch import launch_command, launch_command_parser

    parser = launch_command_parser()
    mistake = _launch_mistake(parser, launch_args)
    if mistake:
        print(f"error: {LAUNCH_OPTION} {' '.join(launch_args)!r}: {mistake}; see accelerate launch --help.",
              file=sys.stderr)
        return 2
    options = parser.parse_args([*launch_args, "-m", f"{__package__}.run_seg", *run_args])
    try:
        launch_command(options)
    except subprocess.CalledProcessError as error:  # one process: the run's own status
        return 128 - error.returncode if error.returncode < 0 else error.returncode
    except SystemExit as error:  # the launcher's: 130 or 128 + N after a signal
        return error.code if isinstance(error.code, int) else 1
    except Exception as error:  # several processes: torch's elastic agent names each failed rank
        failures = getattr(error, "failures", None)
        if type(error).__name__ != "ChildFailedError" or not failures:
            raise
        return next(iter(failures.values())).exitcode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

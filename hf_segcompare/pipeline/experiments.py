"""Named experiments: several models trained one after another, then one comparison page.

An `Experiment` names its models, the recipe they all train with and where their weights start.
`run_experiment` launches each model as its own ``accelerate launch -m hf_segcompare.cli.run_seg`` (with the
user's launch options, so one model's processes are gone before the next starts), into
``<output_dir>/<model>``; then it writes the comparison page into ``<output_dir>/comparison`` and,
with a Hub owner, pushes the page beside the model repos it links to.

Restarting the same command continues where it stopped:

- a model whose folder holds a finished run of exactly the command planned for it is skipped;
- an interrupted one is launched again, and run_seg.py resumes it from its last checkpoint;
- a folder holding anything else (another command, a diverged run) stops the experiment with a
  message, rather than putting a result the plan did not produce on the page.

Each model's command is recorded in ``<output_dir>/experiment.json`` before it is launched; that
record is what "exactly the command planned" is checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..engine.checkpoints import checkpoints
from ..errors import SegCompareError, UsageError, choose
from ..models import get_entry, list_models
from ..report.results import RESULTS_FILE, RunResults

PLAN_FILE = "experiment.json"
PAGE_FOLDER = "comparison"


@dataclass(frozen=True)
class Experiment:
    """Models trained under one recipe from one kind of start, to be compared on one page."""

    name: str
    models: tuple[str, ...]
    recipe: str
    pretrained: bool  # False: random weights (--from_scratch)
    question: str


EXPERIMENTS = {
    experiment.name: experiment
    for experiment in (
        Experiment("article-1", ("unet", "vit"), "quick-10", pretrained=False,
                   question="U-Net vs ViT from random weights, 10 epochs each"),
        Experiment("article-2", ("deeplabv3plus", "segformer-b0"), "quick-15", pretrained=True,
                   question="DeepLabV3+ vs SegFormer-b0 from pretrained encoders, 15 epochs each"),
        Experiment("all-four", ("unet", "deeplabv3plus", "vit", "segformer-b0"), "published", pretrained=True,
                   question="the four models from pretrained encoders under their published recipes"),
    )
}


class ExperimentStopped(SegCompareError):
    """A model of the experiment failed or its folder holds another run; nothing more was launched."""


def get_experiment(name: str) -> Experiment:
    """The experiment `name`.

    Raises:
        UsageError: an unknown name; the message lists the known ones.
    """
    return choose(EXPERIMENTS, name, "experiment")


def tiny_variant(model: str) -> str:
    """The ``-tiny`` test variant standing in for `model`.

    Raises:
        UsageError: `model` has none.
    """
    variants = [name for name in list_models(include_test_variants=True) if get_entry(name).parent == model]
    if not variants:
        raise UsageError(f"model {model} has no -tiny test variant.")
    return variants[0]


def parse_sources(pairs: list[str], models: tuple[str, ...]) -> dict[str, str]:
    """``MODEL=SOURCE`` pairs (`--pretrained`) as a mapping over `models`; a full-size name also
    names its test variant.

    Raises:
        UsageError: a pair without ``=``, or a model the experiment does not train.
    """
    sources = {}
    for pair in pairs:
        model, separator, source = pair.partition("=")
        if not separator or not source:
            raise UsageError(f"--pretrained {pair!r}: give MODEL=SOURCE, e.g. segformer-b0=/models/mit-b0.")
        matches = [name for name in models if model in (name, get_entry(name).parent)]
        if not matches:
            raise UsageError(f"--pretrained {pair!r}: this experiment trains {', '.join(models)}, not {model}.")
        sources[matches[0]] = source
    return sources


def run_name(model: str, seed: int | None) -> str:
    """The name (and folder) of one run of an experiment: the model, and its seed when several are trained."""
    return model if seed is None else f"{model}-seed{seed}"


def model_of(command: list[str]) -> str:
    """The model a run_seg.py command trains (its ``--model``)."""
    return command[command.index("--model") + 1]


def model_commands(experiment: Experiment, output_dir: Path, run_seg_args: list[str], tiny: bool = False,
                   pretrained: list[str] | None = None, seeds: list[int] | None = None) -> dict[str, list[str]]:
    """The run_seg.py arguments of each run of `experiment` by its `run_name`, in training order: its
    `tiny` test variants if asked, starting from `pretrained` sources (``MODEL=SOURCE``) where
    given; with `seeds`, every model once per seed (``--seed N``, into ``<model>-seed<N>``), the
    seeds of one model one after another.

    Raises:
        UsageError: `run_seg_args` set what the experiment decides (model, recipe, start, output
            folder, push, and the seed when `seeds` are given), `pretrained` sources for an
            experiment that starts from random weights, or a seed given twice.
    """
    decided = {"--model", "--recipe", "--from_scratch", "--pretrained", "--model_name_or_path", "--output_dir",
               "--push_to_hub", "--hub_model_id"} | ({"--seed"} if seeds else set())
    clashes = sorted({argument.split("=", 1)[0] for argument in run_seg_args} & decided)
    if clashes:
        raise UsageError(f"{', '.join(clashes)}: the experiment sets these for each model (see "
                         "run_experiment.py --help); drop them from the run_seg.py options.")
    if seeds and len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {' '.join(map(str, seeds))}: each seed once (a seed repeats its run).")
    models = tuple(tiny_variant(model) for model in experiment.models) if tiny else experiment.models
    sources = parse_sources(pretrained or [], models)
    if sources and not experiment.pretrained:
        raise UsageError(f"{experiment.name} trains from random weights: --pretrained does not apply to it.")
    commands = {}
    for model in models:
        if not experiment.pretrained:
            start = ["--from_scratch"]
        else:  # no source: the model's default (run_seg.py says what to pass when it cannot be had)
            start = ["--pretrained", sources[model]] if model in sources else []
        for seed in seeds or [None]:
            name = run_name(model, seed)
            commands[name] = ["--model", model, "--recipe", experiment.recipe, *start,
                              "--output_dir", str(output_dir / name),
                              *(["--seed", str(seed)] if seed is not None else []), *run_seg_args]
    return commands


def _read_plan(output_dir: Path) -> dict:
    path = output_dir / PLAN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_plan(output_dir: Path, experiment: Experiment, model: str, command: list[str]) -> None:
    plan = _read_plan(output_dir)
    plan["experiment"] = experiment.name
    plan.setdefault("commands", {})[model] = command
    output_dir.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: an experiment killed while writing must not leave a plan it cannot read back.
    partial = output_dir / f".{PLAN_FILE}.part"
    partial.write_text(json.dumps(plan, indent=2) + "\n")
    os.replace(partial, output_dir / PLAN_FILE)


def model_state(output_dir: Path, model: str, command: list[str]) -> str:
    """``finished`` (skip it), ``to run`` (nothing yet, or interrupted: launch it; run_seg.py
    resumes from a checkpoint), for `model`'s folder in the experiment's `output_dir`.

    Raises:
        ExperimentStopped: the folder holds a diverged run, or a finished one of another command.
    """
    folder = output_dir / model
    results_file = folder / RESULTS_FILE
    recorded = _read_plan(output_dir).get("commands", {}).get(model)
    if not results_file.is_file():
        if recorded is not None and recorded != command and checkpoints(folder):
            raise ExperimentStopped(
                f"{folder} holds an interrupted run of {' '.join(recorded)}; resuming it under {' '.join(command)} "
                "would mix two settings in one model. Run the experiment with the options it started with, or "
                "remove the folder to train it afresh.")
        return "to run"
    results = RunResults.read(results_file)
    if results.status != "complete":
        raise ExperimentStopped(
            f"{folder} holds a run that {results.status} ({(results.diverged or {}).get('message', '')}). Nothing of "
            f"it is on the page. Remove {folder} (or change the options) and run the experiment again.")
    if recorded != command:
        difference = ("it was not trained by this experiment" if recorded is None
                      else f"it was trained with {' '.join(recorded)}")
        raise ExperimentStopped(
            f"{folder} holds a finished run, but {difference}; this experiment would run {' '.join(command)}. "
            "Pass another --output_dir, or remove the folder to train it again.")
    return "finished"


def launch_command(launch_args: list[str], run_seg_command: list[str], run_seg: list[str]) -> list[str]:
    """``accelerate launch LAUNCH_ARGS RUN_SEG ...`` with this interpreter's accelerate; `run_seg` is
    ``["-m", "hf_segcompare.cli.run_seg"]`` or a script's path."""
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_args, *run_seg, *run_seg_command]


def run_experiment(experiment: Experiment, output_dir: str | Path, commands: dict[str, list[str]], *,
                   run_seg: list[str], launch_args: list[str] | None = None, hub_owner: str | None = None,
                   hub_token: str | None = None, log=print) -> Path:
    """Train each run of `commands` (from `model_commands`) that is not finished, then write the
    comparison page (and push it, with `hub_owner`); return the page's path.

    With `hub_owner`, each run is pushed to ``<owner>/<experiment>-<run name>`` (by its run, or here
    when it finished before without a push) and the page to ``<owner>/<experiment>-comparison``.
    `run_seg`: what each launch runs after accelerate's options (``-m hf_segcompare.cli.run_seg``, or a script).

    Raises:
        ExperimentStopped: a model failed, or a folder holds a run this plan did not produce.
        PushError: trained and saved, but a push failed (rerun the command to push what is missing).
    """
    from ..report.page import write_comparison
    from ..report.push import push_folder

    output_dir = Path(output_dir)
    for position, (model, command) in enumerate(commands.items(), start=1):  # model: the run's name
        state = model_state(output_dir, model, command)
        if state == "finished":
            log(f"[{experiment.name} {position}/{len(commands)}] {model}: finished in {output_dir / model}, skipped")
            continue
        repo = f"{hub_owner}/{experiment.name}-{model}" if hub_owner else None
        full = command + (["--push_to_hub", "--hub_model_id", repo] if repo else [])
        _record_plan(output_dir, experiment, model, command)
        log(f"[{experiment.name} {position}/{len(commands)}] {model}: accelerate launch "
            f"{' '.join(launch_args or [])} {' '.join(run_seg)} {' '.join(full)}".replace("  ", " "))
        env = None
        if hub_token:  # through the environment: never on a command line that ps or a log shows
            env = {**os.environ, "HF_TOKEN": hub_token}
        status = subprocess.run(launch_command(launch_args or [], full, run_seg), env=env).returncode
        if status != 0:
            # run_seg.py's own advice names its options; the experiment takes a start as MODEL=SOURCE.
            hint = ""
            if experiment.pretrained and "--pretrained" not in command:
                trained = model_of(command)
                hint = (" If it could not load its pretrained weights, give them to the experiment: --pretrained "
                        f"{get_entry(trained).parent or trained}=SOURCE.")
            raise ExperimentStopped(
                f"{model} stopped with exit status {status} (its error is above); nothing was compared or "
                f"pushed.{hint} Fix the cause and run the same command again: finished models are skipped, {model} "
                "resumes from its last checkpoint.")
    folders = [output_dir / model for model in commands]
    if hub_owner:  # a model finished by an earlier command without this push
        for model, folder in zip(commands, folders):
            repo = f"{hub_owner}/{experiment.name}-{model}"
            if (RunResults.read(folder / RESULTS_FILE).hub or {}).get("repo_id") != repo:
                push_folder(folder, repo, token=hub_token)
    page = write_comparison(folders, output_dir / PAGE_FOLDER,
                            question=f"Experiment `{experiment.name}`: {experiment.question}")
    if hub_owner:
        url = push_folder(page.parent, f"{hub_owner}/{experiment.name}-comparison", token=hub_token,
                          commit_message=f"Comparison page of the {experiment.name} experiment (hf_segcompare)")
        log(f"comparison page pushed: {url}")
    return page


__all__ = ["EXPERIMENTS", "Experiment", "ExperimentStopped", "get_experiment", "launch_command", "model_commands",
           "model_of", "model_state", "parse_sources", "run_experiment", "run_name", "tiny_variant"]

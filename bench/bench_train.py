"""Training benchmark: `SegTrainer` against a bare PyTorch loop, and the data loader against a step.

    python bench/bench_train.py                                  # the four models, CPU-sized
    python bench/bench_train.py --crop_size 512 --batch_size 16  # a GPU, at the published recipes' crop and batch
    python bench/bench_train.py --models segformer-b0 --repeats 5 --output bench/results/train.json

For each model (random weights, the published recipe's optimizer, parameter groups, schedule and
gradient clipping, on synthetic 500x375 and 375x500 images, VOC's usual sizes):

- **Trainer vs bare loop**: the same model, optimizer, scheduler, data pipeline (transforms,
  collator, data-loader workers) and batch, once through `SegTrainer.train()` and once through a
  plain ``for batch in DataLoader: forward, backward, clip, step, zero_grad`` loop. Both are timed
  from the end of the warm-up steps to the end of the last step (everything in between counted:
  data, logging, callbacks, the divergence checks), in alternating runs (A B A B ...). Reports
  samples/s, min and median per side, and the ratio of the medians. Target: >= 0.95.
- **Data vs step**: images/s of the training data loader alone (the run's default worker count)
  against the Trainer's steps: the share of a step that preparing its batch would take were it not
  overlapped. Target: <= 5 %.

``--data_only`` measures the training data loader alone, side by side under both scale jitters
(``native``: the long side drawn from 0.5-2.0 crops; ``mmseg``: the short side drawn from 0.5-2.0 x
the crop, mmsegmentation's VOC pipeline, up to 1,024 px at crop 512) at each of ``--workers``, and
the GPU step it would take for preparing a batch to stay under 5 % of it (no GPU step is measured
here: the figure says how short a step the loader keeps up with):

    python bench/bench_train.py --data_only --crop_size 512 --batch_size 16 --workers 0 2 \
        --output bench/results/train_data.json

Every figure, the device (GPU name), thread count and load average go into one JSON (``--output``),
from which ``bench/report.py`` writes the table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import device_name, measured_commit, write_report  # bench/common.py (this folder is on sys.path)
from transformers import TrainerCallback

from hf_segcompare.config.arguments import SegTrainingArguments, from_recipe
from hf_segcompare.data import generate_synthetic_voc, load_voc
from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.evaluation.protocol import EvalProtocol
from hf_segcompare.labels import VOC_LABELS
from hf_segcompare.models import create_model, list_models


class StepClock(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.ended = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if args.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if state.global_step == self.warmup:
            self.started = now
        self.ended = now


def _arguments(model: str, workdir: Path, options, workers: int | None = None) -> SegTrainingArguments:
    workers = {} if workers is None else {"dataloader_num_workers": workers}
    return from_recipe(
        model, "published", output_dir=str(workdir / "trainer"), max_steps=options.warmup + options.steps,
        per_device_train_batch_size=options.batch_size, do_eval=False, eval_strategy="no", save_strategy="no",
        logging_steps=10_000, disable_tqdm=True, report_to="none", seed=0, overwrite_output_dir=True, **workers,
    )


def _trainer(model_name: str, train, workdir: Path, options, protocol: str = "native",
             workers: int | None = None) -> SegTrainer:
    torch.manual_seed(0)
    model = create_model(model_name, id2label=VOC_LABELS.id2label)
    # The mmseg protocol's training jitter draws the short side from 0.5-2.0 x the crop.
    jitter = EvalProtocol(resize="short_side", short_side=options.crop_size) if protocol == "mmseg" else None
    return SegTrainer(model, _arguments(model_name, workdir, options, workers), train, crop_size=options.crop_size,
                      eval_protocol=jitter)


def run_trainer(model_name: str, train, workdir: Path, options) -> float:
    """Samples/s of `SegTrainer.train()` over the measured steps."""
    trainer = _trainer(model_name, train, workdir, options)
    clock = StepClock(options.warmup)
    trainer.add_callback(clock)
    trainer.train()
    return options.steps * options.batch_size / (clock.ended - clock.started)


def run_bare_loop(model_name: str, train, workdir: Path, options) -> float:
    """Samples/s of a plain loop with the Trainer's own model, optimizer, scheduler and batches."""
    trainer = _trainer(model_name, train, workdir, options)  # for its optimizer, scheduler and dataset only
    trainer.create_optimizer_and_scheduler(num_training_steps=options.warmup + options.steps)
    model, optimizer, scheduler = trainer.model.to(trainer.args.device), trainer.optimizer, trainer.lr_scheduler
    args = trainer.args
    loader = torch.utils.data.DataLoader(
        trainer.train_dataset, batch_size=options.batch_size, shuffle=True, drop_last=True,
        collate_fn=trainer.data_collator, num_workers=args.dataloader_num_workers,
        pin_memory=args.dataloader_pin_memory and args.device.type == "cuda",
        persistent_workers=bool(args.dataloader_persistent_workers and args.dataloader_num_workers),
    )
    autocast = torch.autocast(args.device.type, dtype=torch.bfloat16 if args.bf16 else torch.float16,
                              enabled=bool(args.bf16 or args.fp16) and args.device.type == "cuda")
    scaler = torch.amp.GradScaler(enabled=bool(args.fp16) and args.device.type == "cuda")
    model.train()
    step, started = 0, None
    while step < options.warmup + options.steps:
        for batch in loader:
            batch = {key: value.to(args.device, non_blocking=True) for key, value in batch.items()}
            with autocast:
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if args.device.type == "cuda":
                torch.cuda.synchronize()
            if step == options.warmup:
                started = time.perf_counter()
            if step == options.warmup + options.steps:
                break
    return options.steps * options.batch_size / (time.perf_counter() - started)


def data_images_per_second(model_name: str, train, workdir: Path, options, protocol: str = "native",
                           workers: int | None = None) -> dict:
    """Images/s of the training data loader alone under `protocol`'s scale jitter, with `workers`
    data-loader workers (default: the run's)."""
    trainer = _trainer(model_name, train, workdir, options, protocol, workers)
    loader = trainer.get_train_dataloader()
    batches, started = 0, None
    while batches < 2 + options.steps:  # as many epochs as it takes
        for _ in loader:
            batches += 1
            if batches == 2:  # worker start-up excluded
                started = time.perf_counter()
            if batches == 2 + options.steps:
                break
    seconds = time.perf_counter() - started
    return {"images_per_second": options.steps * options.batch_size / seconds,
            "workers": trainer.args.dataloader_num_workers}


def _summary(values: list[float]) -> dict:
    return {"runs": [round(value, 3) for value in values], "min": round(min(values), 3),
            "median": round(statistics.median(values), 3)}


SHARE_TARGET = 0.05  # of a step, for preparing its batch
PROJECTED_WORKERS = 16  # a GPU machine's data-loader workers (the lent H200 machine has 16 cores)


def data_only(train, workdir: Path, options, report: dict) -> dict:
    """The data loader alone under both jitters at each worker count, alternating, and the
    shortest GPU step it keeps preparing a batch under `SHARE_TARGET` of."""
    model = options.models[0]
    runs = {protocol: {workers: [] for workers in options.workers} for protocol in ("native", "mmseg")}
    for _ in range(options.repeats):
        for workers in options.workers:
            for protocol in runs:
                speed = data_images_per_second(model, train, workdir, options, protocol, workers)["images_per_second"]
                runs[protocol][workers].append(speed)
                print(f"{protocol} jitter, {workers} workers: {speed:.1f} images/s", file=sys.stderr, flush=True)
    report["model"] = model
    report["protocols"] = {}
    for protocol, by_workers in runs.items():
        speeds = {str(workers): _summary(values) for workers, values in by_workers.items()}
        # One process's rate: the main process alone (0 workers) prepares every batch itself.
        single = statistics.median(by_workers[min(options.workers)])
        projected = PROJECTED_WORKERS * single
        batch_seconds = options.batch_size / projected
        report["protocols"][protocol] = {
            "images_per_second": speeds,
            "one_process_images_per_second": round(single, 1),
            f"projected_images_per_second_at_{PROJECTED_WORKERS}_workers": round(projected, 1),
            f"batch_seconds_at_{PROJECTED_WORKERS}_workers": round(batch_seconds, 4),
            "shortest_step_under_target_seconds": round(batch_seconds / SHARE_TARGET, 3),
        }
    report["share_target"] = SHARE_TARGET
    report["projected_workers"] = PROJECTED_WORKERS
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--crop_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the clock starts")
    parser.add_argument("--repeats", type=int, default=3, help="alternating Trainer/bare-loop pairs per model")
    parser.add_argument("--images", type=int, default=48, help="synthetic 500x375 / 375x500 training images")
    parser.add_argument("--data_only", action="store_true",
                        help="the data loader alone, under both scale jitters, at each of --workers")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="data-loader workers (--data_only)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--output", default="bench/results/train.json")
    options = parser.parse_args(argv)

    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="bench-train-"))
    data_root = workdir / "voc"
    if not (data_root / "VOCdevkit").exists():
        generate_synthetic_voc(data_root, num_train=options.images, num_val=4, min_size=375, max_size=375,
                               longer_side=500, seed=0)
    train = load_voc(data_root, cache_dir=str(workdir / "cache"))["train"]

    report = {
        "benchmark": "bench_train",
        "date": time.strftime("%Y-%m-%d"),
        "commit": measured_commit(["hf_segcompare", "bench/bench_train.py"]),
        "device": device_name(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "crop_size": options.crop_size,
        "batch_size": options.batch_size,
        "measured_steps": options.steps,
        "warmup_steps": options.warmup,
        "load_average_before": os.getloadavg(),
    }
    if options.data_only:
        report["benchmark"] = "bench_train --data_only"
        data_only(train, workdir, options, report)
        report["load_average_after"] = os.getloadavg()
        return write_report(report, Path(options.output))
    report["models"] = {}
    for name in options.models:
        trainer_runs, bare_runs = [], []
        for _ in range(options.repeats):
            for side, runs in (("trainer", trainer_runs), ("bare", bare_runs)):
                gc.collect()
                runs.append((run_trainer if side == "trainer" else run_bare_loop)(name, train, workdir, options))
                print(f"{name} {side}: {runs[-1]:.2f} samples/s", file=sys.stderr, flush=True)
        data = data_images_per_second(name, train, workdir, options)
        trainer_step = options.batch_size / statistics.median(trainer_runs)
        data_share = options.batch_size / data["images_per_second"] / trainer_step
        report["models"][name] = {
            "trainer_samples_per_second": _summary(trainer_runs),
            "bare_loop_samples_per_second": _summary(bare_runs),
            "trainer_over_bare_loop": round(statistics.median(trainer_runs) / statistics.median(bare_runs), 3),
            "data_loader_images_per_second": round(data["images_per_second"], 1),
            "data_loader_workers": data["workers"],
            "data_share_of_a_step": round(data_share, 4),
        }
    report["load_average_after"] = os.getloadavg()
    output = Path(options.output)
    return write_report(report, output)


if __name__ == "__main__":
    main()

"""Write the benchmarks' tables of docs/benchmarks.md and the README from their JSON files (no
figure is typed by hand).

    python bench/report.py                # print the tables
    python bench/report.py --write docs/benchmarks.md README.md

Each table replaces the lines between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in a
page, for NAME in eval (bench_eval.py), eval-summary (the README's lines of it), train
(bench_train.py), train-data (bench_train.py --data_only), padding (bench_padding.py),
bootstrap (bench_bootstrap.py) and large-image (bench_large_image.py), from the JSON
``bench/results/SOURCE.json`` and any
``SOURCE-*.json`` (the same benchmark on other data); a benchmark without a JSON leaves its block as
it is. ``tests/test_readme.py`` checks that every page's blocks are what this renders from the
committed JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _date(report: dict) -> str:
    return f" {report['date']}" if report.get("date") else ""


def _speed(summary: dict) -> str:
    return f"{summary['median']:.2f} (min {summary['min']:.2f})"


def _markdown(intro: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """An introductory line, then a markdown table of `columns` and `rows` (cells already formatted)."""
    return [intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _commit(report: dict) -> str:
    return f" at commit {report['commit']}" if report.get("commit") else ""


def eval_table(report: dict) -> str:
    pixels = report["pixels_run_per_image"]
    rows = []
    for images, row in report["sizes"].items():
        example, native, mmseg = row["example"], row["native"], row["mmseg"]
        rows.append([images, _speed(example["samples_per_second"]), _speed(native["samples_per_second"]),
                     f"**{row['native_over_example']:.2f}×**", _speed(mmseg["samples_per_second"]),
                     f"**{row['mmseg_over_example']:.2f}×**",
                     " / ".join(f"{side['peak_rss_mib'] / 1024:.2f}" for side in (example, native, mmseg)) + " GiB",
                     " / ".join(f"{side['mean_iou']:.4f}" for side in (example, native, mmseg))])
    lines = _markdown(
        f"Measured{_date(report)}{_commit(report)} on {report['device']}: {report['model']}, {report['images']}, "
        f"eval batch {report['eval_batch_size']}. Pixels run per image: the example {pixels['example']:,} (its "
        f"512×512 resize), `--protocol native` {pixels['native']:,}, `--protocol mmseg` {pixels['mmseg']:,} "
        f"({pixels['mmseg'] / pixels['example']:.2f}× the example's). Load average "
        f"{report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after.",
        ["validation images", "example samples/s", "native samples/s", "native / example", "mmseg samples/s",
         "mmseg / example", "peak RSS: example / native / mmseg", "mIoU: example (at 512×512) / native / mmseg"],
        rows)
    for protocol, memory in report["toolkit_peak_rss_mib"].items():
        sizes = sorted(int(key) for key in memory if key.isdigit())
        lines += ["", f"Toolkit peak RSS under `--protocol {protocol}` at {sizes[0]} and {sizes[-1]} images: "
                      f"{memory[str(sizes[0])] / 1024:.2f} and {memory[str(sizes[-1])] / 1024:.2f} GiB "
                      f"({memory['largest_over_smallest']:.3f}×; target ≤ 1.10)."]
    return "\n".join(lines)


EVAL_TARGETS = {"native": "≥ 1.5×", "mmseg": "≥ 1.0×"}


def eval_summary(report: dict) -> str:
    """The README's lines: toolkit / example at the largest size, under each protocol."""
    images = max(report["sizes"], key=int)
    row = report["sizes"][images]
    return "\n".join(_markdown(
        f"Evaluation speed against the transformers example ({report['model']}, {images} VOC-sized images, eval "
        f"batch {report['eval_batch_size']}, side by side; measured{_date(report)}{_commit(report)} on "
        f"{report['device']}; [details](docs/benchmarks.md#evaluation-against-the-transformers-example)):",
        ["toolkit protocol", "toolkit / example", "target"],
        [[f"`--protocol {protocol}`", f"**{row[f'{protocol}_over_example']:.2f}×**", target]
         for protocol, target in EVAL_TARGETS.items()]))


def train_table(report: dict) -> str:
    rows = [[name, _speed(row["trainer_samples_per_second"]), _speed(row["bare_loop_samples_per_second"]),
             f"**{row['trainer_over_bare_loop']:.3f}×**",
             f"{row['data_loader_images_per_second']:.0f} ({row['data_loader_workers']})",
             f"{row['data_share_of_a_step']:.1%}"] for name, row in report["models"].items()]
    return "\n".join(_markdown(
        f"Measured{_date(report)} on {report['device']} ({report['torch_threads']} threads): random weights, "
        f"the published recipe's optimizer, parameter groups, schedule and clipping, crop {report['crop_size']}, "
        f"batch {report['batch_size']}, {report['measured_steps']} steps timed after {report['warmup_steps']}; "
        f"load average {report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after.",
        ["model", "Trainer samples/s", "bare loop samples/s", "Trainer / bare loop",
         "data loader images/s (workers)", "preparing a batch, share of a step"], rows))


def train_data_table(report: dict) -> str:
    workers = report["projected_workers"]
    counts = list(next(iter(report["protocols"].values()))["images_per_second"])
    rows = []
    for protocol, row in report["protocols"].items():
        jitter = ("long side 0.5–2.0 crops" if protocol == "native"
                  else f"short side 0.5–2.0 × {report['crop_size']} px (mmsegmentation's)")
        rows.append([f"`{protocol}`: {jitter}", *(_speed(row["images_per_second"][count]) for count in counts),
                     f"{row[f'projected_images_per_second_at_{workers}_workers']:.0f}",
                     f"{row[f'batch_seconds_at_{workers}_workers'] * 1000:.0f} ms",
                     f"**{row['shortest_step_under_target_seconds']:.2f} s**"])
    return "\n".join(_markdown(
        f"Measured{_date(report)}{_commit(report)} on {report['device']} ({report['torch_threads']} threads): the "
        f"training data loader alone (decode, scale jitter, crop {report['crop_size']}, flip, normalise, collate), "
        f"batch {report['batch_size']}, {report['measured_steps']} batches timed per run, runs alternating; load "
        f"average {report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after. "
        f"At {workers} workers: {workers} × the one-process rate (0 workers), projected, not measured.",
        ["scale jitter", *(f"images/s, {count} workers" for count in counts), f"images/s, {workers} workers",
         f"a batch at {workers} workers", f"shortest GPU step it stays under {report['share_target']:.0%} of"], rows))


def padding_table(report: dict) -> str:
    rows = [[name, f"{row['batch']['mean_iou']:.4f}", f"{row['square']['mean_iou']:.4f}",
             f"{row['batch']['mean_iou'] - row['square']['mean_iou']:+.4f}",
             f"{row['batch']['samples_per_second']:.1f}", f"{row['square']['samples_per_second']:.1f}"]
            for name, row in report["models"].items()]
    return "\n".join(_markdown(
        f"Measured{_date(report)} on {report['device']}: {report['data']}.",
        ["model", "mIoU, batch padding", "mIoU, square padding", "difference", "eval samples/s, batch", "square"],
        rows))


def bootstrap_table(report: dict) -> str:
    boot, extras = report["bootstrap"], report["per_image_measurements"]
    median = {side: statistics.median(values) for side, values in extras["seconds"].items()}
    rows = [
        [f"95 % interval, {boot['resamples']:,} resamples", f"{boot['images']:,}",
         f"{boot['evaluation_seconds']:.1f} s",
         f"+ {boot['bootstrap_seconds_median_of_5']:.4f} s", f"**{100 * boot['bootstrap_over_evaluation']:.3f} %**",
         "< 5 %"],
        ["boundary IoU + calibration counts", f"{extras['images']:,}", f"{median['confusion_only']:.1f} s",
         f"{median['with_boundary_and_calibration']:.1f} s", f"**{100 * (extras['with_over_without'] - 1):+.1f} %**",
         "none set"],
    ]
    return "\n".join(_markdown(
        f"Measured{_date(report)} on {report['device']} ({report['torch_threads']} threads): {report['model']}, "
        f"{report['images']}, eval batch {report['eval_batch_size']}. First row: one evaluation, then the "
        "bootstrap (median of 5); second row: medians of two alternating evaluations per side.",
        ["what", "images", "evaluation without it", "with it", "added", "target"], rows))


def large_image_table(report: dict) -> str:
    rows = []
    for protocol, result in report["protocols"].items():
        peaks = {side: ", ".join(f"{run['peak_rss_bytes'] / 2**20:,.0f}" for run in runs)
                 for side, runs in result["runs"].items()}
        rows.append([f"`--protocol {protocol}`", peaks["without"], peaks["with"],
                     f"**{result['with_over_without']:.2f}×**", f"≤ {report['target']:g}×"])
    return "\n".join(_markdown(
        f"Measured{_date(report)}{_commit(report)} on {report['device']} ({report['cpu_threads']} cores): "
        f"{report['model']} from random weights, {report['data']}; peak resident memory of each run's process, "
        "alternating, in MiB.",
        ["protocol", "peak, without the large image", f"peak, with one {report['large_image'][1]}×"
         f"{report['large_image'][0]} image", "with / without (highest of each)", "target"], rows))


# NAME -> (the JSON it is rendered from, the renderer)
TABLES = {"eval": ("eval", eval_table), "eval-summary": ("eval", eval_summary), "train": ("train", train_table),
          "train-data": ("train_data", train_data_table),
          "padding": ("padding", padding_table), "bootstrap": ("bootstrap", bootstrap_table),
          "large-image": ("large_image", large_image_table)}
PAGES = ("docs/benchmarks.md", "README.md")


def tables() -> dict[str, str]:
    """NAME -> markdown for the benchmark JSONs in bench/results/: SOURCE.json, then any SOURCE-*.json
    (the same benchmark on other data), one table each."""
    rendered = {}
    for name, (source, render) in TABLES.items():
        main = RESULTS / f"{source}.json"
        files = ([main] if main.is_file() else []) + sorted(RESULTS.glob(f"{source}-*.json"))
        if files:
            rendered[name] = "\n\n".join(render(json.loads(path.read_text())) for path in files)
    return rendered


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.DOTALL)


def render_page(text: str, rendered: dict[str, str] | None = None) -> str:
    """`text` with each of its marked blocks replaced by the table rendered for it."""
    rendered = tables() if rendered is None else rendered
    for name, table in rendered.items():
        text = _block(name).sub(lambda match, table=table: match.group(1) + table + "\n" + match.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, nargs="+", help="the pages whose marked blocks are replaced "
                                                                "(docs/benchmarks.md README.md)")
    options = parser.parse_args()
    rendered = tables()
    if not options.write:
        for name, table in rendered.items():
            print(f"## {name}\n\n{table}\n")
        return
    for page in options.write:
        text = page.read_text()
        if not any(_block(name).search(text) for name in rendered):
            raise SystemExit(f"{page} has no <!-- bench:NAME --> ... <!-- /bench:NAME --> block")
        page.write_text(render_page(text, rendered))


if __name__ == "__main__":
    main()

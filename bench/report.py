"""Write the benchmarks' tables of docs/benchmarks.md from their JSON files (no figure is typed by hand).

    python bench/report.py                # print the tables
    python bench/report.py --write docs/benchmarks.md

Each table replaces the lines between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in that
page, for NAME in eval (bench_eval.py), train (bench_train.py), padding (bench_padding.py) and
bootstrap (bench_bootstrap.py),
from ``bench/results/NAME.json`` and any ``NAME-*.json`` (the same benchmark on other data); a
benchmark without a JSON leaves its block as it is.
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


def eval_table(report: dict) -> str:
    rows = []
    for images, sides in report["sizes"].items():
        example, toolkit = sides["example"], sides["toolkit"]
        rows.append([images, _speed(example["samples_per_second"]), _speed(toolkit["samples_per_second"]),
                     f"**{sides['toolkit_over_example']:.2f}×**", f"{example['peak_rss_mib'] / 1024:.2f} GiB",
                     f"{toolkit['peak_rss_mib'] / 1024:.2f} GiB", f"{example['mean_iou']:.4f}",
                     f"{toolkit['mean_iou']:.4f}"])
    lines = _markdown(
        f"Measured{_date(report)} on {report['device']}: {report['model']}, {report['images']}, eval batch "
        f"{report['eval_batch_size']}; load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after.",
        ["validation images", "example samples/s", "toolkit samples/s", "toolkit / example", "example peak RSS",
         "toolkit peak RSS", "example mIoU (at 512×512)", "toolkit mIoU (native size)"], rows)
    memory = report["toolkit_peak_rss_mib"]
    sizes = sorted(int(key) for key in memory if key.isdigit())
    lines += ["", f"Toolkit peak RSS at {sizes[0]} and {sizes[-1]} images: {memory[str(sizes[0])] / 1024:.2f} and "
                  f"{memory[str(sizes[-1])] / 1024:.2f} GiB ({memory['largest_over_smallest']:.3f}×; target ≤ 1.10)."]
    return "\n".join(lines)


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


TABLES = {"eval": eval_table, "train": train_table, "padding": padding_table, "bootstrap": bootstrap_table}


def tables() -> dict[str, str]:
    """NAME -> markdown for the benchmark JSONs in bench/results/: NAME.json, then any NAME-*.json
    (the same benchmark on other data), one table each."""
    rendered = {}
    for name, render in TABLES.items():
        main = RESULTS / f"{name}.json"
        files = ([main] if main.is_file() else []) + sorted(RESULTS.glob(f"{name}-*.json"))
        if files:
            rendered[name] = "\n\n".join(render(json.loads(path.read_text())) for path in files)
    return rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="the page whose marked blocks are replaced (docs/benchmarks.md)")
    options = parser.parse_args()
    rendered = tables()
    if not options.write:
        for name, table in rendered.items():
            print(f"## {name}\n\n{table}\n")
        return
    text = options.write.read_text()
    for name, table in rendered.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{options.write} has no <!-- bench:{name} --> ... <!-- /bench:{name} --> block")
        text = pattern.sub(lambda match: match.group(1) + table + "\n" + match.group(2), text)
    options.write.write_text(text)


if __name__ == "__main__":
    main()

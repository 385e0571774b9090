"""What the benchmarks share: the device's name, and writing their JSON."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def device_name() -> str:
    """The GPU's name when there is one (every GPU figure names it), else the CPU's architecture."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})"


def measured_commit(paths: list[str]) -> str:
    """The commit measured, with ``+changes`` when any of `paths` (the package, the bench) differ from it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                            check=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.strip()
    return commit + ("+changes" if changed else "")


def write_report(report: dict, output: str | Path) -> dict:
    """Write `report` to `output` (JSON, folders created) for ``bench/report.py``, and print it."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report

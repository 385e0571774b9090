"""What the benchmarks share: the device's name, and writing their JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path


def device_name() -> str:
    """The GPU's name when there is one (every GPU figure names it), else the CPU's architecture."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})"


def write_report(report: dict, output: str | Path) -> dict:
    """Write `report` to `output` (JSON, folders created) for ``bench/report.py``, and print it."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report

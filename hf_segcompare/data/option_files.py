"""The small files an option names (``--labels``, ``--label_map``, ``--mask_colors``): found and read
the same way, each mistake one line naming the option, the file and what to give instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError


def read_option_file(path: str | Path, option: str, hint: str, encoding: str = "utf-8") -> tuple[Path, str]:
    """The file `option` names (``~`` expanded) and its text.

    Raises:
        DataError: no such file (with `hint`: what the option takes), or one that cannot be read.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file. {hint}")
    try:
        return path, path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{option} {path}: cannot be read ({getattr(error, 'strerror', None) or error}).") from None


def parse_json(text: str, where: str) -> Any:
    """`text` as JSON.

    Raises:
        DataError: ``{where}: not valid JSON (...)``.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error}).") from None


__all__ = ["parse_json", "read_option_file"]

"""Public names imported on first use (as transformers' own lazy module does): the package root and
`hf_segcompare.models` stay cheap to import, torch loading only when a name that needs it is used."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_attributes(package: str, module_of: dict[str, str]) -> tuple[Callable, Callable]:
    """A module's `__getattr__` and `__dir__` for `package`: each name of `module_of` (name -> its
    submodule, relative to `package`) is imported from that submodule when first used, then kept."""

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        setattr(sys.modules[package], name, value)  # imported once
        return value

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *module_of])

    return __getattr__, __dir__


__all__ = ["lazy_attributes"]

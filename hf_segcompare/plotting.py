"""matplotlib for files only (no display), imported when a figure is first drawn."""

from __future__ import annotations


def pyplot():
    """`matplotlib.pyplot` on the Agg backend: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


__all__ = ["pyplot"]

"""Uninstall what the project no longer needs after a venv was moved down to other versions.

The lower-bound venv is a copy of the latest-releases venv moved down to constraints/minimum.txt.
A package that only the latest releases require stays behind (transformers 5.25 requires `kernels`,
whose own requirement, huggingface_hub >= 1.32, the floor 1.5 does not meet), and `pip check` then
fails on a package nothing at the floors uses. This walks the requirements from the project with
the extras CI installs, evaluating each marker, and uninstalls every distribution it does not reach
(pip, setuptools and wheel aside): the venv holds what a fresh install at the pins would.

    python .ci/prune_unrequired.py hf-segcompare test
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

KEPT = {"pip", "setuptools", "wheel"}


def reached(root: str, extras: set[str]) -> set[str]:
    """The distributions `root` (with `extras`) requires, transitively, as canonical names."""
    installed = {canonicalize_name(dist.metadata["Name"]): dist for dist in metadata.distributions()}
    walked: set[tuple[str, frozenset[str]]] = set()  # a package is walked again for extras it was not asked with
    pending = [(canonicalize_name(root), frozenset(extras))]
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in walked or name not in installed:
            continue
        walked.add((name, wanted))
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in walked}


def main(argv: list[str]) -> int:
    root, extras = argv[0], set(argv[1:])
    needed = reached(root, extras) | KEPT
    unneeded = sorted({canonicalize_name(dist.metadata["Name"]) for dist in metadata.distributions()} - needed)
    if unneeded:
        print(f"not required at these versions, uninstalled: {', '.join(unneeded)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *unneeded], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The declared dependency ranges: setup.cfg's lower bounds are what constraints/minimum.txt pins, the
versions .ci/run installs into its second venv to run the fast subset on (pytest -m fast)."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO_ROOT, declared_requirements, setup_cfg_options

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

MINIMUM = REPO_ROOT / "constraints" / "minimum.txt"


def _lower_bound(requirement: Requirement) -> Version | None:
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(floors) if floors else None


def _pins(text: str) -> dict[str, Version]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints/minimum.txt pins exactly: {line!r}"
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_every_declared_dependency_has_a_lower_bound_and_the_minimum_constraints_pin_exactly_it():
    declared = {canonicalize_name(r.name): _lower_bound(r) for r in declared_requirements()}
    assert all(declared.values()), [name for name, floor in declared.items() if floor is None]
    assert _pins(MINIMUM.read_text()) == declared



def test_the_readme_states_the_tested_range_setup_cfg_declares():
    import re

    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    tested_range = readme[readme.index("**Tested range.**"):]
    stated = [f"Python ≥ {setup_cfg_options()['python_requires'].removeprefix('>=')}"]
    stated += [f"{r.name} ≥ {_lower_bound(r)}" for r in declared_requirements()]
    missing = [floor for floor in stated if not re.search(re.escape(floor) + r"(?![\d.]*\d)", tested_range)]
    assert not missing, f"README.md's tested range does not say {missing}: state setup.cfg's floors there"

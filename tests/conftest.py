"""Shared fixtures: tiny VOC-format trees written by the generator, and a way to launch run_seg.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Keep the datasets Arrow cache of this test session out of the user's ~/.cache (read at import).
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="segcompare-datasets-"))
os.environ.setdefault("HF_SEGCOMPARE_CACHE", tempfile.mkdtemp(prefix="segcompare-cache-"))

import pytest

from hf_segcompare.data import generate_synthetic_voc

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_SEG = REPO_ROOT / "scripts" / "run_seg.py"
# 7 validation images: with an eval batch of 2 on 2 processes (4 per step) the last step is partial.
TINY_TREE = {"num_train": 16, "num_val": 7, "min_size": 32, "max_size": 64, "seed": 3}


def setup_cfg_options():
    """setup.cfg's [options] section."""
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config["options"]


def declared_requirements() -> list:
    """setup.cfg's install_requires, as `packaging` requirements."""
    from packaging.requirements import Requirement

    return [Requirement(line) for line in setup_cfg_options()["install_requires"].split("\n") if line.strip()]


def pytest_report_header(config) -> str:
    """The installed version of every declared dependency, at the top of the run's log: CI runs the
    suite on the latest releases and the fast subset on constraints/minimum.txt, and its log says which."""
    from importlib.metadata import version

    return "dependencies: " + ", ".join(f"{r.name} {version(r.name)}" for r in declared_requirements())


@pytest.fixture(scope="session")
def voc_tree(tmp_path_factory) -> Path:
    """A small VOC-format folder (holding VOCdevkit/VOC2012) shared by the whole session; read-only."""
    root = tmp_path_factory.mktemp("voc")
    generate_synthetic_voc(root, **TINY_TREE)
    return root


def script_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess run: offline, caches inside the test's folder."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_SEGCOMPARE_CACHE=str(tmp_path / "segcompare_cache"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    return env


def free_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(args: list[str], tmp_path: Path, num_processes: int = 1, timeout: int = 600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`accelerate launch [--multi_gpu --num_processes N] scripts/run_seg.py ARGS` as a user types it.

    `env` replaces `script_env(tmp_path)` (e.g. to point HF_ENDPOINT at a test Hub)."""
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        accelerate += ["--multi_gpu", "--num_processes", str(num_processes), "--main_process_port", str(free_port())]
    else:
        accelerate += ["--num_processes", "1"]
    return subprocess.run(
        [*accelerate, str(RUN_SEG), *args], cwd=tmp_path, env=env or script_env(tmp_path),
        capture_output=True, text=True, timeout=timeout,
    )


def run_plain(args: list[str], tmp_path: Path, timeout: int = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python scripts/run_seg.py ARGS` (no launcher), for argument errors."""
    return subprocess.run(
        [sys.executable, str(RUN_SEG), *args], cwd=tmp_path, env=env or script_env(tmp_path),
        capture_output=True, text=True, timeout=timeout,
    )


def run_script_in_process(script: Path, argv: list[str], capsys) -> tuple[int, str, str]:
    """A script's main(argv) in this process (no interpreter start-up): exit status, stderr, stdout."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{script.stem}_under_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    status = module.main(argv)
    captured = capsys.readouterr()
    return status, captured.err, captured.out


def run_seg_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """scripts/run_seg.py's main() in this process: exit status, stderr, stdout."""
    return run_script_in_process(RUN_SEG, argv, capsys)

"""How many CPU threads each process computes with.

`accelerate launch` exports ``OMP_NUM_THREADS=1`` to every process it starts unless it was told a
number (``OMP_NUM_THREADS`` in its own environment, or ``--num_cpu_threads_per_process``), so a
one-process run on a CPU used one core of however many it had. A process started by accelerate
without such a choice gets the cores it may run on divided by the processes on its machine; a
choice the user made, and runs on a GPU, are left alone. Plain ``python`` is left alone too: torch
then uses every core unless ``OMP_NUM_THREADS`` says otherwise.

Whether the user chose is read from the launcher itself (the parent process's environment and
command line, under ``/proc``); where that cannot be read, nothing is changed.
"""

from __future__ import annotations

import os
from pathlib import Path

ACCELERATE_MARKER = "ACCELERATE_DYNAMO_BACKEND"  # every accelerate launcher exports it to its processes
THREADS_OPTION = "--num_cpu_threads_per_process"


def _parent(name: str) -> bytes | None:
    try:
        return (Path("/proc") / str(os.getppid()) / name).read_bytes()
    except OSError:
        return None


def chosen_threads(environ=None, parent_environ: bytes | None = None, parent_cmdline: bytes | None = None,
                   cores: int | None = None) -> int | None:
    """The thread count this process should use, or None to leave torch's as it is.

    Args:
        environ: this process's environment (default: `os.environ`).
        parent_environ, parent_cmdline: the launcher's ``/proc/<ppid>/environ`` and ``cmdline``
            (NUL-separated; default: read them).
        cores: the cores this process may run on (default: its CPU affinity).
    """
    environ = os.environ if environ is None else environ
    if ACCELERATE_MARKER not in environ:
        return None
    parent_environ = _parent("environ") if parent_environ is None else parent_environ
    parent_cmdline = _parent("cmdline") if parent_cmdline is None else parent_cmdline
    if parent_environ is None or parent_cmdline is None:
        return None
    launcher_env = {entry.split(b"=", 1)[0] for entry in parent_environ.split(b"\0") if entry}
    launcher_args = [argument.split(b"=", 1)[0] for argument in parent_cmdline.split(b"\0")]
    if b"OMP_NUM_THREADS" in launcher_env or THREADS_OPTION.encode() in launcher_args:
        return None  # the user's choice
    cores = cores or len(os.sched_getaffinity(0))
    local_processes = int(environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // local_processes)


def apply_cpu_threads() -> int:
    """Set torch's CPU threads as `chosen_threads` says (not on a GPU); return the count in use."""
    import torch

    if not torch.cuda.is_available():
        threads = chosen_threads()
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
    return torch.get_num_threads()


__all__ = ["apply_cpu_threads", "chosen_threads"]

"""One run per output folder at a time.

Two runs writing one folder would interleave checkpoints and leave the folder holding the second
run, with both reporting success. The main process of a run holds an exclusive `fcntl.flock` on
``<output_dir>/.hf_segcompare.lock`` from the moment it decides anything about the folder (or, for a
folder that does not exist yet, from the moment it first writes there) until it ends. The kernel
releases the lock when the process ends however it ends, so a killed run leaves no stale lock; the
file itself stays (removing it would let two runs lock two different files) and names its last
holder, which the refusal quotes.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from ..errors import UsageError

LOCK_FILE = ".hf_segcompare.lock"


class RunLock:
    """The output folder's lock, taken by `acquire` (and `acquire_if_exists`), released on exit."""

    def __init__(self, output_dir: str | Path, enabled: bool = True):
        self.folder = Path(output_dir)
        self.enabled = enabled  # only the main process writes the folder, so only it locks
        self._handle = None

    def acquire_if_exists(self) -> None:
        """Take the lock if the folder exists (a new folder is locked when first written)."""
        if self.folder.is_dir():
            self.acquire()

    def acquire(self) -> None:
        """Take the lock (creating the folder); a no-op when held already or not enabled.

        Raises:
            UsageError: another run holds it; the message names the folder and that run.
        """
        if not self.enabled or self._handle is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(f"--output_dir {self.folder} is in use by another run ({holder}): wait for it to end, "
                             "or pass another --output_dir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_FILE", "RunLock"]

"""The command lines, runnable from an installed package without the checkout, as one console
command with a verb per task (`hf_segcompare.cli.main`):

    hf-segcompare train --model segformer-b0 --from_scratch    # accelerate launch -m hf_segcompare.cli.run_seg ...
    hf-segcompare compare | experiment | predict | export | push | models ...

or each module on its own:

    accelerate launch -m hf_segcompare.cli.run_seg --model segformer-b0 --from_scratch
    python -m hf_segcompare.cli.predict | compare | push | run_experiment | export | models

``scripts/*.py`` in the repository are the same commands (thin wrappers over these modules).
Each module's ``main(argv, prog)`` returns the exit status: 0 done, 2 bad input (nothing trained or
written), 1 stopped with what was kept said, 130 interrupted.
"""


def error_status(error) -> int:
    """Print a toolkit error (`hf_segcompare.errors.SegCompareError`) as one ``error:`` line on stderr
    and return its exit status: 2 for bad input (`UsageError`), 1 otherwise."""
    import sys

    from ..errors import UsageError

    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, UsageError) else 1


class stop_signals_interrupt:
    """Within it, SIGTERM interrupts like Ctrl-C (SIGINT), once: the first of either raises
    `KeyboardInterrupt`, and any that follow are ignored while the command says where it stopped.

    Ctrl-C in a terminal reaches every process of the job: under ``accelerate launch`` the launcher
    catches it and at once sends SIGTERM to the run, which would otherwise die of it before printing
    the one line a rerun needs. ``signal_number`` holds the signal that stopped the run (None: none),
    so the exit status can be 128 + it, as a shell reports a process a signal ended.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.signal_number = None
        self._previous = {}

    def _handle(self, signal_number, frame):
        if self.signal_number is None:
            self.signal_number = signal_number
            raise KeyboardInterrupt
        # a second signal (the launcher's SIGTERM after the terminal's SIGINT) must not cut the message short

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # Python sets handlers there only
            for name in self.SIGNALS:
                number = getattr(signal, name)
                if signal.getsignal(number) is not signal.SIG_IGN:  # a job started with nohup or '&' keeps ignoring
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def exit_status(self) -> int:
        """128 + the signal that stopped the run (130 for Ctrl-C)."""
        import signal

        return 128 + (self.signal_number or signal.SIGINT)

    def __exit__(self, *exc_info):
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False

"""The command lines, runnable from an installed package without the checkout:

    accelerate launch -m hf_segcompare.cli.run_seg --model segformer-b0 --from_scratch
    python -m hf_segcompare.cli.predict | compare | push | run_experiment | export

``scripts/*.py`` in the repository are the same commands (thin wrappers over these modules).
Each module's ``main(argv)`` returns the exit status: 0 done, 2 bad input (nothing trained or
written), 1 stopped with what was kept said, 130 interrupted.
"""


def error_status(error) -> int:
    """Print a toolkit error (`hf_segcompare.errors.SegCompareError`) as one ``error:`` line on stderr
    and return its exit status: 2 for bad input (`UsageError`), 1 otherwise."""
    import sys

    from ..errors import UsageError

    print(f"error: {error}", file=sys.stderr)
    return 2 if isinstance(error, UsageError) else 1

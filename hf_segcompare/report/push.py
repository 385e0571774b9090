"""Publish an output folder to the Hub: weights, config, card and its figures, results.json.

Used at the end of a run with ``--push_to_hub`` and by ``hf_segcompare.cli.push`` for a folder that is
already on disk (a retry after a failed push, or a comparison page). A push never touches the
local files: when it fails, everything trained and written stays, and the error says how to retry.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PushError, UsageError
from ..hub_access import repo_id_problem
from .results import RESULTS_FILE, RunResults

# Trainer's pickled arguments and checkpoints stay local: the former would carry any token
# the arguments held, the latter are for resuming, not for users of the model.
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "_*", "training_args.bin", "*.part", ".hf_segcompare.lock"]


def retry_command(output_dir: str | Path, repo_id: str) -> str:
    """The command that pushes `output_dir` again, its arguments quoted for the shell."""
    import shlex
    import sys

    return " ".join(shlex.quote(part) for part in (
        sys.executable, "-m", "hf_segcompare.cli.push", str(output_dir), "--hub_model_id", repo_id))


def check_repo_id(repo_id: str) -> None:
    """Raise `UsageError` for a repo id the Hub would refuse, before anything is sent."""
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise UsageError(f"--hub_model_id {repo_id!r} is not a Hub repo id ({problem}): pass owner/name, e.g. "
                         "you/segformer-b0-voc.")


def push_folder(output_dir: str | Path, repo_id: str, token: str | None = None, private: bool | None = None,
                commit_message: str = "Upload model trained with hf_segcompare") -> str:
    """Create `repo_id` if needed and upload `output_dir` (see IGNORE_PATTERNS); return the commit URL.

    A run's results.json is then written again locally with the commit (`RunResults.hub`): the
    uploaded copy cannot name the commit that holds it.

    Raises:
        PushError: with the retry command; no local file is changed.
    """
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    check_repo_id(repo_id)
    if not output_dir.is_dir():
        raise PushError(f"{output_dir} does not exist: nothing to push.")
    results_file = output_dir / RESULTS_FILE
    results = RunResults.read(results_file) if results_file.is_file() else None
    if results is not None and results.status != "complete":
        raise PushError(f"{results_file} records a run that did not finish ({results.status}): it is not a result to "
                        "publish. Train it again (see the error the run printed).")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=output_dir, repo_id=repo_id, commit_message=commit_message,
                                   ignore_patterns=IGNORE_PATTERNS)
    except Exception as error:  # network, HTTP and auth errors all mean the same to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if token:
            reason = reason.replace(token, "<token>")
        raise PushError(
            f"pushing {output_dir} to {repo_id} failed ({type(error).__name__}: {reason}). Everything is still in "
            f"{output_dir}. Retry with: {retry_command(output_dir, repo_id)}"
        ) from None
    if results is not None:
        results.hub = {"repo_id": repo_id, "commit_url": commit.commit_url}
        results.write(results_file)
    return commit.commit_url

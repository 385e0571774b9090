"""Whether the Hub can be used now, and where a name points: the one Hub-access module that data,
models and push share.

Every path that may read from the Hub asks here first, so that an unreachable Hub is answered in
seconds with the option to pass instead, never after the clients' own retries.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import UsageError


def hub_endpoint() -> str:
    """The Hub endpoint the huggingface_hub client will use (HF_ENDPOINT, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline_mode() -> bool:
    """True when HF_HUB_OFFLINE asks every client to stay off the network."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """None when the Hub endpoint accepts a connection within `timeout`, else why not.

    The clients' own retries take tens of seconds to give up; this answers in at most `timeout`.
    """
    endpoint = urlparse(hub_endpoint())
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        return f"the Hub at {hub_endpoint()} cannot be reached: {error}"
    return None


def hub_problem() -> str | None:
    """Why the Hub cannot be used now (None when it can, or when HF_HUB_OFFLINE leaves the answer to
    the clients' local cache): the one reachability check every Hub-reading path makes first."""
    return None if hub_offline_mode() else hub_unreachable_reason()


def require_hub(what: str, ways_out: str, error=UsageError) -> None:
    """Fail within seconds, naming `what` needed the Hub and the `ways_out`, when it cannot be reached.

    With HF_HUB_OFFLINE set this passes: the clients then answer from their local cache, or say
    themselves that it holds nothing.

    Raises:
        UsageError (or `error`): ``"{what}: the Hub at ... cannot be reached: ... {ways_out}"``.
    """
    reason = hub_problem()
    if reason:
        raise error(f"{what}: {reason}. {ways_out}")


def repo_id_problem(name: str) -> str | None:
    """Why the Hub would refuse `name` as a repo id (``owner/name`` or ``name``); None when it would not."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as error:
        return str(error).splitlines()[0]
    return None


def local_or_hub(name_or_path: str, what: str, ways_out: str, error=UsageError) -> Path | None:
    """Where `name_or_path` points: the local folder it names (returned), or a Hub id (None),
    checked reachable within seconds.

    Raises:
        UsageError (or `error`): neither a folder nor a Hub id; or a Hub id while the Hub cannot be
            reached. Both name `what` and the `ways_out`.
    """
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return folder
    if repo_id_problem(name_or_path) is not None:
        raise error(f"{what}: no such folder, and not a Hub id either. {ways_out}")
    require_hub(f"{what}: not a local folder, and as a Hub id", ways_out, error)
    return None


__all__ = ["hub_endpoint", "hub_offline_mode", "hub_problem", "hub_unreachable_reason", "local_or_hub",
           "repo_id_problem", "require_hub"]

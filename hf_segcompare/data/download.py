"""Fetch the official Pascal VOC 2012 trainval tar: progress bar, resume, MD5 check.

Only the standard library speaks HTTP here (urllib): one GET, with a ``Range`` header when a
partial file is already on disk. Unreachable hosts fail within `timeout` seconds with a message
that says where to put the tar instead.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError

VOC_TRAINVAL_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_TRAINVAL_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC_TRAINVAL_NAME = "VOCtrainval_11-May-2012.tar"
CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    """MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _already_verified(path: Path, md5: str) -> bool:
    """True when `path` was checked against `md5` and has not changed since (skips re-hashing 2 GB)."""
    marker = _verified_marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    return json.loads(marker.read_text()) == _marker_content(path, md5)


def download_voc(
    dest_dir: str | Path,
    url: str = VOC_TRAINVAL_URL,
    md5: str = VOC_TRAINVAL_MD5,
    filename: str = VOC_TRAINVAL_NAME,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Return `dest_dir/filename`, downloading it first if it is not there and verified.

    A partial download (``<filename>.part``) is resumed with an HTTP Range request; a server that
    ignores the range restarts it. The finished file must match `md5`, or it is deleted and an
    error says so.

    Raises:
        DataError: the host cannot be reached (with where to put the file by hand), the server
            answers with an error, or the checksum does not match.
    """
    from tqdm.auto import tqdm

    dest_dir = Path(dest_dir).expanduser()
    target = dest_dir / filename
    if _already_verified(target, md5):
        return target
    if target.is_file():  # put there by hand, or verified before the marker existed
        _verify(target, md5, url)
        _mark_verified(target, md5)
        return target

    dest_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(filename + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already complete
            response = None
        else:
            raise DataError(f"downloading {url} failed: HTTP {error.code} {error.reason}. {_by_hand(target)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"cannot reach {url} ({reason}). {_by_hand(target)}") from None

    if response is not None:
        with response:
            resumed = offset and response.status == 206
            total = response.headers.get("Content-Length")
            total = int(total) + (offset if resumed else 0) if total else None
            with open(partial, "ab" if resumed else "wb") as handle, tqdm(
                total=total, initial=offset if resumed else 0, unit="B", unit_scale=True,
                desc=filename, disable=not progress,
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    handle.write(chunk)
                    bar.update(len(chunk))
    _verify(partial, md5, url)
    partial.rename(target)
    _mark_verified(target, md5)
    return target


def _marker_content(path: Path, md5: str) -> dict:
    stat = path.stat()
    return {"md5": md5, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _mark_verified(path: Path, md5: str) -> None:
    """Record that `path` as it is now matches `md5`, so the next run does not hash 2 GB again."""
    _verified_marker(path).write_text(json.dumps(_marker_content(path, md5)))


def _verify(path: Path, md5: str, url: str) -> None:
    actual = file_md5(path)
    if actual != md5:
        path.unlink()
        raise DataError(
            f"{path.name} from {url} has MD5 {actual}, expected {md5}: the file is corrupt or not the "
            "official release, and was deleted. Run again to download it afresh."
        )


def _by_hand(target: Path) -> str:
    return (
        f"Download {target.name} by other means and put it at {target} (or pass --data_dir with its path, "
        "or with a folder holding VOCdevkit/VOC2012); --dataset_name synthetic needs no download."
    )

"""Read access to a dataset release wherever it lies: an extracted folder, or its official archives.

Every source presents the same view, paths relative to the release's root (for VOC the `VOC2012`
folder: ``JPEGImages/<id>.jpg``, ``ImageSets/Segmentation/train.txt``, ...), so a loader never
cares which one it reads. Archives (tar, zip) are read in place: their member index is built once,
then every file is one seek and one read. A release shipped as several archives (Cityscapes'
images and annotations) is one `CombinedSource` over them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
import zipfile
from pathlib import Path

from ..errors import DataError


def file_signature(path: Path) -> str:
    """What changes when the file at `path` is rewritten: size, modification time, inode and ctime.

    The modification time alone can be set back (``os.utime``, ``cp -p``, ``rsync -t``, an archive
    extracted again); the status-change time (ctime) cannot, and a file replaced by a new one gets a
    new inode. So a rewritten file gets a new cache even at the same size and mtime.
    """
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}"


class FolderSource:
    """An extracted release folder (e.g. `VOC2012`)."""

    def __init__(self, root: Path):
        self.root = root
        self.description = str(root)

    def exists(self, relative: str) -> bool:
        return self._path(relative).is_file()

    def _path(self, relative: str) -> Path:
        """`relative` under the root; a path that climbs out of it (``..``, absolute) is refused. Checked
        by name, not resolved: a dataset folder may hold links to files stored elsewhere."""
        normal = posixpath.normpath(relative.replace("\\", "/"))
        if normal == ".." or normal.startswith(("../", "/")) or Path(relative).is_absolute():
            raise DataError(f"{relative!r} names a file outside {self.root}: a file of a dataset is read from "
                            "inside its folder. Fix the list or file that names it.")
        return self.root / normal

    def files(self, under: str) -> list[str]:
        """Every file below the folder `under`, as paths relative to the root, sorted."""
        folder = self.root / under
        return sorted(str(path.relative_to(self.root)) for path in folder.rglob("*") if path.is_file()) \
            if folder.is_dir() else []

    def read_bytes(self, relative: str) -> bytes:
        return self._path(relative).read_bytes()

    def location(self, relative: str) -> str:
        """How an error message should name this file."""
        return str(self.root / relative)

    def signature(self, relatives: list[str]) -> str:
        """Changes whenever any of these files changes: see `file_signature`."""
        digest = hashlib.sha256()
        for relative in relatives:
            digest.update(f"{relative}\0{file_signature(self.root / relative)}\n".encode())
        return digest.hexdigest()


class ArchiveSource:
    """What the archives share: an index of their members by path relative to the release's root
    (`prefix` inside the archive), built once; a subclass opens the archive and reads one member."""

    def __init__(self, path: Path, prefix: str, members: dict):
        self.path, self.prefix, self._members = path, prefix, members
        self.description = str(path)

    def names(self) -> list[str]:
        """Every file in the archive, relative to `prefix`."""
        return list(self._members)

    def exists(self, relative: str) -> bool:
        return relative in self._members

    def files(self, under: str) -> list[str]:
        prefix = under.rstrip("/") + "/"
        return sorted(name for name in self._members if name.startswith(prefix))

    def location(self, relative: str) -> str:
        return f"{self.path}:{self.prefix}{relative}"

    def signature(self, relatives: list[str]) -> str:
        """The archive's own signature: any change to it changes every member's."""
        return hashlib.sha256(json.dumps([str(self.path.resolve()), self.prefix, file_signature(self.path)]).encode()
                              ).hexdigest()

    def __getstate__(self):  # datasets may pickle the generator's arguments; reopen on the other side
        return {"path": self.path, "prefix": self.prefix}

    def __setstate__(self, state):
        self.__init__(state["path"], state["prefix"])


class TarSource(ArchiveSource):
    """`VOCtrainval_11-May-2012.tar` (or any tar holding a `VOC2012` folder), read without extracting;
    `prefix` (found when not given) is the `VOC2012/` folder inside it."""

    def __init__(self, tar_path: Path, prefix: str | None = None):
        try:
            self._tar = tarfile.open(tar_path)  # noqa: SIM115 - kept open for random access
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError) as error:
            raise DataError(f"{tar_path} is not a readable tar file ({error}): pass the official "
                            "VOCtrainval_11-May-2012.tar (MD5 6cd6e144f989b92b3379bac3b3de84fd) or an extracted "
                            "folder as --data_dir.") from None
        if prefix is None:
            roots = {m.name.split("VOC2012/", 1)[0] + "VOC2012/" for m in members if "VOC2012/ImageSets/" in m.name}
            if len(roots) != 1:
                raise FileNotFoundError(
                    f"{tar_path} holds no VOC2012/ImageSets/Segmentation/train.txt: it is not a VOC release tar."
                )
            prefix = roots.pop()
        super().__init__(tar_path, prefix, {m.name[len(prefix):]: m for m in members
                                            if m.isfile() and m.name.startswith(prefix)})

    def read_bytes(self, relative: str) -> bytes:
        return self._tar.extractfile(self._members[relative]).read()


class ZipSource(ArchiveSource):
    """A zip archive holding a release, read without extracting; paths relative to `prefix` inside it."""

    def __init__(self, zip_path: Path, prefix: str = ""):
        try:
            self._zip = zipfile.ZipFile(zip_path)  # noqa: SIM115 - kept open for random access
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{zip_path} is not a readable zip file ({error}): pass the release's official archive "
                            "or an extracted folder as --data_dir.") from None
        super().__init__(zip_path, prefix, {info.filename[len(prefix):]: info for info in self._zip.infolist()
                                            if not info.is_dir() and info.filename.startswith(prefix)})

    def read_bytes(self, relative: str) -> bytes:
        return self._zip.read(self._members[relative])


class CombinedSource:
    """Several sources seen as one release: a path belongs to the source that holds its top folder
    (Cityscapes ships ``leftImg8bit/`` and ``gtFine/`` as two archives)."""

    def __init__(self, sources: dict[str, object]):
        self.sources = sources  # top folder -> source
        self.description = " + ".join(source.description for source in sources.values())

    def _source(self, relative: str):
        return self.sources[relative.split("/", 1)[0]]

    def exists(self, relative: str) -> bool:
        top = relative.split("/", 1)[0]
        return top in self.sources and self.sources[top].exists(relative)

    def files(self, under: str) -> list[str]:
        return self._source(under).files(under)

    def read_bytes(self, relative: str) -> bytes:
        return self._source(relative).read_bytes(relative)

    def location(self, relative: str) -> str:
        return self._source(relative).location(relative)

    def signature(self, relatives: list[str]) -> str:
        by_top: dict[str, list[str]] = {}
        for relative in relatives:
            by_top.setdefault(relative.split("/", 1)[0], []).append(relative)
        return hashlib.sha256(json.dumps(
            [[top, self.sources[top].signature(paths)] for top, paths in sorted(by_top.items())]).encode()
        ).hexdigest()


def zip_holding(path: Path, marker: str) -> ZipSource | None:
    """A `ZipSource` rooted where `marker` (a path inside the release, e.g. ``images/training/``) lies in
    the zip at `path`; None when the zip holds no such path."""
    probe = ZipSource(path)
    for name in probe.names():
        if f"/{marker}" in f"/{name}":
            prefix = name[: (f"/{name}").index(f"/{marker}")]
            return ZipSource(path, prefix)
    return None


def open_voc_source(data_dir: str | Path) -> FolderSource | TarSource:
    """The source for `data_dir`: a `.tar` file, or a folder holding `VOCdevkit/VOC2012`, `VOC2012`, or being it.

    Raises:
        FileNotFoundError: naming the missing path.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise FileNotFoundError(
            f"VOC data {data_dir} does not exist. Pass --data_dir with a folder that holds VOCdevkit/VOC2012 "
            "(or is that folder), or the official VOCtrainval_11-May-2012.tar; or use --dataset_name synthetic."
        )
    if data_dir.is_file():
        return TarSource(data_dir)
    for candidate in (data_dir / "VOCdevkit" / "VOC2012", data_dir / "VOC2012", data_dir):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return FolderSource(candidate)
    raise FileNotFoundError(
        f"{data_dir / 'ImageSets' / 'Segmentation' / 'train.txt'} is missing (nor is there "
        f"{data_dir / 'VOCdevkit' / 'VOC2012' / 'ImageSets' / 'Segmentation'}): {data_dir} is not a "
        "VOC-format folder. Pass the folder that holds VOCdevkit/VOC2012, or VOC2012 itself."
    )

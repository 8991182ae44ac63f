"""Atomic file writes: a file appears under its final name complete, or not at all.

``atomic_write(path, write)`` writes through ``write(f)`` into a hidden temporary file in
``path``'s folder (same file system), flushes and fsyncs it, then renames it over ``path``. A
failure (a full disk: ENOSPC, a read-only folder, ...) removes the temporary file, leaves any
earlier ``path`` untouched and raises ``WriteFailed``, an ``OSError`` with the same errno whose
message names the path and the errno, e.g.
``cannot write runs/x/snapshots/ad_fuse_iter_8.caffemodel: [Errno 28 ENOSPC] No space left on device``.

Caffe writes its own files (snapshots, ``net.save``) and aborts the process where a write fails:
such a writer writes into a ``Staging`` folder checked for room first, and ``publish`` moves the
finished file to its final name.
"""
from __future__ import annotations

import errno as errno_names
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_MARK = ".tmp-"   # temporary names: .<name>.tmp-<pid>


class WriteFailed(OSError):
    """A file could not be written; ``str()`` names the path and the errno."""

    def __init__(self, path: Path, err: OSError) -> None:
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.path = path

    def __str__(self) -> str:
        code = self.errno if self.errno is not None else "?"
        name = errno_names.errorcode.get(self.errno, "") if self.errno is not None else ""
        return f"cannot write {self.path}: [Errno {code}{' ' + name if name else ''}] {self.strerror}"


def temp_name(path: Path) -> Path:
    """The temporary name ``atomic_write`` uses for ``path``."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` atomically (see the module's docstring)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise WriteFailed(path, err) from err
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy the file ``src`` to ``dst`` atomically."""
    def write(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)
    return atomic_write(dst, write)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


class Staging:
    """The folder a writer that cannot fail cleanly writes into, Caffe's snapshots and
    ``net.save``: ``link``, a symbolic link (e.g. the solver's snapshot_prefix lies under it)
    re-pointed before each write at a private folder in the first candidate with room for it
    (``point(need)``). Caffe aborts the process on a failed write (``Check failed:
    proto.SerializeToOstream``), so the room is checked first: none anywhere is a ``WriteFailed``
    (ENOSPC) naming the last candidate (the run's snapshot folder), raised before Caffe writes
    anything. ``publish`` then moves each staged file to its final name."""

    def __init__(self, root: Path, candidates: list[Path]) -> None:
        self.link = root / "stage"
        self.candidates = candidates
        self.made: dict[Path, Path] = {}   # candidate -> its private folder
        self.point(0)

    def point(self, need: int) -> Path:
        for folder in self.candidates:
            if folder.is_dir() and os.access(folder, os.W_OK) and free_bytes(folder) >= need:
                if folder not in self.made:
                    self.made[folder] = Path(tempfile.mkdtemp(prefix=".gpsnet-stage-", dir=folder))
                tmp_link = self.link.with_name("stage.new")
                tmp_link.unlink(missing_ok=True)
                tmp_link.symlink_to(self.made[folder])
                os.replace(tmp_link, self.link)
                return self.made[folder]
        raise WriteFailed(self.candidates[-1], OSError(errno_names.ENOSPC, f"{os.strerror(errno_names.ENOSPC)} (a snapshot "
                                                       f"needs about {-(-need >> 20)} MiB; none of "
                                                       f"{[str(c) for c in self.candidates]} has it)"))

    def close(self) -> None:
        for private in self.made.values():
            shutil.rmtree(private, ignore_errors=True)


def publish(staged: Path, final: Path) -> None:
    """Move a complete staged file to its final name: a rename on the same file system, else an
    atomic copy (``gpsnet.safeio``)."""
    if os.stat(staged).st_dev == os.stat(final.parent).st_dev:
        os.replace(staged, final)
    else:
        atomic_copy(staged, final)

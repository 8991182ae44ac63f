"""Atomic file writes: a file appears under its final name complete, or not at all.

``atomic_write(path, write)`` writes through ``write(f)`` into a hidden temporary file in
``path``'s folder (same file system), flushes and fsyncs it, then renames it over ``path``. A
failure (a full disk: ENOSPC, a read-only folder, ...) removes the temporary file, leaves any
earlier ``path`` untouched and raises ``WriteFailed``, an ``OSError`` with the same errno whose
message names the path and the errno, e.g.
``cannot write runs/x/snapshots/ad_fuse_iter_8.caffemodel: [Errno 28 ENOSPC] No space left on device``.
"""
from __future__ import annotations

import errno as errno_names
import os
import shutil
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

"""Output folders and files of the commands that write data (`make-data`, `convert`,
`evaluate --gt-as-predictions`): refuse to mix new files with old ones, and name the path when a
write fails (a full disk included).

Every function takes the exception class to raise (`GPSDataError` for data sets,
`PredictionsError` for predictions folders), so that each command reports its own kind of error.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Collection

OVERWRITE_FLAG = "--overwrite"


def write_file(path: str | os.PathLike, data: bytes | str, error: type[Exception]) -> Path:
    """Write ``data`` to ``path``; an OSError (no space left, permission, a missing folder)
    becomes ``error`` naming the path and the reason."""
    path = Path(path)
    try:
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    except OSError as err:
        raise error(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def make_folder(path: str | os.PathLike, error: type[Exception]) -> Path:
    """``mkdir -p``; an OSError becomes ``error`` naming the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise error(f"{path}: cannot make the folder ({err.strerror or err})") from None
    return path


def contains(outer: str | os.PathLike, inner: str | os.PathLike) -> bool:
    """Whether ``inner`` is ``outer`` or lies inside it (both resolved, symbolic links followed)."""
    a, b = Path(outer).resolve(), Path(inner).resolve()
    return a == b or a in b.parents


def check_apart(out: str | os.PathLike, other: str | os.PathLike, what: str,
                error: type[Exception]) -> None:
    """``error`` when the output folder ``out`` is ``other`` (a folder the same call reads, such
    as the source data or a data root), lies inside it or holds it."""
    if contains(other, out) or contains(out, other):
        raise error(f"{out}: the output folder must not be, lie inside or hold {what} {other}")


def prepare_output_folder(path: str | os.PathLike, owned: Collection[str], what: str,
                          overwrite: bool, error: type[Exception]) -> Path:
    """Make ``path`` ready to be written: a new or empty folder is used as is. A non-empty folder
    is refused unless ``overwrite``; then it is emptied, but only when everything in it is one of
    ``owned`` (the entries a ``what`` consists of), so that `--overwrite` never deletes files it
    did not write."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{path}: exists and is not a folder")
    entries = sorted(path.iterdir()) if path.is_dir() else []
    if entries:
        names = [e.name for e in entries]
        if not overwrite:
            raise error(f"{path}: output folder is not empty ({', '.join(names[:5])}"
                        f"{', ...' if len(names) > 5 else ''}); choose a new folder, or pass "
                        f"{OVERWRITE_FLAG} to replace it wholly")
        foreign = [n for n in names if n not in owned]
        if foreign:
            raise error(f"{path}: not replaced: it holds {foreign[:5]}, which is not part of a {what} "
                        f"({', '.join(sorted(owned))})")
        for entry in entries:
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as err:
                raise error(f"{entry}: cannot remove ({err.strerror or err})") from None
    return make_folder(path, error)

"""Snapshots of a run: Caffe writes them into a staging folder with room for them (``Staging``), then
they are published under their final names in the run folder (``Snapshotter``), never partially written."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gpsnet.safeio import atomic_copy, atomic_write_bytes


def staging_candidates(out: Path) -> list[Path]:
    """Folders Caffe may write a snapshot into before it is published into the run folder, best
    first: memory-backed /dev/shm, the system's temporary folder, the run folder's own disk."""
    return [Path("/dev/shm"), Path(tempfile.gettempdir()), out / "snapshots"]


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def snapshot_bytes(net: Any, solver_type: str) -> int:
    """An upper bound of a snapshot's size: the weights (every layer's, shared ones included: the
    .caffemodel holds them per layer), plus the solver's history of the learnable params (SGD: one
    copy, Adam: two), plus 1 MiB of structure."""
    from gpsnet.weights import owned_params, weights_bytes
    history = sum(b.data.nbytes for blobs in owned_params(net).values() for b in blobs)
    return weights_bytes(net) + history * (2 if solver_type == "Adam" else 1)


class Staging:
    """The folder Caffe snapshots into: ``link``, a symbolic link (the solver's snapshot_prefix
    lies under it) re-pointed before each snapshot at a private folder in the first candidate
    with room for it. Caffe aborts the process on a failed write (``Check failed:
    proto.SerializeToOstream``), so the room is checked first: none anywhere is a ``WriteFailed``
    (ENOSPC) naming the run's snapshot folder, raised before Caffe writes anything."""

    def __init__(self, root: Path, candidates: list[Path]) -> None:
        self.link = root / "stage"
        self.candidates = candidates
        self.made: dict[Path, Path] = {}   # candidate -> its private folder
        self.point(0)

    def point(self, need: int) -> Path:
        from gpsnet.safeio import WriteFailed
        for folder in self.candidates:
            if folder.is_dir() and os.access(folder, os.W_OK) and free_bytes(folder) >= need:
                if folder not in self.made:
                    self.made[folder] = Path(tempfile.mkdtemp(prefix=".gpsnet-stage-", dir=folder))
                tmp_link = self.link.with_name("stage.new")
                tmp_link.unlink(missing_ok=True)
                tmp_link.symlink_to(self.made[folder])
                os.replace(tmp_link, self.link)
                return self.made[folder]
        raise WriteFailed(self.candidates[-1], OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a snapshot "
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


def snapshot_files(prefix: Path, it: int) -> tuple[Path, Path]:
    """Caffe's snapshot names at iteration ``it``: ``<prefix>_iter_<it>.caffemodel`` and ``.solverstate``."""
    return Path(f"{prefix}_iter_{it}.caffemodel"), Path(f"{prefix}_iter_{it}.solverstate")


class Snapshotter:
    """Snapshots of a solver whose ``snapshot_prefix`` lies in ``staging.link``: ``save()`` lets
    Caffe write there (in a folder with room, see ``Staging``), then publishes the .caffemodel and
    the .solverstate (its ``learned_net`` set to the final .caffemodel) into the run folder: the
    final names never hold a partial file, and a failed write is a ``WriteFailed`` naming the path
    and the errno."""

    def __init__(self, solver: Any, staging: Staging, prefix: Path, solver_type: str) -> None:
        self.solver, self.staging, self.prefix, self.solver_type = solver, staging, prefix, solver_type
        self.saved: dict[int, Path] = {}   # iteration -> .caffemodel written by this run

    def last_before(self, it: int) -> Path | None:
        """The latest snapshot of this run taken before iteration ``it``."""
        earlier = [i for i in self.saved if i < it]
        return self.saved[max(earlier)] if earlier else None

    def paths(self, it: int) -> tuple[Path, Path]:
        return snapshot_files(self.prefix, it)

    def save(self) -> Path:
        from caffe.proto import caffe_pb2
        folder = self.staging.point(snapshot_bytes(self.solver.net, self.solver_type))
        it = self.solver.iter
        self.solver.snapshot()
        staged_model, staged_state = snapshot_files(folder / self.prefix.name, it)
        model, state_path = self.paths(it)
        try:
            publish(staged_model, model)
            state = caffe_pb2.SolverState()
            state.ParseFromString(staged_state.read_bytes())
            state.learned_net = str(model)
            atomic_write_bytes(state_path, state.SerializeToString())
        finally:
            staged_model.unlink(missing_ok=True)
            staged_state.unlink(missing_ok=True)
        self.saved[it] = model
        return model


def latest_state(folder: Path, prefix: str, before: int | None = None) -> Path | None:
    """The ``<prefix>_iter_<N>.solverstate`` in ``folder`` with the largest N (below ``before`` when
    given) whose ``.caffemodel`` lies beside it: the snapshot a run can resume from."""
    states = [(int(p.stem.rsplit("_iter_", 1)[1]), p) for p in folder.glob(f"{prefix}_iter_*.solverstate")
              if p.stem.rsplit("_iter_", 1)[1].isdigit()]
    states = [(n, p) for n, p in states if (before is None or n < before) and p.with_suffix(".caffemodel").is_file()]
    return max(states)[1] if states else None

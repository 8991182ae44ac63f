"""Snapshots of a run: Caffe writes them into a staging folder with room for them (``safeio.Staging``), then
they are published under their final names in the run folder (``Snapshotter``), never partially written."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gpsnet.safeio import Staging, atomic_write_bytes, publish
from gpsnet.weights import history_copies, owned_params, weights_bytes


def staging_candidates(out: Path) -> list[Path]:
    """Folders Caffe may write a snapshot into before it is published into the run folder, best
    first: memory-backed /dev/shm, the system's temporary folder, the run folder's own disk."""
    return [Path("/dev/shm"), Path(tempfile.gettempdir()), out / "snapshots"]


def snapshot_bytes(net: Any, solver_type: str) -> int:
    """An upper bound of a snapshot's size: the weights (every layer's, shared ones included: the
    .caffemodel holds them per layer), plus the solver's history of the learnable params (SGD: one
    copy, Adam: two), plus 1 MiB of structure."""
    history = sum(b.data.nbytes for blobs in owned_params(net).values() for b in blobs)
    return weights_bytes(net) + history * history_copies(solver_type)


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

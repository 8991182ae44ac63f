"""Several GPUs: one process per GPU through pycaffe's NCCL (``gpsnet train --gpus 0,1``; docs/gpu.md,
"Several GPUs").

Rank 0 is the ``gpsnet train`` process on the first GPU: it runs the usual loop (log, learning curve,
snapshots). Ranks 1.. are worker processes (``multiprocessing``, spawned), one per further GPU. Each
builds the same solver (restoring the same solverstate on ``--resume``), takes rank 0's weights through
NCCL's broadcast, and steps when rank 0 says so: the ranks step in lockstep, and every update uses
the gradients summed over the ranks and divided by their number (Caffe's NCCL callback, any solver
type). The data layer of each rank reads its share of every epoch (``gpsnet.data.batch.Shard``), so
one update sees ranks x batch_size images: the effective batch.

A worker that fails stops the run: rank 0 notices before its next step, snapshots and stops
(``RankFailed``); where rank 0 is inside a step, waiting in NCCL for the failed rank, a watchdog
ends it after ``STUCK_GRACE_S`` with a message naming the rank and the last snapshot on disk.
Workers ignore Ctrl-C (rank 0 finishes the step, snapshots, then stops them) and end when rank 0
ends.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

# Seconds a rank 0 stuck in a step may wait for a rank that failed before the watchdog ends it.
STUCK_GRACE_S = 60.0
# Exit code of a run stopped by a failed rank (gpsnet train; also the watchdog's).
RC_RANK_FAILED = 5


def parse_gpus(text: str) -> tuple[int, ...]:
    """``--gpus 0,1,3`` -> (0, 1, 3); ValueError naming what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"--gpus {text!r}: a comma-separated list of GPU ids, e.g. 0,1")
    try:
        gpus = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--gpus {text!r}: GPU ids are integers, e.g. 0,1") from None
    if any(g < 0 for g in gpus):
        raise ValueError(f"--gpus {text!r}: a GPU id is >= 0")
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: a GPU appears twice (one process per GPU)")
    return gpus


# How the ranks share their gradients, by name: "nccl" (the real thing, CUDA build with NCCL);
# "none" keeps the ranks' gradients apart (a stand-in that runs on the CPU, for the tests of the
# process plumbing: it trains nothing together). A reducer returns what must stay alive while the
# solver runs.
Reducer = Callable[[Any, Any, bytes], Any]


def nccl_reducer(caffe: Any, solver: Any, uid: bytes) -> Any:
    """Join the ranks' NCCL communicator (blocks until every rank joins), take rank 0's weights and
    add the all-reduce of the whole gradient to the solver (once per step: ``solver_for_ranks``)."""
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    solver.add_callback(nccl)
    return nccl


# Caffe's NCCL all-reduces every layer's gradient after its backward where the solver's
# layer_wise_reduce (default true) says so, and aborts there for nets with shared weights; every
# GPSNet train net shares its box head's with the head run on the detected faces. With false it
# all-reduces the whole gradient buffer once per step, which is right for shared weights.
LAYER_WISE_REDUCE = "layer_wise_reduce: false\n"
NCCL_UID_BYTES = 128   # NCCL_UNIQUE_ID_BYTES


def solver_for_ranks(text: str) -> str:
    """A solver prototxt's text as the ranks of ``gpsnet train --gpus`` run it."""
    return text + "# several GPUs (gpsnet train --gpus): one all-reduce of all the gradients per step\n" + LAYER_WISE_REDUCE


def no_reducer(caffe: Any, solver: Any, uid: bytes) -> Any:
    return None


REDUCERS: dict[str, Reducer] = {"nccl": nccl_reducer, "none": no_reducer}


def new_uid(caffe: Any, reducer: str) -> bytes:
    if reducer != "nccl":
        return b""
    uid = caffe.NCCL.new_uid()
    if len(uid) != NCCL_UID_BYTES:   # upstream pycaffe cut the binary id at its first zero byte
        raise RuntimeError(f"caffe.NCCL.new_uid() gave {len(uid)} bytes, not {NCCL_UID_BYTES}: this pycaffe lacks "
                           f"the fork's patch 0011 ({caffe.__file__}); rebuild it (scripts/build_fork --cuda)")
    return uid


def join_ranks(caffe: Any, rank: int, count: int) -> None:
    """This process as rank ``rank`` of ``count`` (before its solver is made: the data layer reads it)."""
    caffe.set_solver_count(count)
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs: its rank and device (None: the CPU, with the "none" reducer), the
    solver prototxt (rank 0's, snapshotting nothing), a solverstate to restore and the iteration
    it is at, the random seed, the reducer and its id."""
    rank: int
    count: int
    gpu: int | None
    solver: str
    resume: str | None
    start: int
    seed: int
    reducer: str
    uid: bytes


class RankFailed(RuntimeError):
    """A worker rank failed; the message names it, its GPU and its error."""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:   # rank 0 is gone (killed): nobody will ever say stop
            os._exit(RC_RANK_FAILED)


def worker_main(spec: WorkerSpec, conn: Any) -> None:
    """A worker rank: the solver, the reducer, then a step per "step" message until "stop" (or
    rank 0's end). An error is sent to rank 0 and ends the process with 1."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # rank 0 stops the run (it snapshots first)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    solver = None
    try:
        import caffe

        from gpsnet.device import use_device
        from gpsnet.layers.state import close_net, fast_forward
        use_device(caffe, spec.gpu)
        join_ranks(caffe, spec.rank, spec.count)
        caffe.set_random_seed(spec.seed + spec.rank)
        solver = caffe.get_solver(spec.solver)
        if spec.resume:
            solver.restore(spec.resume)
            fast_forward(solver.net, spec.start)
        keep = REDUCERS[spec.reducer](caffe, solver, spec.uid)  # noqa: F841 (alive while stepping)
        conn.send(("ready", solver.iter))
        while True:
            try:
                msg = conn.recv()
            except EOFError:   # rank 0 ended
                break
            if msg == "stop":
                break
            solver.step(1)
        close_net(solver.net)
        conn.send(("done", solver.iter))
    except BaseException as err:  # reported to rank 0, which stops the run
        try:
            conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"))
        except OSError:
            pass
        raise SystemExit(1) from None


class RankGroup:
    """Rank 0's side of a several-GPU run: ``attach`` (after rank 0's solver has its weights)
    starts the workers and joins them, ``before_step`` tells them to step (raises ``RankFailed``
    where one has failed), ``close`` stops them. ``devices[0]`` is rank 0's."""

    def __init__(self, devices: tuple[int | None, ...], reducer: str = "nccl") -> None:
        if reducer not in REDUCERS:
            raise ValueError(f"unknown reducer {reducer!r} (one of {', '.join(REDUCERS)})")
        self.devices = devices
        self.reducer = reducer
        self.caffe: Any = None
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.keep: Any = None
        self.failure: str | None = None
        self.finished: dict[int, int] = {}
        self.in_step = False
        self.closing = threading.Event()
        self.last_snapshot: Callable[[], str] = lambda: "none"

    @property
    def count(self) -> int:
        return len(self.devices)

    def join(self, caffe: Any) -> None:
        """This process as rank 0 (before its solver is made); ``close`` makes it a single process again."""
        self.caffe = caffe
        join_ranks(caffe, 0, self.count)

    def attach(self, caffe: Any, solver: Any, solver_path: str, resume: str | None, seed: int) -> None:
        """Start ranks 1.. on ``solver_path`` (``resume`` restored at rank 0's iteration), share rank
        0's weights with them and add the reducer to rank 0's solver."""
        if solver.param.layer_wise_reduce:
            raise ValueError(f"{solver_path}: several ranks need the solver's {LAYER_WISE_REDUCE.strip()} "
                             "(Caffe's NCCL refuses layer-wise reduction for nets with shared weights): "
                             "write it with gpsnet.training.ranks.solver_for_ranks")
        uid = new_uid(caffe, self.reducer)
        ctx = multiprocessing.get_context("spawn")
        for rank, gpu in enumerate(self.devices[1:], start=1):
            ours, theirs = ctx.Pipe()
            spec = WorkerSpec(rank, self.count, gpu, solver_path, resume, solver.iter, seed, self.reducer, uid)
            proc = ctx.Process(target=worker_main, args=(spec, theirs), name=f"gpsnet-rank{rank}", daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(ours)
        threading.Thread(target=self._watch, name="gpsnet-rank-watch", daemon=True).start()
        self.in_step = True     # a collective: a rank failing now leaves rank 0 waiting
        self.keep = REDUCERS[self.reducer](caffe, solver, uid)
        self.in_step = False
        for rank, conn in enumerate(self.conns, start=1):
            self._expect(rank, conn, "ready")
        print(f"ranks: {self.count} ({', '.join(self._where(r) for r in range(self.count))}), "
              f"gradients shared by {self.reducer}", flush=True)

    def _where(self, rank: int) -> str:
        gpu = self.devices[rank]
        return f"rank {rank} on " + ("the CPU" if gpu is None else f"GPU {gpu}")

    def _expect(self, rank: int, conn: Any, what: str | None) -> Any:
        """The next message of ``rank``, which must be ``what`` (None: none is expected, so any
        message is its error); ``RankFailed`` otherwise."""
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            self.procs[rank - 1].join(5.0)
            kind, value = "error", f"ended (exit code {self.procs[rank - 1].exitcode}) without a word"
        if kind != what:
            self.failure = f"{self._where(rank)} failed: {value}"
            raise RankFailed(self.failure)
        return value

    def before_step(self) -> None:
        """Tell every worker to step; ``RankFailed`` where one has failed (rank 0 then does not step)."""
        if self.failure is not None:
            raise RankFailed(self.failure)
        for rank, conn in enumerate(self.conns, start=1):
            if conn.poll():   # a worker speaks between steps only to say why it ended
                self._expect(rank, conn, None)
            try:
                conn.send("step")
            except OSError:
                self._expect(rank, conn, None)
        self.in_step = True

    def after_step(self) -> None:
        self.in_step = False

    def _watch(self) -> None:
        """Ends rank 0 where a worker has died while rank 0 waits for it inside a step."""
        waiting = [p.sentinel for p in self.procs]
        while waiting and not self.closing.is_set():
            done = multiprocessing.connection.wait(waiting, timeout=1.0)
            if self.closing.is_set():
                return
            for s in done:
                waiting.remove(s)
                rank = 1 + [p.sentinel for p in self.procs].index(s)
                deadline = time.time() + STUCK_GRACE_S
                while self.in_step and time.time() < deadline and not self.closing.is_set():
                    time.sleep(0.5)
                if self.in_step and not self.closing.is_set():
                    print(f"gpsnet train: {self._where(rank)} ended (exit code {self.procs[rank - 1].exitcode}) "
                          f"while rank 0 waits for it in a step: stopping without a snapshot; the last snapshot "
                          f"is {self.last_snapshot()}", file=sys.stderr, flush=True)
                    os._exit(RC_RANK_FAILED)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers (they finish the step they are in); kill those that do not end.
        ``finished``: rank -> the iteration a worker ended at (the workers that ended well)."""
        self.closing.set()
        for conn in self.conns:
            try:
                conn.send("stop")
            except OSError:
                pass
        for rank, (conn, proc) in enumerate(zip(self.conns, self.procs), start=1):
            try:
                while conn.poll(timeout):
                    kind, value = conn.recv()
                    if kind == "done":
                        self.finished[rank] = value
                        break
            except (EOFError, OSError):
                pass
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
        self.keep = None
        if self.caffe is not None:
            self.caffe.set_solver_count(1)
            self.caffe.set_multiprocess(False)

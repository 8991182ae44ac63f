"""Training: ``gpsnet train --variant ad_fuse [--small] [--data ROOT] [--iters N] [--gpu N]``.

Runs the variant's solver (paper section 5.1: lr 0.001, step 50000, gamma 0.1, momentum 0.9,
weight decay 0.0005, two images per iteration) in a run folder ``--out`` holding the patched
``train.prototxt`` and ``solver.prototxt``, ``snapshots/``, ``log.jsonl`` (one line per
iteration: iter, lr, time, every loss, total) and ``loss.png``. ``--resume`` continues from a
``.solverstate``; the data stream and the sampling layers are fast-forwarded so that the resumed
run repeats the uninterrupted one. Faults (a non-finite loss, SIGINT/SIGTERM, a data error mid-run,
a full disk, bad weights): docs/nets.md, "Faults and bad input".

The baselines the paper builds from separate networks (``det_par``, ``ins_glo``: ``VariantSpec.stages``)
train stage after stage, each in its own run folder ``<out>/<stage>/`` with its own solver (a stage
starting from an earlier one gets that stage's final weights, its shared layers frozen); their final
weights are then merged into ``<out>/snapshots/<variant>_iter_<N>.caffemodel`` for the test net. A
finished stage is not trained again, and an interrupted one resumes from its last snapshot, when the
same command runs again. ``--stage NAME`` trains one stage only, as a single run.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from gpsnet.nets.builder import (PAPER_MAX_ITER, PAPER_SCHEDULE, PAPER_STEP, POLY_POWER, NetConfig, Schedule,
                                 SETTINGS, add_set_arg, learning_rate, net_param_text, override, read_net_prototxt,
                                 setting, setting_name, snapshot_name, solver_text, spec_of, variants)

from gpsnet.safeio import atomic_copy, atomic_write_bytes, atomic_write_text

# Exit codes of a run stopped by a signal (the shell's 128 + signal number) and by a bad step.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RC_NON_FINITE = 3
RC_DATA_ERROR = 4


def learning_rate_arg(text: str) -> float:
    """``--lr``: a finite number >= 0 (NaN, inf or a negative rate only ever diverge; 0 keeps the
    weights, e.g. to check a start or a data set)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_schedule_args(ap: argparse.ArgumentParser, default: Schedule, why: str) -> None:
    """``--solver``, ``--lr``, ``--lr-policy`` with ``default``'s values; ``schedule_of(args)`` reads them."""
    ap.add_argument("--solver", choices=("SGD", "Adam"), default=default.solver,
                    help=f"solver type (default {default.solver}: {why})")
    ap.add_argument("--lr", type=learning_rate_arg, default=default.base_lr, help=f"base learning rate (default {default.base_lr:g})")
    ap.add_argument("--lr-policy", choices=("step", "poly"), default=default.lr_policy,
                    help=f"step (the paper's: x{PAPER_STEP['gamma']:g} every {PAPER_STEP['stepsize']}) or poly "
                         f"(DeepLab-v2's, power {POLY_POWER}, to 0 at the "
                         f"last iteration); default {default.lr_policy}")


def schedule_of(args: "argparse.Namespace | TrainOptions") -> Schedule:
    return Schedule(args.solver, args.lr, args.lr_policy)


def default_cache() -> Path:
    return Path(os.environ.get("GPSNET_CACHE", Path.home() / ".cache" / "gpsnet"))


def ensure_synthetic(root: Path | None, size: int, num: int, seed: int = 0) -> Path:
    """The data root; without one, a synthetic set in the cache (generated once)."""
    if root is not None:
        if not (Path(root) / "lists").is_dir():
            raise FileNotFoundError(f"{root}: not a GPS-layout data set (no lists/ folder)")
        return Path(root)
    out = default_cache() / f"synthetic-{size}px-{num}-s{seed}"
    if not (out / "lists" / "test.txt").is_file():
        from gpsnet.data.synthetic import generate_dataset
        print(f"generating {num} synthetic images of {size} px into {out}", flush=True)
        generate_dataset(out, num, size=size, seed=seed)
    return out


def net_outputs(net: Any) -> list[str]:
    """The output blobs of a NetParameter's TRAIN net: tops no later layer reads."""
    from caffe.proto import caffe_pb2
    outputs: dict[str, None] = {}
    for layer in net.layer:
        if any(rule.HasField("phase") and rule.phase != caffe_pb2.TRAIN for rule in layer.include):
            continue
        for b in layer.bottom:
            outputs.pop(b, None)
        for t in layer.top:
            outputs[t] = None
    return list(outputs)


def add_loss_guard(text: str) -> tuple[str, list[str]]:
    """Append ``FiniteLossGuardLayer`` (reading the loss outputs) to a train prototxt: a NaN or
    infinite loss then stops ``solver.step`` before its backward pass. Returns the text and the
    loss names (the outputs with "loss" in their name). Its one top is a constant 0 with loss
    weight 1: a layer outside the loss reading a loss blob would make Caffe skip that loss's
    backward pass (Net::Init marks the blob as needing no gradient), silently training without
    it; so the guard is "in the loss", adding 0 to it, with a backward pass that does nothing."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    losses = [b for b in net_outputs(net) if "loss" in b]
    if not losses:
        raise ValueError("the train net has no loss output (no output blob named *loss*)")
    guard = net.layer.add()
    guard.name, guard.type = "finite_loss_guard", "Python"
    guard.bottom.extend(losses)
    guard.top.append(guard.name)
    guard.loss_weight.append(1.0)
    guard.python_param.module = "gpsnet.layers.finite_loss"
    guard.python_param.layer = "FiniteLossGuardLayer"
    guard.python_param.param_str = json.dumps({"losses": losses})
    return text_format.MessageToString(net), losses


def check_split_files(root: Path, split: str) -> int:
    """Every image and annotation file of a split exists and is readable (no decoding: fast);
    ``GPSDataError`` naming the first bad file. Returns the number of images."""
    from gpsnet.data.layout import GPSDataError, GPSDataset, annotation_files, image_path, index_annotations
    dataset = GPSDataset(root, split)
    index = index_annotations(root)
    for image_id in dataset.ids:
        for f in [image_path(root, image_id), *annotation_files(root, image_id, index)]:
            if not os.access(f, os.R_OK):
                raise GPSDataError(f"{f}: unreadable (split {split!r})")
    return len(dataset.ids)


def patch_data_layer(text: str, root: Path, seed: int, split: str = "train", augment: bool = True) -> str:
    """Set the data layer's root, split and seed in a train prototxt; ``augment=False`` turns off
    its random scaling and flipping."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    found = False
    def update(layer: Any, **values: Any) -> None:
        params = json.loads(layer.python_param.param_str or "{}")
        params.update(values)
        layer.python_param.param_str = json.dumps(params, sort_keys=True)

    for layer in net.layer:
        kind = layer.python_param.layer if layer.type == "Python" else None
        if kind == "GPSDataLayer":
            update(layer, root=str(root), seed=seed, split=split,
                   **({} if augment else dict(scales=[1.0, 1.0], mirror=False)))
            found = True
        elif kind == "ClassWeightsLayer":   # the class weights follow the data the net trains on
            update(layer, root=str(root), split=split)
    if not found:
        raise ValueError("the train net has no GPSDataLayer")
    return text_format.MessageToString(net)


def plot_log(log_path: Path, png: Path) -> None:
    """Loss curves (every loss and the total) of a log.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = [k for k in rows[-1] if k.startswith("loss") or k == "total"]
    fig, ax = plt.subplots(figsize=(8, 5))
    its = [r["iter"] for r in rows]
    for k in keys:
        vals = [r.get(k, float("nan")) for r in rows]
        w = max(1, len(vals) // 50)
        smooth = [sum(vals[max(0, i - w + 1):i + 1]) / len(vals[max(0, i - w + 1):i + 1]) for i in range(len(vals))]
        ax.plot(its, smooth, label=k, linewidth=2 if k == "total" else 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (moving average)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def fast_forward(net: Any, iters: int) -> None:
    """Bring the data stream and the sampling layers of a fresh net to iteration ``iters``."""
    for i in range(len(net.layers)):
        layer = net.layers[i]
        if hasattr(layer, "forward_count"):
            layer.forward_count = iters
        pf = getattr(layer, "prefetcher", None)
        if pf is not None:
            for _ in range(iters):
                pf.next()


def close_net(net: Any) -> None:
    """Stop the data layer's prefetch thread now (not during interpreter teardown)."""
    for i in range(len(net.layers)):
        pf = getattr(net.layers[i], "prefetcher", None)
        if pf is not None:
            pf.close()


@dataclass
class TrainOptions:
    """What `gpsnet train` takes: one field per command-line option (same names), the defaults
    written once here. ``train(TrainOptions(...))`` is the API; ``parse_args`` the command line."""
    variant: str = "ad_fuse"
    stage: str | None = None            # one stage of a variant trained in stages (None: all of them)
    small: bool = False                 # the small CPU setting (prototxt/small/...)
    setting: str | None = None          # full, small or tiny (tests); overrides small
    net: str | None = None              # a train prototxt instead of the variant's
    data: Path | None = None            # GPS-layout root; None: a synthetic set in the cache
    synthetic_num: int = 200            # images of that synthetic set
    weights: str | None = None          # initial .caffemodel(s, joined by commas), copied by layer name
    resume: str | None = None           # a .solverstate to continue from
    iters: int | None = None            # train up to this iteration (None: PAPER_MAX_ITER)
    snapshot_every: int = 0             # 0: only at the end
    time_limit: float = 0.0             # seconds of training, then stop with a snapshot (0: none)
    solver: str = PAPER_SCHEDULE.solver
    lr: float = PAPER_SCHEDULE.base_lr
    lr_policy: str = PAPER_SCHEDULE.lr_policy
    gpu: int | None = None
    out: Path | None = None             # run folder (None: runs/<variant>[-<setting>])
    seed: int = 0
    no_augment: bool = False
    overwrite: bool = False
    display: int = 10
    eval_every: int = 0                 # learning curve every N iterations (0: off)
    eval_split: str = "val"
    eval_limit: int = 0
    test_net: str | None = None         # the learning curve's test prototxt (with net)
    overrides: list[str] | None = None  # --set KEY=VALUE: NetConfig fields replaced (builder.override)

    def with_schedule(self, schedule: Schedule) -> "TrainOptions":
        return replace(self, solver=schedule.solver, lr=schedule.base_lr, lr_policy=schedule.lr_policy)


def parse_args(argv: list[str] | None) -> TrainOptions:
    from gpsnet.data.layout import image_limit
    d = TrainOptions()
    ap = argparse.ArgumentParser(prog="gpsnet train", description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=variants(), default=d.variant)
    ap.add_argument("--stage", help="train one stage of a variant trained in stages (det_par: det, par; "
                                    "ins_glo: glo, ins); default: every stage, then their weights merged")
    ap.add_argument("--small", action="store_true", help="the small CPU setting (prototxt/small/...)")
    ap.add_argument("--setting", choices=SETTINGS, help="overrides --small (tiny: tests)")
    ap.add_argument("--net", help="a train prototxt to use instead of the variant's")
    ap.add_argument("--data", type=Path, help="GPS-layout data root (default: synthetic data in the cache)")
    ap.add_argument("--synthetic-num", type=int, default=d.synthetic_num, help="images of the default synthetic set")
    ap.add_argument("--weights", help="initial .caffemodel, copied by layer name (several: joined by commas, "
                                      "later ones replacing earlier ones' layers, as Caffe's -weights)")
    ap.add_argument("--resume", help="a .solverstate to continue from")
    ap.add_argument("--iters", type=int, default=d.iters, help=f"train up to this iteration (default {PAPER_MAX_ITER})")
    ap.add_argument("--snapshot-every", type=int, default=d.snapshot_every, help="snapshot period (0: only at the end)")
    ap.add_argument("--time-limit", type=float, default=d.time_limit,
                    help="stop (learning-curve point and snapshot included) after this many seconds of "
                         "training; --resume continues the same schedule (0: no limit)")
    add_schedule_args(ap, PAPER_SCHEDULE, "the paper's; Adam for short runs from random init, e.g. the demo")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--out", type=Path, help="run folder (default runs/<variant>[-small])")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--no-augment", action="store_true",
                    help="no random scaling or flipping (overfitting checks)")
    ap.add_argument("--overwrite", action="store_true",
                    help="train into a run folder that already holds a run (its log, plots and "
                         "snapshots are replaced)")
    ap.add_argument("--display", type=int, default=d.display, help="print every N iterations")
    ap.add_argument("--eval-every", type=int, default=d.eval_every,
                    help="learning curve: evaluate on --eval-split every N iterations (0: off)")
    ap.add_argument("--eval-split", default=d.eval_split, help=f"split of the learning curve (default {d.eval_split})")
    ap.add_argument("--eval-limit", type=image_limit, default=d.eval_limit,
                    help="learning curve: at most N images of the split (0: all)")
    ap.add_argument("--test-net", help="the test prototxt of the learning curve (with --net)")
    add_set_arg(ap)
    return TrainOptions(**vars(ap.parse_args(argv)))


def plot_curve(rows: list[dict[str, Any]], png: Path) -> None:
    """The learning curve: AP^p at 0.5, avg.AP and box recall (%) against iterations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    its = [r["iter"] for r in rows]
    for key, label in (("AP50", "AP$^p$ at 0.5"), ("avg_AP", "avg.AP"), ("mIoU", "global mIoU"),
                       ("box_recall", "person box recall (IoU 0.5)")):
        vals = [100 * r[key] if r.get(key) is not None else float("nan") for r in rows]
        ax.plot(its, vals, marker="o", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    split = rows[-1].get("split", "val") if rows else "val"
    ax.set_title(f"learning curve on the {split} split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


class LearningCurve:
    """Evaluates the training net's current weights on a split (the variant's test net shares
    them) and keeps ``curve.json`` / ``curve.png`` in the run folder."""

    def __init__(self, solver_net: Any, variant: str, cfg: NetConfig, test_net_text: str,
                 root: Path, split: str, limit: int, out: Path, gpu: int | None = None,
                 other_weights: tuple[Path, ...] = ()) -> None:
        from gpsnet.infer import Predictor
        # the same mode as the solver: Predictor sets Caffe's (process-wide) mode, and a CPU-mode
        # predictor would switch a GPU run's later solver steps to the CPU
        self.predictor = Predictor(variant, None, cfg, net_text_override=test_net_text, gpu=gpu)
        for path in other_weights:   # a stage's run: the test net's layers of the other stages
            self.predictor.net.copy_from(str(path))
        self.predictor.net.share_with(solver_net)
        self.root, self.split, self.limit, self.out = root, split, limit, out
        self.rows: list[dict[str, Any]] = []

    def __call__(self, it: int) -> dict[str, Any]:
        from gpsnet.evaluate_net import evaluate_predictor
        t0 = time.time()
        res = evaluate_predictor(self.predictor, self.root, self.split, self.limit)
        row = {"iter": it, "split": self.split, "AP50": res["AP"]["0.5"], "avg_AP": res["avg_AP"],
               "PCP": res["PCP"], "mIoU": res["mIoU"], "box_recall": res["box_recall"],
               "images": res["num_images"], "seconds": round(time.time() - t0, 2)}
        self.rows.append(row)
        atomic_write_text(self.out / "curve.json", json.dumps(self.rows, indent=1) + "\n")
        plot_curve(self.rows, self.out / "curve.png")
        print(f"eval  {it:6d}  {self.split} ({row['images']} images): AP0.5 {100 * row['AP50']:.1f}  "
              f"avg.AP {100 * row['avg_AP']:.1f}  box recall {100 * row['box_recall']:.1f}"
              + (f"  mIoU {100 * row['mIoU']:.1f}" if row["mIoU"] is not None else "")
              + f"  ({row['seconds']:.0f}s)", flush=True)
        return row


class TrainingStopped(RuntimeError):
    """A run stopped early (a signal, a non-finite loss, a data error); ``rc`` is the exit code,
    ``state`` the solverstate of the snapshot taken on stopping (None: none), ``log`` the run's
    log. ``str()`` is the message, then how ``gpsnet train`` continues and the log; ``args[0]``
    the message alone (``gpsnet ablate`` says how it continues)."""

    def __init__(self, message: str, rc: int, state: Path | None = None, log: Path | None = None) -> None:
        super().__init__(message)
        self.rc, self.state, self.log = rc, state, log

    def __str__(self) -> str:
        return (self.args[0] + (f" (--resume {self.state} continues)" if self.state else "")
                + (f"; log {self.log}" if self.log else ""))


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


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While inside: SIGINT and SIGTERM append their number to the yielded list instead of
    raising (the loop finishes its step, snapshots and stops). The first one brings the old
    handlers back, so a second one stops at once (Ctrl-C twice: KeyboardInterrupt, no snapshot);
    they come back on leaving too."""
    received: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def request(signum: int, frame: Any) -> None:
        received.append(signum)
        restore()

    for sig in STOP_SIGNALS:
        signal.signal(sig, request)
    try:
        yield received
    finally:
        restore()


def run_folder(args: TrainOptions, name: str) -> Path:
    """``--out``, or ``runs/<variant>[-<setting>]``."""
    out = args.out or Path("runs") / (args.variant + ("" if name == "full" else f"-{name}"))
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a run folder")
    return out


def train(args: TrainOptions, cfg: NetConfig | None = None,
          curve_weights: list[Path] | None = None) -> dict[str, Any]:
    """Run the solver; returns {"log": path, "snapshot": caffemodel, "losses": last row, "curve":
    learning-curve rows}. ``cfg`` replaces the setting's NetConfig (with ``--net``/``--test-net``);
    ``args.overrides`` (``--set``) apply on top of either.
    A run stopped early raises ``TrainingStopped`` (after a snapshot where the weights are good).
    A variant trained in stages, without ``--stage`` or ``--net``: ``train_stages``.
    ``curve_weights``: the learning curve's weights of the test net's layers the train net lacks
    (default: ``--weights``)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    name = setting_name(args.setting, args.small)
    cfg = override(cfg or setting(name), args.overrides)   # a bad --set fails before anything starts
    import caffe
    from gpsnet.device import use_device
    from gpsnet.weights import weight_files
    use_device(caffe, args.gpu)     # first: a bad --gpu fails before any data or run folder is made
    iters = PAPER_MAX_ITER if args.iters is None else args.iters
    spec = spec_of(args.variant)
    if args.stage is not None:
        start = spec.stage(args.stage).start_from   # (an unknown stage is named with the variant's stages)
        if start and not args.weights and not args.resume:
            print(f"warning: stage {args.stage} of {args.variant} starts from stage {start}'s trained weights and "
                  f"keeps them frozen; without --weights they stay at their random fillers", file=sys.stderr)
    elif spec.stages and not args.net:
        return train_stages(args, cfg, name, iters)
    out = run_folder(args, name)
    if (out / "log.jsonl").is_file() and not args.resume and not args.overwrite:
        raise ValueError(f"{out} already holds a run (log.jsonl): pass --overwrite to replace it, "
                         "--resume to continue it, or another --out")
    starts = weight_files(args.weights) if args.weights else []
    for what, path in [*(("--weights", p) for p in starts), ("--resume", args.resume)]:
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
    text = net_param_text(args.variant, cfg, True, args.net, name == "small", args.stage)
    root = ensure_synthetic(args.data, cfg.size - 1, args.synthetic_num, args.seed)
    n_train = check_split_files(root, "train")
    text, loss_names = add_loss_guard(patch_data_layer(text, root.resolve(), args.seed,
                                                       augment=not args.no_augment))
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    if args.overwrite and not args.resume:
        for old in [*(out / "snapshots").glob("*.caffemodel"), *(out / "snapshots").glob("*.solverstate"),
                    out / "curve.json", out / "curve.png", out / "loss.png"]:
            old.unlink(missing_ok=True)
    train_net = out / "train.prototxt"
    atomic_write_text(train_net, text)
    prefix = (out / "snapshots" / snapshot_name(args.variant, args.stage)).resolve()
    schedule = dict(schedule=schedule_of(args), max_iter=max(iters, 1), seed=args.seed)
    # The run folder's solver.prototxt is for `caffe train` (snapshots into the run folder); the
    # one the run uses snapshots only when told, into the staging folder (see Snapshotter).
    solver_path = out / "solver.prototxt"
    atomic_write_text(solver_path, solver_text(str(train_net.resolve()), str(prefix),
                                               snapshot=args.snapshot_every, **schedule))
    caffe.set_random_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="gpsnet-train-") as work_dir:
        work = Path(work_dir)
        staging = Staging(work, staging_candidates(out))
        try:
            staged_solver = work / "solver.prototxt"
            staged_solver.write_text(solver_text(str(train_net.resolve()), str(staging.link / prefix.name),
                                                 snapshot=0, **schedule))
            with stop_requests() as signals:   # from here on, a signal means: snapshot and stop
                solver = caffe.get_solver(str(staged_solver))
                try:
                    return _run(args, solver, Snapshotter(solver, staging, prefix, args.solver), signals, out,
                                root, n_train, name, cfg, iters, loss_names, work,
                                starts if curve_weights is None else curve_weights)
                finally:
                    close_net(solver.net)
                    del solver
        finally:
            staging.close()


def _run(args: TrainOptions, solver: Any, snaps: Snapshotter, signals: list[int], out: Path, root: Path,
         n_train: int, name: str, cfg: NetConfig, iters: int, loss_names: list[str], work: Path,
         curve_weights: list[Path]) -> dict[str, Any]:
    """The training loop of ``train`` (its solver set up; ``signals``: from ``stop_requests``;
    ``work``: a private temporary folder)."""
    from gpsnet.data.layout import GPSDataError
    from gpsnet.layers.finite_loss import NonFiniteLoss
    from gpsnet.safeio import WriteFailed
    from gpsnet.weights import load_weights, resumable_state
    if args.weights:
        load_weights(solver.net, args.weights)
    start = 0
    log_path = out / "log.jsonl"
    if args.resume:
        solver.restore(str(resumable_state(args.resume, solver.net, args.solver, work)))
        start = solver.iter
        fast_forward(solver.net, start)
        rows = [r for r in (log_path.read_text().splitlines() if log_path.is_file() else [])
                if r.strip() and json.loads(r)["iter"] < start]
        atomic_write_text(log_path, "".join(r + "\n" for r in rows))
    else:
        atomic_write_text(log_path, "")
    what = args.variant + (f" stage {args.stage}" if args.stage else "")
    print(f"training {what} ({name}) on {root} ({n_train} train images): iterations {start} -> {iters}, "
          f"run folder {out}", flush=True)
    last: dict[str, Any] = {}
    curve = None
    if args.eval_every:
        test_text = (read_net_prototxt(Path(args.test_net)) if args.test_net
                     else net_param_text(args.variant, cfg, False, None, name == "small"))
        curve = LearningCurve(solver.net, args.variant, cfg, test_text, root, args.eval_split,
                              args.eval_limit, out, gpu=args.gpu, other_weights=tuple(curve_weights))
        if args.resume and (out / "curve.json").is_file():   # the resumed run's earlier points
            curve.rows = [r for r in json.loads((out / "curve.json").read_text()) if r["iter"] <= start]
    t_start = time.time()
    t_eval = 0.0
    stopped: TrainingStopped | None = None
    with log_path.open("a") as log:
        while solver.iter < iters:
            if signals:
                stopped = TrainingStopped(f"stopped by {signal.Signals(signals[0]).name} at iteration "
                                          f"{solver.iter}", 128 + signals[0])
                break
            if args.time_limit and time.time() - t_start >= args.time_limit:
                print(f"time limit: stopping at iteration {solver.iter} of {iters} after "
                      f"{time.time() - t_start:.0f}s (--resume the snapshot to continue)", flush=True)
                break
            if curve is not None and solver.iter % args.eval_every == 0 and solver.iter > start:
                t0 = time.time()
                curve(solver.iter)
                t_eval += time.time() - t0
            it = solver.iter
            t0 = time.time()
            try:
                solver.step(1)
            except NonFiniteLoss as err:
                # The weights that gave this loss came from the last update: no snapshot of them, and
                # a snapshot taken at this iteration holds them.
                good = snaps.last_before(it)
                kept = (f"the last good snapshot (weights that gave a finite loss) is {good}" if good else
                        "no good snapshot was written (--snapshot-every N keeps one every N iterations)")
                raise TrainingStopped(f"iteration {it}: {err}; stopped before its backward pass (lower --lr); "
                                      f"{kept}", RC_NON_FINITE) from None
            except (GPSDataError, OSError) as err:
                stopped = TrainingStopped(f"iteration {it}: data error: {err}", RC_DATA_ERROR)
                break
            row: dict[str, Any] = {"iter": it, "lr": learning_rate(it, args.lr, args.lr_policy, max(iters, 1)),
                                   "time": round(time.time() - t0, 4)}
            for k in loss_names:
                row[k] = float(solver.net.blobs[k].data.reshape(-1)[0])
            row["total"] = sum(row[k] for k in loss_names)
            try:
                log.write(json.dumps(row) + "\n")
                log.flush()
            except OSError as err:
                raise WriteFailed(log_path, err) from err
            last = row
            if args.display and (it % args.display == 0 or solver.iter == iters):
                eta = (time.time() - t_start - t_eval) / (solver.iter - start) * (iters - solver.iter)
                losses = " ".join(f"{k}={row[k]:.3f}" for k in loss_names)
                print(f"iter {it:6d}  total={row['total']:.3f}  {losses}  lr={row['lr']:g}  "
                      f"{row['time']:.2f}s/it  eta {eta:.0f}s", flush=True)
            if args.snapshot_every and solver.iter % args.snapshot_every == 0 and solver.iter < iters:
                print(f"snapshot {snaps.save()}", flush=True)
    if curve is not None and stopped is None:
        curve(solver.iter)
    model = snaps.save()
    plot_log(log_path, out / "loss.png")
    if stopped is not None:
        raise TrainingStopped(f"{stopped}; snapshot {model}", stopped.rc, snaps.paths(solver.iter)[1], log_path)
    print(f"snapshot {model}; log {log_path}; curve {out / 'loss.png'}", flush=True)
    return {"log": log_path, "snapshot": model, "losses": last, "out": out, "data": root,
            "curve": curve.rows if curve is not None else []}


def latest_state(folder: Path, prefix: str) -> Path | None:
    """The ``<prefix>_iter_<N>.solverstate`` in ``folder`` with the largest N."""
    states = [(int(p.stem.rsplit("_iter_", 1)[1]), p) for p in folder.glob(f"{prefix}_iter_*.solverstate")
              if p.stem.rsplit("_iter_", 1)[1].isdigit()]
    return max(states)[1] if states else None


def train_stages(args: TrainOptions, cfg: NetConfig, name: str, iters: int) -> dict[str, Any]:
    """``train`` of a variant trained in stages (``cfg``, setting ``name`` and ``iters`` as ``train``
    made them): the stages one after the other (module docstring), then their final weights merged
    for the test net. Returns ``train``'s dict for the whole variant (the log, losses and curve of
    the last stage; ``snapshot`` the merged model) plus ``stages``: stage -> its model."""
    from gpsnet.weights import load_weights
    spec = spec_of(args.variant)
    if args.resume:
        raise ValueError(f"--resume: {args.variant} trains in stages ({', '.join(spec.train_stages)}): run the "
                         "same command again to continue (finished stages are kept, an interrupted one resumes "
                         "from its last snapshot), or give --stage NAME to resume one stage's solverstate")
    out = run_folder(args, name)
    root = ensure_synthetic(args.data, cfg.size - 1, args.synthetic_num, args.seed)
    models: dict[str, Path] = {}
    last: dict[str, Any] = {}
    for i, st in enumerate(spec.stages, start=1):
        sub = out / st.name
        prefix = snapshot_name(args.variant, st.name)
        final = snapshot_files(sub / "snapshots" / prefix, iters)[0]
        if final.is_file() and not args.overwrite:
            print(f"stage {i}/{len(spec.stages)} {st.name}: trained before ({final})", flush=True)
            models[st.name] = final
            continue
        starts = [*([args.weights] if args.weights else []), *([str(models[st.start_from])] if st.start_from else [])]
        resume = latest_state(sub / "snapshots", prefix) if not args.overwrite and (sub / "log.jsonl").is_file() else None
        print(f"stage {i}/{len(spec.stages)} {st.name}: run folder {sub}"
              + (f"; starts from stage {st.start_from} ({models[st.start_from]}), its layers frozen" if st.start_from else "")
              + (f"; resumes {resume}" if resume else ""), flush=True)
        last = train(replace(args, stage=st.name, out=sub, data=root, weights=",".join(starts) or None,
                             resume=str(resume) if resume else None, overrides=None,   # (in cfg)
                             eval_every=args.eval_every if i == len(spec.stages) else 0),
                     cfg, curve_weights=[*(Path(w) for w in starts), *models.values()])
        models[st.name] = last["snapshot"]
    # The test net holds every stage's layers: each stage's final weights, in training order.
    import caffe
    with tempfile.TemporaryDirectory(prefix="gpsnet-merge-") as tmp:
        test_net = Path(tmp) / "test.prototxt"
        test_net.write_text(net_param_text(args.variant, cfg, False, None, name == "small"))
        net = caffe.Net(str(test_net), caffe.TEST)
        report = load_weights(net, ",".join(str(m) for m in models.values()), quiet=True)
        if report.left:
            raise ValueError(f"{args.variant}: the stages' weights leave {report.left} of the test net unset")
        merged_tmp = Path(tmp) / "merged.caffemodel"
        net.save(str(merged_tmp))
        del net
        (out / "snapshots").mkdir(parents=True, exist_ok=True)
        merged = atomic_copy(merged_tmp, snapshot_files(out / "snapshots" / args.variant, iters)[0])
    print(f"merged the stages' weights ({', '.join(models)}) for the test net: {merged}", flush=True)
    return {"losses": {}, "curve": [], **last, "snapshot": merged, "out": out, "data": root, "stages": models,
            "log": last.get("log", out / spec.stages[-1].name / "log.jsonl")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except TrainingStopped as err:
        print(f"gpsnet train: {err}", file=sys.stderr)
        return err.rc
    except (OSError, ValueError) as err:   # missing or bad files (named), a full disk (WriteFailed)
        print(f"gpsnet train: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training: ``gpsnet train --variant ad_fuse [--small] [--data ROOT] [--iters N] [--gpu N | --gpus 0,1]``.

Runs the variant's solver with the setting's schedule, that of its committed solver (full: the paper's,
section 5.1, SGD lr 0.001, step 50000, gamma 0.1, 100000 iterations; small: the CPU one, Adam lr 0.002,
poly, 1600 iterations; ``--solver``, ``--lr``, ``--lr-policy``, ``--iters`` replace it) in a run folder
``--out`` holding the patched ``train.prototxt`` and ``solver.prototxt``, ``snapshots/``, ``log.jsonl`` (one line per
iteration: iter, lr, time, every loss, total) and ``loss.png``. ``--resume`` continues from a
``.solverstate``; the data stream and the sampling layers are fast-forwarded so that the resumed
run repeats the uninterrupted one. Faults (a non-finite loss, SIGINT/SIGTERM, a data error mid-run,
a full disk, bad weights): docs/nets.md, "Faults and bad input".

The baselines the paper builds from separate networks (``det_par``, ``ins_glo``: ``VariantSpec.stages``)
train stage after stage, each in its own run folder ``<out>/<stage>/`` with its own solver (a stage
starting from an earlier one gets that stage's final weights, its shared layers frozen); their final
weights are then merged into ``<out>/snapshots/<variant>_iter_<N>.caffemodel`` for the test net. A
finished stage is not trained again, and an interrupted one resumes from its last snapshot (or starts
again when it had none), when the same command runs again (``stage_start``). ``--stage NAME`` trains one
stage only, as a single run. The options are checked before anything runs (``check_options``,
``check_inputs``). ``--gpus 0,1,..``: one process per GPU sharing gradients through NCCL, each rank
reading its share of the data (``gpsnet.training.ranks``; docs/gpu.md, "Several GPUs").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from gpsnet.data.layout import image_limit
from gpsnet.layers.state import close_net, fast_forward
from gpsnet.nets.config import (FIELD_RULES, SETTINGS, NetConfig, Setting, add_set_arg, chosen_setting,
                               named_setting, override)
from gpsnet.nets.prototxt import net_param_text, read_net_prototxt, snapshot_name
from gpsnet.nets.solver import PAPER_SCHEDULE, PAPER_STEP, POLY_POWER, Schedule, learning_rate, solver_text
from gpsnet.nets.variants import spec_of, variants
from gpsnet.safeio import Staging, atomic_copy, atomic_write_text
from gpsnet.training.curve import LearningCurve
from gpsnet.training.patch import add_loss_guard, patch_data_layer
from gpsnet.training.ranks import RC_RANK_FAILED, RankFailed, RankGroup, parse_gpus, solver_for_ranks
from gpsnet.plotlog import plot_log
from gpsnet.training.snapshots import Snapshotter, latest_state, snapshot_files, staging_candidates

# Exit codes of a run stopped by a signal (the shell's 128 + signal number) and by a bad step.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RC_NON_FINITE = 3
RC_DATA_ERROR = 4


def finite_non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def learning_rate_arg(text: str) -> float:
    """``--lr``: a finite number >= 0 (NaN, inf or a negative rate only ever diverge; 0 keeps the
    weights, e.g. to check a start or a data set)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not finite_non_negative(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_schedule_args(ap: argparse.ArgumentParser, default: Schedule | None, why: str) -> None:
    """``--solver``, ``--lr``, ``--lr-policy`` with ``default``'s values (None: not given, the
    setting's schedule then fills them); ``schedule_of(args, ...)`` reads them."""
    def said(value: str) -> str:
        return f"default {value}: {why}" if default else f"default: {why}"
    ap.add_argument("--solver", choices=("SGD", "Adam"), default=default and default.solver,
                    help=f"solver type ({said(default.solver if default else '')})")
    ap.add_argument("--lr", type=learning_rate_arg, default=default and default.base_lr,
                    help=f"base learning rate ({said(f'{default.base_lr:g}' if default else '')})")
    ap.add_argument("--lr-policy", choices=("step", "poly"), default=default and default.lr_policy,
                    help=f"step (the paper's: x{PAPER_STEP['gamma']:g} every {PAPER_STEP['stepsize']}) or poly "
                         f"(DeepLab-v2's, power {POLY_POWER}, to 0 at the "
                         f"last iteration); {said(default.lr_policy if default else '')}")


def schedule_of(args: "argparse.Namespace | TrainOptions", default: Schedule = PAPER_SCHEDULE) -> Schedule:
    """The schedule ``--solver``, ``--lr`` and ``--lr-policy`` give; each one not given (None) is
    ``default``'s (the setting's schedule)."""
    return Schedule(args.solver or default.solver, default.base_lr if args.lr is None else args.lr,
                    args.lr_policy or default.lr_policy)


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
    iters: int | None = None            # train up to this iteration (None: the setting's max_iter)
    snapshot_every: int = 0             # 0: only at the end
    time_limit: float = 0.0             # seconds of training, then stop with a snapshot (0: none)
    solver: str | None = None           # the schedule (None: the setting's, Setting.schedule)
    lr: float | None = None
    lr_policy: str | None = None
    gpu: int | None = None
    gpus: str | None = None             # several GPUs, e.g. "0,1": one process each (ranks.RankGroup)
    out: Path | None = None             # run folder (None: runs/<variant>[-<setting>])
    seed: int = 0
    no_augment: bool = False
    overwrite: bool = False
    display: int = 10
    eval_every: int = 0                 # learning curve every N iterations (0: off)
    eval_split: str = "val"
    eval_limit: int = 0
    test_net: str | None = None         # the learning curve's test prototxt (with net)
    overrides: list[str] | None = None  # --set KEY=VALUE: NetConfig fields replaced (nets.config.override)

    @property
    def main_gpu(self) -> int | None:
        """The GPU of this process: ``--gpu``, or rank 0's of ``--gpus`` (None: the CPU)."""
        return parse_gpus(self.gpus)[0] if self.gpus is not None else self.gpu

    def with_schedule(self, schedule: Schedule) -> "TrainOptions":
        return replace(self, solver=schedule.solver, lr=schedule.base_lr, lr_policy=schedule.lr_policy)


def parse_args(argv: list[str] | None) -> TrainOptions:
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
    ap.add_argument("--iters", type=int, default=d.iters,
                    help="train up to this iteration (default: the setting's, as its committed solver: "
                         + ", ".join(f"{n} {named_setting(n).max_iter}" for n in SETTINGS) + ")")
    ap.add_argument("--snapshot-every", type=int, default=d.snapshot_every, help="snapshot period (0: only at the end)")
    ap.add_argument("--time-limit", type=float, default=d.time_limit,
                    help="stop (learning-curve point and snapshot included) after this many seconds of "
                         "training; --resume continues the same schedule (0: no limit)")
    add_schedule_args(ap, None, "the setting's, as its committed solver: "
                      + "; ".join(f"{n} {s.solver} {s.base_lr:g} {s.lr_policy}"
                                  for n, s in ((n, named_setting(n).schedule) for n in SETTINGS)))
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--gpus", help="several GPUs, e.g. 0,1: one process per GPU sharing gradients through NCCL, "
                                   "each reading its share of the data; the effective batch is the number of "
                                   "GPUs x the net's batch_size (docs/gpu.md, \"Several GPUs\")")
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


def settle(args: TrainOptions) -> tuple[Setting, TrainOptions]:
    """The setting ``args`` chooses (``--setting`` / ``--small``), and ``args`` with what it leaves to
    the setting filled in: the schedule (``--solver``, ``--lr``, ``--lr-policy``) and ``--iters``, those
    of the setting's committed solver."""
    chosen = chosen_setting(args.setting, args.small)
    return chosen, replace(args, iters=chosen.max_iter if args.iters is None else args.iters).with_schedule(
        schedule_of(args, chosen.schedule))


def check_options(args: TrainOptions) -> None:
    """The options of a settled ``args`` that need no file, checked before anything runs (the ones
    naming files: ``check_inputs``); ``ValueError`` naming the option and its allowed values."""
    seed = FIELD_RULES["seed"]
    bad = [f"--{name.replace('_', '-')} {getattr(args, name)}: must be an integer >= {lo}"
           for name, lo in (("iters", 0), ("snapshot_every", 0), ("eval_every", 0), ("display", 0),
                            ("synthetic_num", 1)) if getattr(args, name) < lo]
    bad += [f"--{name.replace('_', '-')} {value:g}: must be a finite number >= 0"
            for name, value in (("lr", args.lr), ("time_limit", args.time_limit)) if not finite_non_negative(value)]
    if not seed.ok(args.seed):
        bad.append(f"--seed {args.seed}: must be {seed.what}")
    if args.gpus is not None:
        if args.gpu is not None:
            bad.append(f"--gpu {args.gpu} and --gpus {args.gpus}: give one of them")
        try:
            parse_gpus(args.gpus)
        except ValueError as err:
            bad.append(str(err))
    if bad:
        raise ValueError("; ".join(bad))


def check_inputs(args: TrainOptions, root: Path) -> None:
    """The files the options name, checked before anything is trained or written (a later stage or
    the learning curve reads some of them only after training): ``--weights`` (each a Caffe model),
    ``--resume``, and with ``--eval-every`` the ``--eval-split`` of ``root`` (every file of it) and
    ``--test-net``. (``--net`` and the train split: ``train_net``, before it writes.)"""
    from gpsnet.data.layout import GPSDataError
    from gpsnet.weights import read_net_param, weight_files
    for what, path in [*(("--weights", p) for p in (weight_files(args.weights) if args.weights else [])),
                       ("--resume", args.resume)]:
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
        if what == "--weights":
            read_net_param(path)
    if args.eval_every:
        try:
            check_split_files(root, args.eval_split)
        except GPSDataError as err:
            raise GPSDataError(f"--eval-split {args.eval_split}: {err}") from None
        if args.test_net:
            read_net_prototxt(Path(args.test_net), "--test-net")


def run_folder(args: TrainOptions, name: str) -> Path:
    """``--out``, or ``runs/<variant>[-<setting>]``."""
    out = args.out or Path("runs") / (args.variant + ("" if name == "full" else f"-{name}"))
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a run folder")
    return out


@dataclass(frozen=True)
class PlannedNet:
    """One net of a run's stage plan: a stage of a variant trained in stages, or the run's one net
    (``stage``: None, or the one ``--stage`` names)."""
    stage: str | None
    out: Path                        # its run folder
    start_from: str | None = None    # the stage whose final weights it starts from, their layers frozen
    last: bool = True                # the last of the plan: the one with the learning curve


@dataclass(frozen=True)
class StagePlan:
    """The nets ``train`` runs, in order. ``staged``: a variant the paper builds from separately
    trained nets, without ``--stage`` or ``--net``: each stage in ``<out>/<stage>/``, a finished one
    kept, an interrupted one resumed, then their final weights merged for the test net (module
    docstring); else a single net in ``out``, a plan of one."""
    out: Path
    nets: tuple[PlannedNet, ...]
    staged: bool


def stage_plan(args: TrainOptions, setting_name: str) -> StagePlan:
    spec = spec_of(args.variant)
    out = run_folder(args, setting_name)
    if args.stage is not None or args.net or not spec.stages:
        return StagePlan(out, (PlannedNet(args.stage, out),), staged=False)
    return StagePlan(out, tuple(PlannedNet(st.name, out / st.name, st.start_from, last=i == len(spec.stages) - 1)
                                for i, st in enumerate(spec.stages)), staged=True)


@dataclass(frozen=True)
class StageStart:
    """How a stage of a staged run trains: from ``resume`` (its latest snapshot), or from its start
    (``again``: its run folder's earlier run replaced); ``why`` says which, for the log."""
    resume: Path | None = None
    again: bool = False
    why: str = ""


def stage_start(args: TrainOptions, net: PlannedNet, trained: set[str]) -> Path | StageStart:
    """A stage of a staged run (docs/nets.md, "The baselines"): its final model when it is finished,
    else how it trains. Trained from its start when ``--overwrite`` says so, when the stage it starts
    from was trained by this call (``trained``: its frozen copy of it would be stale), or when its run
    folder holds no model (a run stopped before its first snapshot, snapshots deleted); resumed from
    its latest snapshot below ``--iters`` otherwise. A folder holding models but none to finish or
    resume (another ``--iters``) is an error: it is replaced only with ``--overwrite``."""
    assert net.stage is not None
    folder = net.out / "snapshots"
    prefix = snapshot_name(args.variant, net.stage)
    final = snapshot_files(folder / prefix, args.iters)[0]
    if args.overwrite:
        return StageStart(again=True)
    if net.start_from in trained:
        return StageStart(again=True, why=f"trained from its start: stage {net.start_from} was trained again")
    if final.is_file():
        return final
    resume = latest_state(folder, prefix, before=args.iters)
    if resume is not None:
        return StageStart(resume=resume, why=f"resumes {resume}")
    models = sorted(folder.glob(f"{prefix}_iter_*.caffemodel")) if folder.is_dir() else []
    if models:
        raise ValueError(f"{net.out}: stage {net.stage} holds {', '.join(m.name for m in models)} but no snapshot "
                         f"to finish or resume to --iters {args.iters}: pass that run's --iters, or --overwrite "
                         "to train every stage again")
    if (net.out / "log.jsonl").is_file():
        return StageStart(again=True, why="trained from its start: its run stopped before its first snapshot, "
                                          "or its snapshots are gone")
    return StageStart()


def train(args: TrainOptions, cfg: NetConfig | None = None,
          curve_weights: list[Path] | None = None) -> dict[str, Any]:
    """Run the solver; returns {"log": path, "snapshot": caffemodel, "losses": last row, "curve":
    learning-curve rows}. ``cfg`` replaces the setting's NetConfig (with ``--net``/``--test-net``);
    ``args.overrides`` (``--set``) apply on top of either.
    A run stopped early raises ``TrainingStopped`` (after a snapshot where the weights are good).
    A variant trained in stages, without ``--stage`` or ``--net``: every stage (``stage_plan``), then
    the merged model, plus ``stages``: stage -> its model.
    ``curve_weights``: the learning curve's weights of the test net's layers the train net lacks
    (default: ``--weights``)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    chosen, args = settle(args)
    cfg = override(cfg or chosen.cfg, args.overrides)   # a bad --set fails before anything starts
    check_options(args)
    import caffe
    from gpsnet.device import check_gpu, use_device
    # first: a bad --gpu(s) fails before any data or run folder is made; rank 0's GPU is checked by use_device
    ranks_gpus = parse_gpus(args.gpus) if args.gpus is not None else []
    use_device(caffe, args.main_gpu, "--gpus" if ranks_gpus else "--gpu")
    for gpu in ranks_gpus[1:]:
        check_gpu(caffe, gpu, "--gpus")
    if args.gpus is not None:
        if not caffe.has_nccl():
            raise ValueError(f"--gpus {args.gpus}: this pycaffe is built without NCCL ({caffe.__file__}); "
                             "scripts/build_fork --cuda builds with it where nccl.h and libnccl are found "
                             "(NCCL_ROOT, the CUDA toolkit)")
    spec = spec_of(args.variant)
    if args.stage is not None:
        start = spec.stage(args.stage).start_from   # (an unknown stage is named with the variant's stages)
        if start and not args.weights and not args.resume:
            print(f"warning: stage {args.stage} of {args.variant} starts from stage {start}'s trained weights and "
                  f"keeps them frozen; without --weights they stay at their random fillers", file=sys.stderr)
    elif spec.stages and not args.net and args.resume:
        raise ValueError(f"--resume: {args.variant} trains in stages ({', '.join(spec.train_stages)}): run the "
                         "same command again to continue (finished stages are kept, an interrupted one resumes "
                         "from its last snapshot), or give --stage NAME to resume one stage's solverstate")
    plan = stage_plan(args, chosen.name)
    root = ensure_synthetic(args.data, cfg.size - 1, args.synthetic_num, args.seed)
    check_inputs(args, root)
    args = replace(args, data=root)
    if not plan.staged:
        return train_net(args, cfg, chosen.name, curve_weights)
    models: dict[str, Path] = {}
    trained: set[str] = set()   # the stages trained by this call
    last: dict[str, Any] = {}
    for i, net in enumerate(plan.nets, start=1):
        assert net.stage is not None
        head = f"stage {i}/{len(plan.nets)} {net.stage}"
        start = stage_start(args, net, trained)
        if isinstance(start, Path):
            print(f"{head}: trained before ({start})", flush=True)
            models[net.stage] = start
            continue
        starts = [*([args.weights] if args.weights else []), *([str(models[net.start_from])] if net.start_from else [])]
        print(f"{head}: run folder {net.out}"
              + (f"; starts from stage {net.start_from} ({models[net.start_from]}), its layers frozen"
                 if net.start_from else "")
              + (f"; {start.why}" if start.why else ""), flush=True)
        last = train_net(replace(args, stage=net.stage, out=net.out, weights=",".join(starts) or None,
                                 resume=str(start.resume) if start.resume else None, overrides=None,   # (in cfg)
                                 overwrite=start.again, eval_every=args.eval_every if net.last else 0),
                         cfg, chosen.name, curve_weights=[*(Path(w) for w in starts), *models.values()])
        models[net.stage] = last["snapshot"]
        trained.add(net.stage)
    merged = merge_stages(args.variant, cfg, models, snapshot_files(plan.out / "snapshots" / args.variant, args.iters)[0])
    return {"losses": {}, "curve": [], **last, "snapshot": merged, "out": plan.out, "data": root, "stages": models,
            "log": last.get("log", plan.nets[-1].out / "log.jsonl")}


def merge_stages(variant: str, cfg: NetConfig, models: dict[str, Path], dest: Path) -> Path:
    """The test net holds every stage's layers: each stage's final weights (``models``, in training
    order) loaded into it and saved as ``dest``."""
    import caffe
    from gpsnet.weights import load_weights
    with tempfile.TemporaryDirectory(prefix="gpsnet-merge-") as tmp:
        test_net = Path(tmp) / "test.prototxt"
        test_net.write_text(net_param_text(variant, cfg, False))
        net = caffe.Net(str(test_net), caffe.TEST)
        report = load_weights(net, ",".join(str(m) for m in models.values()), quiet=True)
        if report.left:
            raise ValueError(f"{variant}: the stages' weights leave {report.left} of the test net unset")
        merged_tmp = Path(tmp) / "merged.caffemodel"
        net.save(str(merged_tmp))
        del net
        dest.parent.mkdir(parents=True, exist_ok=True)
        merged = atomic_copy(merged_tmp, dest)
    print(f"merged the stages' weights ({', '.join(models)}) for the test net: {merged}", flush=True)
    return merged


def train_net(args: TrainOptions, cfg: NetConfig, setting_name: str,
              curve_weights: list[Path] | None = None) -> dict[str, Any]:
    """``train`` of one net (``args`` settled, ``cfg`` with its overrides): the run folder, the patched
    train net and the solver set up, then the ``Run``'s loop."""
    import caffe
    from gpsnet.weights import weight_files
    out = run_folder(args, setting_name)
    if (out / "log.jsonl").is_file() and not args.resume and not args.overwrite:
        raise ValueError(f"{out} already holds a run (log.jsonl): pass --overwrite to replace it, "
                         "--resume to continue it, or another --out")
    starts = weight_files(args.weights) if args.weights else []   # (checked by check_inputs)
    text = net_param_text(args.variant, cfg, True, args.net, args.stage)
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
    train_net_path = out / "train.prototxt"
    atomic_write_text(train_net_path, text)
    prefix = (out / "snapshots" / snapshot_name(args.variant, args.stage)).resolve()
    schedule = dict(schedule=schedule_of(args), max_iter=max(args.iters, 1), seed=args.seed)
    # The run folder's solver.prototxt is for `caffe train` (snapshots into the run folder); the
    # one the run uses snapshots only when told, into the staging folder (see Snapshotter).
    atomic_write_text(out / "solver.prototxt", solver_text(str(train_net_path.resolve()), str(prefix),
                                                          snapshot=args.snapshot_every, **schedule))
    caffe.set_random_seed(args.seed)
    ranks = RankGroup(parse_gpus(args.gpus)) if args.gpus is not None else None
    with tempfile.TemporaryDirectory(prefix="gpsnet-train-") as work_dir:
        work = Path(work_dir)
        staging = Staging(work, staging_candidates(out))
        try:
            staged_solver = work / "solver.prototxt"
            staged = solver_text(str(train_net_path.resolve()), str(staging.link / prefix.name), snapshot=0, **schedule)
            staged_solver.write_text(solver_for_ranks(staged) if ranks is not None else staged)
            with stop_requests() as signals:   # from here on, a signal means: snapshot and stop
                if ranks is not None:
                    ranks.join(caffe)           # (the data layer reads its rank when the net is made)
                solver = caffe.get_solver(str(staged_solver))
                try:
                    return Run(args, cfg, setting_name, out, root, n_train, loss_names, solver,
                               Snapshotter(solver, staging, prefix, args.solver), signals, work,
                               starts if curve_weights is None else curve_weights, ranks, staged_solver).loop()
                finally:
                    if ranks is not None:
                        ranks.close()
                    close_net(solver.net)
                    del solver
        finally:
            staging.close()


def logged_iteration(row: str) -> float:
    """The iteration of a ``log.jsonl`` line; infinity for a line that is not a whole row."""
    try:
        return json.loads(row)["iter"]
    except (ValueError, KeyError, TypeError):
        return math.inf


@dataclass
class Run:
    """One net's training run: what its loop reads (``args`` settled; ``signals`` from
    ``stop_requests``; ``work`` a private temporary folder) and the solver it steps."""
    args: TrainOptions
    cfg: NetConfig
    setting_name: str
    out: Path
    root: Path
    n_train: int
    loss_names: list[str]
    solver: Any
    snaps: Snapshotter
    signals: list[int]
    work: Path
    curve_weights: list[Path]
    ranks: RankGroup | None = None      # --gpus: the other ranks (started by ``start``)
    solver_path: Path | None = None     # the solver prototxt the other ranks make theirs from

    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"

    def start(self) -> int:
        """Load ``--weights`` or restore ``--resume`` (data stream and sampling layers fast-forwarded,
        the log cut at it); returns the first iteration."""
        from gpsnet.weights import load_weights, resumable_state
        args = self.args
        if args.weights:
            load_weights(self.solver.net, args.weights)
        state = None
        if not args.resume:
            atomic_write_text(self.log_path, "")
        else:
            state = resumable_state(args.resume, self.solver.net, args.solver, self.work)
            self.solver.restore(str(state))
            fast_forward(self.solver.net, self.solver.iter)
            rows = [r for r in (self.log_path.read_text().splitlines() if self.log_path.is_file() else [])
                    if logged_iteration(r) < self.solver.iter]   # (a line cut short by a kill: dropped)
            atomic_write_text(self.log_path, "".join(r + "\n" for r in rows))
        if self.ranks is not None:   # the other ranks take these weights (and restore the same state)
            import caffe
            assert self.solver_path is not None
            self.ranks.last_snapshot = lambda: str(self.snaps.last_before(self.solver.iter + 1) or "none")
            self.ranks.attach(caffe, self.solver, str(self.solver_path), str(state) if state else None, args.seed)
        return self.solver.iter

    def learning_curve(self, start: int) -> LearningCurve | None:
        """``--eval-every``: the test net sharing the solver's weights (a resumed run keeps its earlier points)."""
        args = self.args
        if not args.eval_every:
            return None
        test_text = (read_net_prototxt(Path(args.test_net), "--test-net") if args.test_net
                     else net_param_text(args.variant, self.cfg, False))
        curve = LearningCurve(self.solver.net, args.variant, self.cfg, test_text, self.root, args.eval_split,
                              args.eval_limit, self.out, gpu=args.main_gpu, other_weights=tuple(self.curve_weights))
        if args.resume and (self.out / "curve.json").is_file():
            curve.rows = [r for r in json.loads((self.out / "curve.json").read_text()) if r["iter"] <= start]
        return curve

    def step(self) -> dict[str, Any]:
        """One solver step; its log row (iter, lr, time, every loss, total). A non-finite loss is a
        ``TrainingStopped`` naming the last good snapshot; a data error propagates."""
        from gpsnet.layers.finite_loss import NonFiniteLoss
        it = self.solver.iter
        t0 = time.time()
        try:
            if self.ranks is not None:
                self.ranks.before_step()
            self.solver.step(1)
        except NonFiniteLoss as err:
            # The weights that gave this loss came from the last update: no snapshot of them, and
            # a snapshot taken at this iteration holds them.
            good = self.snaps.last_before(it)
            kept = (f"the last good snapshot (weights that gave a finite loss) is {good}" if good else
                    "no good snapshot was written (--snapshot-every N keeps one every N iterations)")
            raise TrainingStopped(f"iteration {it}: {err}; stopped before its backward pass (lower --lr); "
                                  f"{kept}", RC_NON_FINITE) from None
        finally:
            if self.ranks is not None:
                self.ranks.after_step()
        row: dict[str, Any] = {"iter": it, "lr": learning_rate(it, self.args.lr, self.args.lr_policy,
                                                                max(self.args.iters, 1)),
                               "time": round(time.time() - t0, 4)}
        for k in self.loss_names:
            row[k] = float(self.solver.net.blobs[k].data.reshape(-1)[0])
        row["total"] = sum(row[k] for k in self.loss_names)
        return row

    def loop(self) -> dict[str, Any]:
        """Step the solver to ``--iters`` (or a stop: a signal, the time limit, a data error), logging
        every step, with the learning curve and periodic snapshots; then the final snapshot and plot."""
        from gpsnet.data.layout import GPSDataError
        from gpsnet.safeio import WriteFailed
        args, solver, iters = self.args, self.solver, self.args.iters
        try:
            start = self.start()
        except RankFailed as err:
            raise TrainingStopped(f"{err} (before the first step)", RC_RANK_FAILED, log=self.log_path) from None
        what = args.variant + (f" stage {args.stage}" if args.stage else "")
        print(f"training {what} ({self.setting_name}) on {self.root} ({self.n_train} train images): iterations "
              f"{start} -> {iters}, run folder {self.out}", flush=True)
        last: dict[str, Any] = {}
        curve = self.learning_curve(start)
        t_start = time.time()
        t_eval = 0.0
        stopped: TrainingStopped | None = None
        with self.log_path.open("a") as log:
            while solver.iter < iters:
                if self.signals:
                    stopped = TrainingStopped(f"stopped by {signal.Signals(self.signals[0]).name} at iteration "
                                              f"{solver.iter}", 128 + self.signals[0])
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
                try:
                    row = self.step()
                except (GPSDataError, OSError) as err:
                    stopped = TrainingStopped(f"iteration {it}: data error: {err}", RC_DATA_ERROR)
                    break
                except RankFailed as err:
                    stopped = TrainingStopped(f"iteration {it}: {err}", RC_RANK_FAILED)
                    break
                try:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                except OSError as err:
                    raise WriteFailed(self.log_path, err) from err
                last = row
                if args.display and (it % args.display == 0 or solver.iter == iters):
                    eta = (time.time() - t_start - t_eval) / (solver.iter - start) * (iters - solver.iter)
                    losses = " ".join(f"{k}={row[k]:.3f}" for k in self.loss_names)
                    print(f"iter {it:6d}  total={row['total']:.3f}  {losses}  lr={row['lr']:g}  "
                          f"{row['time']:.2f}s/it  eta {eta:.0f}s", flush=True)
                if args.snapshot_every and solver.iter % args.snapshot_every == 0 and solver.iter < iters:
                    print(f"snapshot {self.snaps.save()}", flush=True)
        if curve is not None and stopped is None:
            curve(solver.iter)
        model = self.snaps.save()
        plot_log(self.log_path, self.out / "loss.png")
        if stopped is not None:
            raise TrainingStopped(f"{stopped}; snapshot {model}", stopped.rc, self.snaps.paths(solver.iter)[1],
                                  self.log_path)
        print(f"snapshot {model}; log {self.log_path}; curve {self.out / 'loss.png'}", flush=True)
        return {"log": self.log_path, "snapshot": model, "losses": last, "out": self.out, "data": self.root,
                "curve": curve.rows if curve is not None else []}

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

"""Training: ``gpsnet train --variant ad_fuse [--small] [--data ROOT] [--iters N] [--gpu N]``.

Runs the variant's solver (paper section 5.1: lr 0.001, step 50000, gamma 0.1, momentum 0.9,
weight decay 0.0005, two images per iteration) in a run folder ``--out`` holding the patched
``train.prototxt`` and ``solver.prototxt``, ``snapshots/``, ``log.jsonl`` (one line per
iteration: iter, lr, time, every loss, total) and ``loss.png``. ``--resume`` continues from a
``.solverstate``; the data stream and the sampling layers are fast-forwarded so that the resumed
run repeats the uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from gpsnet.nets.builder import (PAPER_LR, VARIANTS, NetConfig, learning_rate, net_text, setting, solver_text,
                                 variant_dir)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Schedule:
    """A solver schedule: what ``--solver``, ``--lr`` and ``--lr-policy`` select."""
    solver: str
    base_lr: float
    lr_policy: str

    def argv(self) -> list[str]:
        return ["--solver", self.solver, "--lr", f"{self.base_lr:g}", "--lr-policy", self.lr_policy]


# The paper's (section 5.1), the default of `gpsnet train`; and the CPU setting's for short runs from
# random init (the demo, the ablation table, the overfit test; docs/nets.md "Schedules").
PAPER_SCHEDULE = Schedule("SGD", PAPER_LR["base_lr"], PAPER_LR["lr_policy"])
CPU_SCHEDULE = Schedule("Adam", 0.002, "poly")


def add_schedule_args(ap: argparse.ArgumentParser, default: Schedule, why: str) -> None:
    """``--solver``, ``--lr``, ``--lr-policy`` with ``default``'s values; ``schedule_of(args)`` reads them."""
    ap.add_argument("--solver", choices=("SGD", "Adam"), default=default.solver,
                    help=f"solver type (default {default.solver}: {why})")
    ap.add_argument("--lr", type=float, default=default.base_lr, help=f"base learning rate (default {default.base_lr:g})")
    ap.add_argument("--lr-policy", choices=("step", "poly"), default=default.lr_policy,
                    help=f"step (the paper's: x0.1 at 50000) or poly (DeepLab-v2's, power 0.9, to 0 at the "
                         f"last iteration); default {default.lr_policy}")


def schedule_of(args: argparse.Namespace) -> Schedule:
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


def net_param_text(variant: str, cfg: NetConfig, train: bool, net: str | None, small: bool) -> str:
    """The prototxt text: ``--net`` if given, the committed file when it exists, else the builder."""
    if net:
        return Path(net).read_text()
    committed = variant_dir(REPO_ROOT / "prototxt", variant, small) / ("train.prototxt" if train else "test.prototxt")
    if committed.is_file() and cfg in (NetConfig.full(), NetConfig.small()):
        return committed.read_text()
    return net_text(variant, cfg, train)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpsnet train", description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=VARIANTS, default="ad_fuse")
    ap.add_argument("--small", action="store_true", help="the small CPU setting (prototxt/small/...)")
    ap.add_argument("--setting", choices=("full", "small", "tiny"), help="overrides --small (tiny: tests)")
    ap.add_argument("--net", help="a train prototxt to use instead of the variant's")
    ap.add_argument("--data", type=Path, help="GPS-layout data root (default: synthetic data in the cache)")
    ap.add_argument("--synthetic-num", type=int, default=200, help="images of the default synthetic set")
    ap.add_argument("--weights", help="initial .caffemodel, copied by layer name")
    ap.add_argument("--resume", help="a .solverstate to continue from")
    ap.add_argument("--iters", type=int, default=None, help="train up to this iteration (default 100000)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="snapshot period (0: only at the end)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="stop (learning-curve point and snapshot included) after this many seconds of "
                         "training; --resume continues the same schedule (0: no limit)")
    add_schedule_args(ap, PAPER_SCHEDULE, "the paper's; Adam for short runs from random init, e.g. the demo")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--out", type=Path, help="run folder (default runs/<variant>[-small])")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true",
                    help="no random scaling or flipping (overfitting checks)")
    ap.add_argument("--overwrite", action="store_true",
                    help="train into a run folder that already holds a run (its log, plots and "
                         "snapshots are replaced)")
    ap.add_argument("--display", type=int, default=10, help="print every N iterations")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="learning curve: evaluate on --eval-split every N iterations (0: off)")
    ap.add_argument("--eval-split", default="val", help="split of the learning curve (default val)")
    ap.add_argument("--eval-limit", type=int, default=0,
                    help="learning curve: at most N images of the split (0: all)")
    ap.add_argument("--test-net", help="the test prototxt of the learning curve (with --net)")
    ap.add_argument("--quiet-caffe", action="store_true", default=True, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


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
                 root: Path, split: str, limit: int, out: Path, gpu: int | None = None) -> None:
        from gpsnet.infer import Predictor
        # the same mode as the solver: Predictor sets Caffe's (process-wide) mode, and a CPU-mode
        # predictor would switch a GPU run's later solver steps to the CPU
        self.predictor = Predictor(variant, None, cfg, net_text_override=test_net_text, gpu=gpu)
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
        (self.out / "curve.json").write_text(json.dumps(self.rows, indent=1) + "\n")
        plot_curve(self.rows, self.out / "curve.png")
        print(f"eval  {it:6d}  {self.split} ({row['images']} images): AP0.5 {100 * row['AP50']:.1f}  "
              f"avg.AP {100 * row['avg_AP']:.1f}  box recall {100 * row['box_recall']:.1f}"
              + (f"  mIoU {100 * row['mIoU']:.1f}" if row["mIoU"] is not None else "")
              + f"  ({row['seconds']:.0f}s)", flush=True)
        return row


def train(args: argparse.Namespace, cfg: NetConfig | None = None) -> dict[str, Any]:
    """Run the solver; returns {"log": path, "snapshot": caffemodel, "losses": last row, "curve":
    learning-curve rows}. ``cfg`` replaces the setting's NetConfig (with ``--net``/``--test-net``)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from gpsnet.device import use_device
    use_device(caffe, args.gpu)     # first: a bad --gpu fails before any data or run folder is made
    name = args.setting or ("small" if args.small else "full")
    cfg = cfg or setting(name)
    small = name != "full"
    iters = 100000 if args.iters is None else args.iters
    out = args.out or Path("runs") / (args.variant + ("" if name == "full" else f"-{name}"))
    if (out / "log.jsonl").is_file() and not args.resume and not args.overwrite:
        raise ValueError(f"{out} already holds a run (log.jsonl): pass --overwrite to replace it, "
                         "--resume to continue it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    if args.overwrite and not args.resume:
        for old in [*(out / "snapshots").glob("*.caffemodel"), *(out / "snapshots").glob("*.solverstate"),
                    out / "curve.json", out / "curve.png", out / "loss.png"]:
            old.unlink(missing_ok=True)
    root = ensure_synthetic(args.data, cfg.size - 1, args.synthetic_num, args.seed)
    text = patch_data_layer(net_param_text(args.variant, cfg, True, args.net, name == "small"),
                            root.resolve(), args.seed, augment=not args.no_augment)
    train_net = out / "train.prototxt"
    train_net.write_text(text)
    prefix = (out / "snapshots" / args.variant).resolve()
    solver_path = out / "solver.prototxt"
    solver_path.write_text(solver_text(str(train_net.resolve()), str(prefix), max_iter=max(iters, 1),
                                       snapshot=args.snapshot_every, seed=args.seed, base_lr=args.lr,
                                       solver_type=args.solver, lr_policy=args.lr_policy))
    caffe.set_random_seed(args.seed)
    solver = caffe.get_solver(str(solver_path))
    if args.weights:
        solver.net.copy_from(args.weights)
    start = 0
    log_path = out / "log.jsonl"
    if args.resume:
        solver.restore(args.resume)
        start = solver.iter
        fast_forward(solver.net, start)
        rows = [r for r in (log_path.read_text().splitlines() if log_path.is_file() else [])
                if r.strip() and json.loads(r)["iter"] < start]
        log_path.write_text("".join(r + "\n" for r in rows))
    else:
        log_path.write_text("")
    loss_names = [b for b in solver.net.outputs if "loss" in b]
    base_lr = args.lr
    print(f"training {args.variant} ({name}) on {root}: iterations {start} -> {iters}, run folder {out}",
          flush=True)
    last: dict[str, Any] = {}
    curve = None
    if args.eval_every:
        test_text = (Path(args.test_net).read_text() if args.test_net
                     else net_param_text(args.variant, cfg, False, None, name == "small"))
        curve = LearningCurve(solver.net, args.variant, cfg, test_text, root, args.eval_split,
                              args.eval_limit, out, gpu=args.gpu)
        if args.resume and (out / "curve.json").is_file():   # the resumed run's earlier points
            curve.rows = [r for r in json.loads((out / "curve.json").read_text()) if r["iter"] <= start]
    t_start = time.time()
    t_eval = 0.0
    with log_path.open("a") as log:
        while solver.iter < iters:
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
            solver.step(1)
            row: dict[str, Any] = {"iter": it, "lr": learning_rate(it, base_lr, args.lr_policy, max(iters, 1)),
                                   "time": round(time.time() - t0, 4)}
            for k in loss_names:
                row[k] = float(solver.net.blobs[k].data.reshape(-1)[0])
            row["total"] = sum(row[k] for k in loss_names)
            if not math.isfinite(row["total"]):
                raise ValueError(f"iteration {it}: the loss is not finite ({row}); lower --lr")
            log.write(json.dumps(row) + "\n")
            log.flush()
            last = row
            if args.display and (it % args.display == 0 or solver.iter == iters):
                eta = (time.time() - t_start - t_eval) / (solver.iter - start) * (iters - solver.iter)
                losses = " ".join(f"{k}={row[k]:.3f}" for k in loss_names)
                print(f"iter {it:6d}  total={row['total']:.3f}  {losses}  lr={row['lr']:g}  "
                      f"{row['time']:.2f}s/it  eta {eta:.0f}s", flush=True)
    if curve is not None:
        curve(solver.iter)
    solver.snapshot()
    model = Path(f"{prefix}_iter_{solver.iter}.caffemodel")
    plot_log(log_path, out / "loss.png")
    close_net(solver.net)
    del solver
    print(f"snapshot {model}; log {log_path}; curve {out / 'loss.png'}", flush=True)
    return {"log": log_path, "snapshot": model, "losses": last, "out": out, "data": root,
            "curve": curve.rows if curve is not None else []}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"gpsnet train: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

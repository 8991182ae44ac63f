"""Training plots: ``gpsnet plot-log LOG... [--out DIR] [--smooth N]``.

Reads both kinds of training log and plots them alike:

* ``log.jsonl`` of ``gpsnet train`` (one line per iteration: iter, lr, time, each loss, total), with
  the learning curve of ``curve.json`` beside it when the run made one (``--eval-every``);
* the log of ``caffe train`` (glog's format, the one Caffe's ``tools/extra/parse_log.py`` reads:
  ``Iteration N (... iter/s, ...), loss = L``, ``Train net output #k: NAME = V``,
  ``Iteration N, lr = LR``, ``Iteration N, Testing net (#0)``, ``Test net output #k: NAME = V``),
  its test net outputs as the learning curve.

Writes ``loss.png`` (one plot per loss, every log a line: the raw values faint, their moving
average over ``--smooth`` points (default: 1/50 of the log) drawn over them), ``loss.csv`` (run, iter,
loss, value, smoothed) and, where a log has one, ``curve.png`` and ``curve.csv`` (run, iter, metric,
value) into ``--out`` (default: ``plots/`` beside the first log). ``gpsnet train`` draws its
``loss.png`` and ``curve.png`` with the same functions.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpsnet.safeio import atomic_write_text

# the learning curve's metrics of `gpsnet train --eval-every` (curve.json), as fractions
CURVE_METRICS: dict[str, str] = {"AP50": "AP$^p$ at 0.5", "avg_AP": "avg.AP", "mIoU": "global mIoU",
                                 "box_recall": "person box recall (IoU 0.5)"}
NOT_LOSSES = ("iter", "lr", "time")   # the other keys of a loss row: a loss (or a train net output)
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|-nan|-inf))"
_ITERATION = re.compile(r"Iteration (\d+)")
_TOTAL = re.compile(r"Iteration \d+(?: \([^)]*\))?, loss = " + _NUMBER)
_LR = re.compile(r"Iteration \d+, lr = " + _NUMBER)
_OUTPUT = re.compile(r"(Train|Test) net output #\d+: (\S+) = " + _NUMBER)


class LogError(ValueError):
    """A file that is neither kind of training log (the message names it)."""


@dataclass
class Run:
    """One log: loss rows (iter, lr, each loss, total) and learning-curve rows (iter, metrics)."""
    name: str
    path: Path
    kind: str                                            # "gpsnet" (log.jsonl) or "caffe"
    losses: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)

    def loss_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.losses:
            names.update((k, None) for k in row if k not in NOT_LOSSES)
        return sorted(names, key=lambda k: (k == "total", k))

    def curve_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.curve:
            names.update((k, None) for k, v in row.items()
                         if k != "iter" and isinstance(v, (int, float)) and (k in CURVE_METRICS or self.kind == "caffe"))
        return list(names)


def _float(text: str) -> float:
    return float(text.replace("-nan", "nan"))


def read_jsonl(path: Path, lines: list[str]) -> Run:
    run = Run(path.parent.name or path.stem, path, "gpsnet")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if n == len(lines):   # a line cut short by a run still writing: the rows before it
                break
            raise LogError(f"{path}:{n}: not a JSON line ({err.msg})") from None
        if not isinstance(row, dict) or "iter" not in row:
            raise LogError(f"{path}:{n}: a log.jsonl line has an 'iter' (got {line[:60]!r})")
        run.losses.append(row)
    curve = path.with_name("curve.json")
    if curve.is_file():
        try:
            run.curve = [r for r in json.loads(curve.read_text()) if isinstance(r, dict) and "iter" in r]
        except json.JSONDecodeError as err:
            raise LogError(f"{curve}: not JSON ({err.msg})") from None
    return run


def read_caffe(path: Path, lines: list[str]) -> Run:
    run = Run(path.stem, path, "caffe")
    rows: dict[int, dict[str, float]] = {}
    tests: dict[int, dict[str, float]] = {}
    it: int | None = None
    for line in lines:
        m = _ITERATION.search(line)
        if m:
            it = int(m.group(1))
        if it is None:
            continue
        if (m := _TOTAL.search(line)):
            rows.setdefault(it, {"iter": it})["total"] = _float(m.group(1))
        elif (m := _LR.search(line)):
            rows.setdefault(it, {"iter": it})["lr"] = _float(m.group(1))
        elif (m := _OUTPUT.search(line)):
            target = rows if m.group(1) == "Train" else tests
            target.setdefault(it, {"iter": it})[m.group(2)] = _float(m.group(3))
    run.losses = [rows[k] for k in sorted(rows)]
    run.curve = [tests[k] for k in sorted(tests)]
    return run


def read_log(path: str | Path) -> Run:
    """A ``log.jsonl`` of ``gpsnet train`` or the log of ``caffe train`` (recognised by its content)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise LogError(f"{path}: cannot read ({err.strerror or err})") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    run = read_jsonl(path, lines) if first.lstrip().startswith("{") else read_caffe(path, lines)
    if not run.losses:
        raise LogError(f"{path}: no training iterations in it: neither a log.jsonl of gpsnet train (JSON "
                       "lines with 'iter') nor a caffe train log ('Iteration N ..., loss = L' lines; "
                       "is it glog's output, GLOG_logtostderr=1 ... 2> train.log?)")
    return run


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` finite values at each point (NaN where none)."""
    out = []
    for i in range(len(values)):
        last = [v for v in values[max(0, i - window + 1):i + 1] if math.isfinite(v)]
        out.append(sum(last) / len(last) if last else float("nan"))
    return out


def _window(n: int, smooth: int | None) -> int:
    return max(1, smooth if smooth else n // 50)


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _labelled(runs: list[Run]) -> list[tuple[str, Run]]:
    """Each run with a legend label unique among ``runs``."""
    names = [r.name for r in runs]
    return [(r.name if names.count(r.name) == 1 else str(r.path), r) for r in runs]


def plot_losses(runs: list[Run], png: Path, smooth: int | None = None) -> list[list[Any]]:
    """``png``: one plot per loss name, every run a line; returns the CSV rows (run, iter, loss,
    value, smoothed)."""
    plt = _pyplot()
    names: dict[str, None] = {}
    for r in runs:
        names.update((k, None) for k in r.loss_names())
    keys = sorted(names, key=lambda k: (k == "total", k))
    cols = min(3, max(1, len(keys)))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.3 * nrows), squeeze=False)
    table: list[list[Any]] = []
    for ax, key in zip(axes.flat, keys):
        for label, r in _labelled(runs):
            rows = [row for row in r.losses if key in row]
            if not rows:
                continue
            its, vals = [row["iter"] for row in rows], [float(row[key]) for row in rows]
            smoothed = moving_average(vals, _window(len(vals), smooth))
            line, = ax.plot(its, smoothed, linewidth=1.6, label=label)
            ax.plot(its, vals, linewidth=0.6, alpha=0.3, color=line.get_color())
            table += [[label, i, key, v, s] for i, v, s in zip(its, vals, smoothed)]
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        finite = [row[3] for row in table if row[2] == key and math.isfinite(row[3])]
        if finite and min(finite) > 0 and max(finite) > 20 * min(finite):   # a log scale for a wide range
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=7)
    window = "moving average" + (f" over {smooth} points" if smooth else " over 1/50 of each log")
    fig.suptitle(f"training losses ({window}; raw values faint)", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return table


def plot_log(log_path: Path, png: Path) -> None:
    """``gpsnet train``'s ``loss.png``: the loss plots of its ``log.jsonl`` (nothing when empty)."""
    run = read_jsonl(log_path, log_path.read_text().splitlines())
    if run.losses:
        plot_losses([run], png)


def plot_learning_curves(runs: list[Run], png: Path) -> list[list[Any]]:
    """``png``: the learning curves (``gpsnet train``'s metrics in %, Caffe's test outputs as they
    are); returns the CSV rows (run, iter, metric, value)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    table: list[list[Any]] = []
    percent = all(r.kind == "gpsnet" for r in runs if r.curve)
    for label, r in _labelled([r for r in runs if r.curve]):
        for key in r.curve_names():
            its = [row["iter"] for row in r.curve]
            vals = [row.get(key) if isinstance(row.get(key), (int, float)) else float("nan") for row in r.curve]
            shown = [100 * v for v in vals] if percent else vals
            name = CURVE_METRICS.get(key, key)
            ax.plot(its, shown, marker="o", label=name if len(runs) == 1 else f"{label}: {name}")
            table += [[label, i, key, v] for i, v in zip(its, vals)]
    ax.set_xlabel("iteration")
    if percent:
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        split = next((r.curve[-1].get("split", "val") for r in runs if r.curve), "val")
        ax.set_title(f"learning curve on the {split} split")
    else:
        ax.set_title("test net outputs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return table


def plot_curve(rows: list[dict[str, Any]], png: Path) -> None:
    """``gpsnet train``'s ``curve.png`` from its learning-curve rows (curve.json)."""
    plot_learning_curves([Run("run", png, "gpsnet", curve=rows)], png)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def plot(logs: list[Path], out: Path, smooth: int | None = None) -> list[Path]:
    """Read ``logs``, write the plots and tables into ``out``; returns the files written."""
    runs = [read_log(p) for p in logs]
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "loss.png", out / "loss.csv"]
    table = plot_losses(runs, written[0], smooth)
    atomic_write_text(written[1], _csv(["run", "iter", "loss", "value", "smoothed"], table))
    if any(r.curve for r in runs):
        written += [out / "curve.png", out / "curve.csv"]
        table = plot_learning_curves(runs, written[2])
        atomic_write_text(written[3], _csv(["run", "iter", "metric", "value"], table))
    for r in runs:
        print(f"{r.path}: {r.kind} log, {len(r.losses)} loss rows ({', '.join(r.loss_names())}), "
              f"{len(r.curve)} learning-curve points")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet plot-log", description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path, metavar="LOG",
                    help="log.jsonl of gpsnet train or the log of caffe train (several: drawn together)")
    ap.add_argument("--out", type=Path, help="output folder (default: plots/ beside the first log)")
    ap.add_argument("--smooth", type=int, help="moving-average window in points (default: 1/50 of each log)")
    args = ap.parse_args(argv)
    if args.smooth is not None and args.smooth < 1:
        ap.error(f"--smooth {args.smooth}: a window of at least 1 point")
    out = args.out or args.logs[0].parent / "plots"
    try:
        written = plot(args.logs, out, args.smooth)
    except (LogError, OSError) as err:
        print(f"gpsnet plot-log: {err}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ablation table: ``gpsnet ablate [--variants ...] [--seeds 0 1] [--iters N] [--out DIR]``.

Trains every variant of the paper's Tables 2-3 (``loc``, ``ad_loc``, ``fuse``, ``ad_fuse``,
``det_par``, ``ins_glo``) on the same data with the same budget, seed and solver, evaluates each
on the same held-out split and writes the table (AP^p at 0.5..0.8, avg.AP, PCP0.5, mIoU, person
box recall) as ``ablation.md`` and ``ablation.json`` with a bar chart ``ablation.png``. The
baselines train as the paper builds them, two separately trained nets each (``gpsnet train``'s
stages), each net with the whole ``--iters`` budget.

Resumable: a (variant, seed) whose ``<out>/<variant>-s<seed>/eval/results.json`` exists is not
trained again, and an interrupted one resumes from its last snapshot (a baseline: its finished
stages kept, the interrupted stage resumed), so the same command run again continues where it
stopped. SIGINT (Ctrl-C) and SIGTERM stop a sweep without a traceback: a run in training snapshots
first; with ``--jobs N`` each running child gets the signal and the parent waits for them.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from gpsnet import pretrain, train
from gpsnet.nets.config import SETTINGS, add_set_arg
from gpsnet.nets.prototxt import snapshot_name
from gpsnet.nets.solver import CPU_SCHEDULE
from gpsnet.nets.variants import spec_of, table_order, variants
from gpsnet.threads import thread_env
from gpsnet.weights import file_sha1

ABLATION_SEEDS = (0, 1, 2)   # the paper's protocol here: three training seeds of every variant
COLUMNS: tuple[tuple[str, str], ...] = (("AP0.5", "0.5"), ("AP0.6", "0.6"), ("AP0.7", "0.7"),
                                        ("AP0.8", "0.8"))
CONTINUE = ("run the same gpsnet ablate command again to continue (finished runs are kept, an interrupted "
            "one resumes from its last snapshot)")
POLL_S = 0.5   # how often --jobs N looks at its children
# The paper's claims that the ablation tests (Tables 2-3): (better, worse) variants.
PAPER_CLAIMS: tuple[tuple[str, str], ...] = (("ad_loc", "loc"), ("ad_fuse", "fuse"), ("fuse", "loc"),
                                             ("ad_fuse", "ad_loc"), ("ad_fuse", "det_par"), ("ad_fuse", "ins_glo"))
CLAIM_METRICS: tuple[str, ...] = ("avg.AP", "AP0.5")   # the paper's summary, and its strictest shown threshold


class Interrupted(Exception):
    """SIGINT or SIGTERM outside a training step (which snapshots first: ``train.TrainingStopped``)."""

    def __init__(self, signum: int, what: str = "") -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}{what}; {CONTINUE}")
        self.rc = 128 + signum


@contextmanager
def signals_raise() -> Iterator[None]:
    """While inside: SIGINT / SIGTERM raise ``Interrupted`` (a training run inside installs its own
    handlers, ``train.stop_requests``, and brings these back when it ends)."""
    def stop(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    old = {sig: signal.signal(sig, stop) for sig in train.STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def resume_state(variant: str, run: Path, iters: int) -> Path | None:
    """The solverstate an interrupted single-net run in ``run`` continues from: its latest, when
    not past ``iters`` (a baseline's stages resume in ``train.train_stages``)."""
    if spec_of(variant).stages:
        return None
    state = train.latest_state(run / "snapshots", snapshot_name(variant, None))
    if state is None or int(state.stem.rsplit("_iter_", 1)[1]) > iters:
        return None
    return state


def run_one(variant: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train and evaluate one (variant, seed), or read its finished result."""
    from gpsnet import evaluate_net
    folder = args.out / f"{variant}-s{seed}"
    result_file = folder / "eval" / "results.json"
    if result_file.is_file():
        print(f"ablate: {variant} seed {seed}: done before ({result_file})", flush=True)
        return json.loads(result_file.read_text())
    t0 = time.time()
    state = resume_state(variant, folder / "run", args.iters)
    if state is not None:
        print(f"ablate: {variant} seed {seed}: resumes {state}", flush=True)
    starts = [*([str(pretrain.start_weights(args.pretrained, variant, args.setting, folder,
                                            overrides=args.overrides))] if args.pretrained and not state else []),
              *([args.weights] if args.weights and not state else [])]
    result = train.train(train.TrainOptions(
        variant=variant, setting=args.setting, data=root, iters=args.iters, out=folder / "run", seed=seed,
        display=100, resume=str(state) if state else None, weights=",".join(starts) or None,
        # a single net without a snapshot starts again; a baseline keeps its finished stages
        overwrite=state is None and not spec_of(variant).stages, overrides=args.overrides,
    ).with_schedule(train.schedule_of(args)))
    t_train = time.time() - t0
    rc = evaluate_net.run(evaluate_net.EvalOptions(
        variant=variant, setting=args.setting, weights=str(result["snapshot"]), data=root, split=args.split,
        out=folder / "eval", overlays=args.overlays, overrides=args.overrides))
    if rc != 0:
        raise RuntimeError(f"evaluation of {variant} seed {seed} failed")
    res = json.loads(result_file.read_text())
    res["train_seconds"] = round(t_train, 1)
    res["total_seconds"] = round(time.time() - t0, 1)
    result_file.write_text(json.dumps(res, indent=1) + "\n")
    return res


def run_parallel(jobs: list[tuple[str, int]], args: argparse.Namespace, root: Path, argv: list[str]) -> None:
    """Run the unfinished jobs ``args.jobs`` at a time, each as ``gpsnet ablate`` of one variant
    and seed in its own process (one BLAS thread, its own session); their logs go to
    ``<out>/<variant>-s<seed>.log``. SIGINT / SIGTERM are passed on to the running children (each
    snapshots and stops; a second signal stops them at once), no new one starts, and once they
    have ended ``Interrupted`` is raised."""
    import os
    todo = [(v, s) for v, s in jobs if not (args.out / f"{v}-s{s}" / "eval" / "results.json").is_file()]
    base = strip_options(argv, {"--variants", "--seeds", "--extra-seeds", "--jobs", "--data"})
    env = dict(os.environ, **thread_env(1))   # one core each (BLAS and the fork's threads)
    running: list[tuple[str, int, subprocess.Popen[bytes], IO[str]]] = []
    failed = []
    received: list[int] = []
    told: dict[int, int] = {}   # child pid -> signals passed on to it

    def note(signum: int, frame: Any) -> None:
        received.append(signum)

    old = {sig: signal.signal(sig, note) for sig in train.STOP_SIGNALS}
    try:
        while running or (todo and not received):
            while todo and not received and len(running) < args.jobs:
                v, s = todo.pop(0)
                log = (args.out / f"{v}-s{s}.log").open("a")   # a resumed run's log follows the earlier one
                cmd = [sys.executable, "-m", "gpsnet.cli", "ablate", *base, "--variants", v, "--seeds", str(s),
                       "--data", str(root), "--jobs", "1"]
                print(f"ablate: started {v} seed {s} (log {log.name})", flush=True)
                # its own session: a terminal's Ctrl-C reaches this process only, which passes it on once
                running.append((v, s, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                       start_new_session=True), log))
            for _, _, proc, _ in running:
                while told.get(proc.pid, 0) < len(received) and proc.poll() is None:
                    proc.send_signal(received[told.get(proc.pid, 0)])
                    told[proc.pid] = told.get(proc.pid, 0) + 1
            time.sleep(POLL_S)
            for item in list(running):
                v, s, proc, log = item
                if proc.poll() is not None:
                    log.close()
                    running.remove(item)
                    print(f"ablate: {v} seed {s} finished (rc {proc.returncode})", flush=True)
                    if proc.returncode and not received:
                        failed.append(f"{v} seed {s} (log {log.name})")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for _, _, proc, log in running:   # left only by an error of this process: no orphans
            proc.kill()
            proc.wait()
            log.close()
    if received:
        raise Interrupted(received[0], " (the runs in progress were stopped with it, each after a snapshot)")
    if failed:
        raise RuntimeError("failed: " + ", ".join(failed))


def strip_options(argv: list[str], names: set[str]) -> list[str]:
    """``argv`` without the options ``names`` and their values."""
    out, skip = [], False
    for a in argv:
        if a.startswith("--"):
            skip = a.split("=")[0] in names
            if not skip:
                out.append(a)
        elif not skip:
            out.append(a)
    return out


def _pct(v: Any) -> float:
    return float("nan") if v is None else 100.0 * float(v)


def summarise(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per variant: mean and (with several seeds) the spread of every column over the seeds."""
    out: dict[str, dict[str, Any]] = {}
    for variant, results in rows.items():
        cols: dict[str, list[float]] = {}
        for r in results:
            vals = {name: _pct(r["AP"][t]) for name, t in COLUMNS}
            vals.update({"avg.AP": _pct(r["avg_AP"]), "PCP0.5": _pct(r.get("PCP")),
                         "mIoU": _pct(r.get("mIoU")), "box recall": _pct(r.get("box_recall"))})
            for k, v in vals.items():
                cols.setdefault(k, []).append(v)
        out[variant] = {"seeds": len(results),
                        "mean": {k: float(np.mean(v)) for k, v in cols.items()},
                        "min": {k: float(np.min(v)) for k, v in cols.items()},
                        "max": {k: float(np.max(v)) for k, v in cols.items()},
                        "train_seconds": [r.get("train_seconds") for r in results]}
    return out


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    keys = [c for c, _ in COLUMNS] + ["avg.AP", "PCP0.5", "mIoU", "box recall"]
    lines = ["| Methods | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for variant in [v for v in table_order() if v in summary]:
        s = summary[variant]
        cells = []
        for k in keys:
            m = s["mean"][k]
            cell = "-" if np.isnan(m) else f"{m:.2f}"
            if s["seeds"] > 1 and not np.isnan(m):
                cell += f" ({s['min'][k]:.2f}-{s['max'][k]:.2f})"
            cells.append(cell)
        lines.append(f"| {spec_of(variant).label} | {s['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(better: dict[str, Any], worse: dict[str, Any], metric: str) -> str:
    """Whether ``better`` beats ``worse`` on ``metric``: beyond the spread of the seeds (every seed of
    one above every seed of the other), in the mean only (the seed ranges overlap), or not."""
    mean_b, mean_w = better["mean"][metric], worse["mean"][metric]
    if np.isnan(mean_b) or np.isnan(mean_w):
        return "not measured"
    if mean_b <= mean_w:
        return "does not hold"
    if better["seeds"] < 2 or worse["seeds"] < 2:
        return "holds in the mean (one seed: no spread)"
    if better["min"][metric] > worse["max"][metric]:
        return "holds beyond the seeds' spread"
    return "holds in the mean only (the seed ranges overlap)"


def claims(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every claim of ``PAPER_CLAIMS`` whose two variants were run, on every ``CLAIM_METRICS``."""
    out = []
    for better, worse in PAPER_CLAIMS:
        if better not in summary or worse not in summary:
            continue
        for metric in CLAIM_METRICS:
            out.append({"claim": f"{spec_of(better).label} > {spec_of(worse).label}", "better": better,
                        "worse": worse, "metric": metric, "mean_better": summary[better]["mean"][metric],
                        "mean_worse": summary[worse]["mean"][metric],
                        "verdict": verdict(summary[better], summary[worse], metric)})
    return out


def claims_markdown(checked: list[dict[str, Any]]) -> str:
    """The claims as a table (empty when no claim's two variants were run)."""
    if not checked:
        return ""
    lines = ["| the paper's claim | metric | ours (mean over the seeds) | at this budget |", "|---|---|---|---|"]
    for c in checked:
        lines.append(f"| {c['claim']} | {c['metric']} | {c['mean_better']:.2f} vs {c['mean_worse']:.2f} "
                     f"| {c['verdict']} |")
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict[str, dict[str, Any]], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [v for v in table_order() if v in summary]
    keys = [c for c, _ in COLUMNS] + ["avg.AP"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(shown))
    for i, v in enumerate(shown):
        s = summary[v]
        means = [s["mean"][k] for k in keys]
        err = None
        if s["seeds"] > 1:
            err = [[m - s["min"][k] for m, k in zip(means, keys)], [s["max"][k] - m for m, k in zip(means, keys)]]
        ax.bar(np.arange(len(keys)) + (i - (len(shown) - 1) / 2) * width, np.nan_to_num(means), width,
               yerr=err, capsize=2, label=spec_of(v).label)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylabel("%")
    ax.set_title("ablation (synthetic test split); bars: seed range")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def sweep(args: argparse.Namespace, argv: list[str]) -> tuple[list[tuple[str, int]], dict[str, list[dict[str, Any]]],
                                                            float]:
    """Every (variant, seed) of the command line, trained (or read) in turn, the table rewritten
    after each; returns the jobs, their results by variant and the start time."""
    from gpsnet.nets.config import override, setting
    override(setting(args.setting), args.overrides)   # a bad --set fails before any run
    root = train.ensure_synthetic(args.data, setting(args.setting).size - 1, args.num, args.data_seed)
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    for item in args.extra_seeds:
        v, _, s = item.partition(":")
        if v not in variants() or not s.isdigit():
            raise ValueError(f"--extra-seeds {item!r}: expected VARIANT:SEED")
        jobs.append((v, int(s)))
    twice = sorted({job for job in jobs if jobs.count(job) > 1})
    if twice:   # one run counted twice would show a seed range made from one run
        raise ValueError(f"{', '.join(f'{v} seed {s}' for v, s in twice)} asked for twice "
                         "(--variants, --seeds, --extra-seeds): each (variant, seed) runs once")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {}
    t0 = time.time()
    if args.jobs > 1:
        run_parallel(jobs, args, root, argv)
    for k, (variant, seed) in enumerate(jobs, start=1):
        print(f"ablate: [{k}/{len(jobs)}] {variant} seed {seed}", flush=True)
        rows.setdefault(variant, []).append(run_one(variant, seed, args, root))
        summary = summarise(rows)
        checked = claims(summary)
        (args.out / "ablation.md").write_text(markdown(summary) + ("\n" + claims_markdown(checked) if checked else ""))
        (args.out / "ablation.json").write_text(json.dumps(
            {"setting": args.setting, "iters": args.iters, "lr": args.lr, "solver": args.solver,
             "lr_policy": args.lr_policy, "set": args.overrides or [], "seeds": sorted({s for _, s in jobs}),
             "pretrained": {"model": str(args.pretrained), "sha1": file_sha1(args.pretrained)}
             if args.pretrained else None,
             "data": str(root), "split": args.split, "summary": summary, "claims": checked}, indent=1) + "\n")
        bar_chart(summary, args.out / "ablation.png")
    return jobs, rows, t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet ablate", description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", choices=variants(), default=list(table_order()))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(ABLATION_SEEDS),
                    help=f"training seeds (default {' '.join(map(str, ABLATION_SEEDS))})")
    ap.add_argument("--extra-seeds", nargs="*", default=[], metavar="VARIANT:SEED",
                    help="more seeds for some variants only, e.g. ad_fuse:1 fuse:1")
    ap.add_argument("--setting", choices=SETTINGS, default="small")
    ap.add_argument("--iters", type=int, default=1400, help="training iterations of every variant")
    train.add_schedule_args(ap, CPU_SCHEDULE, "the CPU schedule")
    start = ap.add_mutually_exclusive_group()
    start.add_argument("--pretrained", type=Path,
                       help="the DeepLab-v2 start every variant is mapped from by init-weights (default: the "
                            "committed models/deeplab_<setting>/ where it exists, as the paper's protocol)")
    start.add_argument("--from-scratch", action="store_true", help="every variant from random init")
    ap.add_argument("--weights", help="a .caffemodel copied by layer name into every variant (after --pretrained)")
    ap.add_argument("--data", type=Path, help="data root (default: the demo's synthetic set)")
    ap.add_argument("--num", type=int, default=600, help="synthetic images when --data is not given")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set")
    ap.add_argument("--split", default="test")
    ap.add_argument("--overlays", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("out/ablation"))
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at the same time, each in its own process with one BLAS thread "
                         "(2 on a 2-core machine roughly doubles the throughput)")
    add_set_arg(ap)
    args = ap.parse_args(argv)
    if args.from_scratch:
        args.pretrained = None
    elif args.pretrained is None and pretrain.committed_model(args.setting).is_file():
        args.pretrained = pretrain.committed_model(args.setting)
    if args.pretrained is not None and not args.pretrained.is_file():
        ap.error(f"--pretrained {args.pretrained}: no such model")
    try:
        with signals_raise():
            jobs, rows, t0 = sweep(args, argv if argv is not None else sys.argv[1:])
    except train.TrainingStopped as err:   # finished (variant, seed) runs stay: a rerun resumes
        print(f"gpsnet ablate: {err.args[0]}" + (f"; log {err.log}; {CONTINUE}" if err.state else ""),
              file=sys.stderr)
        return err.rc
    except Interrupted as err:
        print(f"gpsnet ablate: {err}", file=sys.stderr)
        return err.rc
    except (OSError, ValueError, RuntimeError) as err:
        print(f"gpsnet ablate: {err}", file=sys.stderr)
        return 1
    summary = summarise(rows)
    print(markdown(summary))
    checked = claims(summary)
    if checked:
        print(claims_markdown(checked))
    print(f"ablate: {len(jobs)} run(s) in {time.time() - t0:.0f}s; table {args.out / 'ablation.md'}, "
          f"chart {args.out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The overfit check (docs/nets.md "The overfit check"; ``tests/test_learning.py`` asserts on it):
variants of the small setting trained at the same time (``threads`` each), on a few generated images
without augmentation, with the ground-truth faces, then ``gpsnet eval`` on those same images.

``python -m gpsnet.experiments.overfit --iters 300,500 [--start pretrained|scratch] [--out DIR]``
runs it for each iteration count and prints one row per variant and count (AP^p at 0.5, avg.AP,
box recall, wall seconds): the sweep behind the test's ``OVERFIT.iters`` (docs/learning.md, section 2).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpsnet.threads import thread_env

SETTING = "small"


@dataclass(frozen=True)
class Overfit:
    """One overfit run: which variants, how many images (of which generator seed), how many
    iterations, from the committed pretrained start or from random init."""
    variants: tuple[str, ...] = ("ad_fuse", "loc")
    images: int = 4
    data_seed: int = 5
    iters: int = 500
    pretrained: bool = True
    overrides: tuple[str, ...] = ("train_faces=gt",)   # --set items of the training runs
    threads: int = 1                                    # threads of each training process


def _gpsnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpsnet.cli", *args]


def make_data(root: Path, run: Overfit) -> Path:
    """The images, every one of them in the train, val and test splits."""
    from gpsnet.data.layout import write_split
    from gpsnet.data.synthetic import generate_dataset
    from gpsnet.nets.config import setting
    if not (root / "lists" / "train.txt").is_file():
        splits = generate_dataset(root, run.images, size=setting(SETTING).size - 1, seed=run.data_seed)
        ids = sorted(i for lst in splits.values() for i in lst)
        for split in ("train", "val", "test"):
            write_split(root, split, ids)
    return root


class OverfitJob:
    """The training processes of one overfit run, started by ``start`` and running while the caller
    goes on; ``results`` waits for them and evaluates, ``stop`` ends them (a caller that gives up)."""

    def __init__(self, work: Path, run: Overfit) -> None:
        from gpsnet import pretrain
        from gpsnet.nets.solver import CPU_SCHEDULE
        self.work, self.run = work, run
        self.root = make_data(work / "data", run)
        self.env = dict(os.environ, **thread_env(run.threads), GLOG_minloglevel="2")
        sets = [a for o in run.overrides for a in ("--set", o)]
        starts = {v: ["--weights", str(pretrain.start_weights(pretrain.committed_model(SETTING), v, SETTING, work,
                                                              overrides=list(run.overrides)))]
                  if run.pretrained else [] for v in run.variants}
        self.t0 = time.time()
        self.procs = {v: subprocess.Popen(
            _gpsnet("train", "--variant", v, "--setting", SETTING, "--data", str(self.root), "--iters", str(run.iters),
                    *CPU_SCHEDULE.argv(), "--no-augment", *sets, *starts[v], "--out", str(work / v),
                    "--display", "100", "--overwrite"),
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for v in run.variants}

    def results(self) -> dict[str, dict[str, Any]]:
        """Waits for the training, then ``gpsnet eval`` of each variant on its training images: variant ->
        its results.json, plus "log" (the ends of the training and evaluation output) and "wall_s" (from
        the start). An AssertionError with the output where a step fails."""
        results: dict[str, dict[str, Any]] = {}
        for v, proc in self.procs.items():
            out, _ = proc.communicate()
            assert proc.returncode == 0, f"training {v} failed:\n{out[-3000:]}"
            snaps = sorted((self.work / v / "snapshots").glob("*.caffemodel"))
            assert snaps, out[-2000:]
            ev = subprocess.run(_gpsnet("eval", "--variant", v, "--setting", SETTING, "--weights", str(snaps[-1]),
                                        "--data", str(self.root), "--split", "train",
                                        "--out", str(self.work / f"{v}-eval")),
                                env=self.env, capture_output=True, text=True)
            assert ev.returncode == 0, ev.stdout + ev.stderr
            results[v] = json.loads((self.work / f"{v}-eval" / "results.json").read_text())
            results[v]["log"] = out[-1500:] + ev.stdout[-1500:]
        for r in results.values():
            r["wall_s"] = round(time.time() - self.t0, 1)
        return results

    def stop(self) -> None:
        """Ends the training processes that still run (no results afterwards); safe to call again, and
        after `results` (finished or interrupted)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def start(work: Path, run: Overfit) -> OverfitJob:
    """Starts training ``run.variants`` in ``work`` (one process each, ``run.threads`` threads each) and
    returns at once."""
    return OverfitJob(work, run)


def overfit(work: Path, run: Overfit) -> dict[str, dict[str, Any]]:
    """Train ``run.variants`` in ``work`` and evaluate each on its training images (``OverfitJob.results``)."""
    return start(work, run).results()


def main(argv: list[str] | None = None) -> int:
    d = Overfit()
    ap = argparse.ArgumentParser(prog="python -m gpsnet.experiments.overfit", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", default=str(d.iters), help="iteration counts, comma-separated (default %(default)s)")
    ap.add_argument("--start", choices=("pretrained", "scratch"), default="pretrained")
    ap.add_argument("--variants", default=",".join(d.variants))
    ap.add_argument("--images", type=int, default=d.images)
    ap.add_argument("--threads", type=int, default=d.threads, help="threads of each training process")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    counts = [int(n) for n in args.iters.split(",")]
    with tempfile.TemporaryDirectory(prefix="gpsnet-overfit-") as tmp:
        base = args.out or Path(tmp)
        print("variant  start       iters  AP0.5  avg.AP  box recall  wall s", flush=True)
        for n in counts:
            run = Overfit(variants=tuple(args.variants.split(",")), images=args.images, iters=n,
                          pretrained=args.start == "pretrained", threads=args.threads)
            for v, r in overfit(base / f"{args.start}-{n}", run).items():
                print(f"{v:8s} {args.start:10s} {n:6d} {100 * r['AP']['0.5']:6.1f} {100 * r['avg_AP']:7.1f} "
                      f"{100 * r['box_recall']:11.1f} {r['wall_s']:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

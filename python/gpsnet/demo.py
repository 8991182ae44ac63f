"""The demo: ``gpsnet demo [--iters N]``: GPSNet end to end on the CPU in about 15 minutes.

1. writes a small synthetic GPS-layout data set (128-px images) into the cache,
2. trains Ad. Fuse (GPSNet) in the small setting (prototxt/small/ad_fuse) for ``--iters``,
3. runs inference on the test split, prints the paper's table and writes overlays,
all under ``--out`` (default out/demo): run/ (log.jsonl, loss.png, snapshots), eval/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from gpsnet.nets.builder import VARIANTS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet demo", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2500, help="training iterations (default 2500)")
    ap.add_argument("--num", type=int, default=150, help="synthetic images (default 150, split 3:1:1)")
    ap.add_argument("--variant", choices=VARIANTS, default="ad_fuse")
    ap.add_argument("--solver", choices=("SGD", "Adam"), default="Adam",
                    help="default Adam: a short run from random init learns faster with it than with "
                         "the paper's SGD (which needs lr 0.003 here; 0.01 diverges)")
    ap.add_argument("--lr", type=float, default=0.001, help="base lr (default 0.001)")
    ap.add_argument("--data", type=Path, help="use this data set instead of the synthetic one")
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--overlays", type=int, default=12, help="overlays of the first N test images")
    ap.add_argument("--eval-limit", type=int, default=0, help="evaluate at most N test images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from gpsnet import evaluate_net, train
    t0 = time.time()
    root = train.ensure_synthetic(args.data, 128, args.num, args.seed)
    t_data = time.time() - t0
    result = train.train(train.parse_args([
        "--variant", args.variant, "--small", "--data", str(root), "--iters", str(args.iters),
        "--lr", str(args.lr), "--solver", args.solver, "--out", str(args.out / "run"), "--seed", str(args.seed),
        "--display", "20"]))
    t_train = time.time() - t0 - t_data
    ev = ["--variant", args.variant, "--small", "--weights", str(result["snapshot"]), "--data", str(root),
          "--split", "test", "--out", str(args.out / "eval"), "--overlays", str(args.overlays)]
    if args.eval_limit:
        ev += ["--limit", str(args.eval_limit)]
    rc = evaluate_net.main(ev)
    total = time.time() - t0
    print(f"demo: data {t_data:.0f}s, training {t_train:.0f}s ({args.iters} iterations), "
          f"evaluation {total - t_data - t_train:.0f}s, total {total / 60:.1f} min")
    print(f"demo: loss curve {result['out'] / 'loss.png'}, overlays {args.out / 'eval' / 'overlays'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

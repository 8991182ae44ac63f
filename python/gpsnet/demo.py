"""The demo: ``gpsnet demo``: GPSNet learns to parse on the CPU in 11 to 15 minutes (2 cores).

1. writes a synthetic GPS-layout data set at the small setting's image size into the cache,
2. fine-tunes Ad. Fuse (GPSNet) in the small setting (prototxt/small/ad_fuse) from the committed
   pretrained DeepLab-v2 start (models/deeplab_small, mapped by ``init-weights``, as the paper starts
   from its DeepLab model; ``--from-scratch``: random init) with a learning curve
   (AP^p at 0.5 and avg.AP on val images every ``--eval-every`` iterations),
3. parses the held-out test split, prints the paper's table, draws overlays,
all under ``--out`` (default out/demo): run/ (log.jsonl, loss.png, curve.json, curve.png,
snapshots), eval/ (predictions, overlays, results.json).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpsnet import pretrain, train
from gpsnet.data.layout import image_limit
from gpsnet.nets.config import NetConfig
from gpsnet.nets.prototxt import REPO_ROOT
from gpsnet.nets.solver import CPU_SCHEDULE
from gpsnet.nets.variants import variants

# The demo's schedule (docs/nets.md, "The demo"): measured on the 2-core CPU machines. Its length
# spends the demo's budget, 15 minutes on 2 cores: 3000 steps took 11.1 min on an AMD EPYC (the
# 1600 of the committed small solvers, CPU_MAX_ITER: 6.4 min), and take about 14.5 on the Xeon.
DEMO_NUM_IMAGES = 600
DEMO_ITERS = 3000
DEMO_EVAL_EVERY = 400
DEMO_EVAL_LIMIT = 40
SETTING = "small"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet demo", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=DEMO_ITERS, help=f"training iterations (default {DEMO_ITERS})")
    ap.add_argument("--num", type=int, default=DEMO_NUM_IMAGES,
                    help=f"synthetic images (default {DEMO_NUM_IMAGES}, split 3:1:1)")
    ap.add_argument("--variant", choices=variants(), default="ad_fuse")
    train.add_schedule_args(ap, CPU_SCHEDULE, "a short run from random init learns faster with it "
                                               "than with the paper's SGD")
    ap.add_argument("--data", type=Path, help="use this data set instead of the synthetic one")
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--eval-every", type=int, default=DEMO_EVAL_EVERY,
                    help=f"learning-curve period in iterations (default {DEMO_EVAL_EVERY}; 0: off)")
    ap.add_argument("--eval-limit", type=image_limit, default=DEMO_EVAL_LIMIT,
                    help=f"val images of each learning-curve point (default {DEMO_EVAL_LIMIT})")
    ap.add_argument("--overlays", type=int, default=12, help="overlays of the first N test images")
    ap.add_argument("--eval-limit-test", type=image_limit, default=0, help="evaluate at most N test images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpu", type=int, help="GPU id for training and evaluation (default: CPU; docs/gpu.md)")
    start = ap.add_mutually_exclusive_group()
    start.add_argument("--pretrained", type=Path, default=pretrain.committed_model(SETTING),
                       help="the DeepLab-v2 start to fine-tune from (default: the committed "
                            f"{pretrain.committed_model(SETTING).relative_to(REPO_ROOT)}; gpsnet pretrain makes one)")
    start.add_argument("--from-scratch", action="store_true", help="train from random init instead")
    args = ap.parse_args(argv)
    if not args.from_scratch and not args.pretrained.is_file():
        ap.error(f"--pretrained {args.pretrained}: no such model (make one with `gpsnet pretrain`, or pass "
                 "--from-scratch)")
    from gpsnet import evaluate_net
    cfg = NetConfig.small()
    t0 = time.time()
    try:
        root = train.ensure_synthetic(args.data, cfg.size - 1, args.num, args.seed)
        t_data = time.time() - t0
        weights = None if args.from_scratch else pretrain.start_weights(args.pretrained, args.variant, SETTING,
                                                                         args.out)
        result = train.train(train.TrainOptions(
            variant=args.variant, small=True, data=root, iters=args.iters, out=args.out / "run", seed=args.seed,
            display=50, eval_every=args.eval_every, eval_limit=args.eval_limit, overwrite=True,
            weights=str(weights) if weights else None, gpu=args.gpu).with_schedule(train.schedule_of(args)))
    except train.TrainingStopped as err:   # a signal, a non-finite loss, a data error: said, snapshot kept
        print(f"gpsnet demo: {err}", file=sys.stderr)
        return err.rc
    except (OSError, ValueError) as err:   # as `gpsnet train`: a bad --gpu or --data, a full disk (named)
        print(f"gpsnet demo: {err}", file=sys.stderr)
        return 1
    t_train = time.time() - t0 - t_data
    rc = evaluate_net.run(evaluate_net.EvalOptions(
        variant=args.variant, small=True, weights=str(result["snapshot"]), data=root, split="test",
        out=args.out / "eval", overlays=args.overlays, gpu=args.gpu, limit=args.eval_limit_test))
    total = time.time() - t0
    print(f"demo: data {t_data:.0f}s, training {t_train:.0f}s ({args.iters} iterations, learning curve "
          f"included), evaluation {total - t_data - t_train:.0f}s, total {total / 60:.1f} min")
    print(f"demo: loss curve {result['out'] / 'loss.png'}, learning curve {result['out'] / 'curve.png'}, "
          f"overlays {args.out / 'eval' / 'overlays'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

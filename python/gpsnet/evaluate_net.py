"""Net evaluation: ``gpsnet eval --variant V --weights W --data ROOT [--split test]``.

Runs inference over a split (predictions into ``--out``) and prints the paper's table
(AP^p at 0.5..0.8, avg.AP, PCP, global mIoU) with ``gpsnet.eval``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpsnet.infer import add_common_args, iter_images, make_predictor, run

LABELS = {"ad_fuse": "Ad. Fuse (GPSNet)", "fuse": "Fuse", "ad_loc": "Ad. Loc.", "loc": "Loc.",
          "det_par": "Det.+Par.", "ins_glo": "Ins.+Glo."}


def evaluate(args: argparse.Namespace) -> dict:
    from gpsnet.eval import evaluate_folder, format_table
    predictor = make_predictor(args)
    pred_dir = args.out / "predictions"
    n = run(predictor, iter_images(args), pred_dir,
            args.out / "overlays" if args.overlays else None, max_overlays=args.overlays)
    results = evaluate_folder(pred_dir, args.data, args.split)
    print(f"{n} image(s) of {args.data} ({args.split})")
    print(format_table({LABELS.get(args.variant, args.variant): results}))
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet eval", description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--data", type=Path, required=True, help="GPS-layout data root")
    ap.add_argument("--split", default="test")
    ap.add_argument("--image", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("out/eval"))
    ap.add_argument("--overlays", type=int, default=0, help="also draw the first N images")
    args = ap.parse_args(argv)
    try:
        evaluate(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"gpsnet eval: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

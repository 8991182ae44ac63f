"""`gpsnet evaluate-predictions` (alias `gpsnet evaluate`): score predictions folders against a GPS-layout
data set (`gpsnet eval` runs a trained net and scores it in one go).

    gpsnet evaluate-predictions --data ROOT --split val PRED_DIR [PRED_DIR ...] [--names A B ...]
                    [--json out.json] [--plot pr.png] [--classes]
    gpsnet evaluate-predictions --data ROOT --split val --gt-as-predictions OUT [--overwrite] [PRED_DIR ...]

Prints the paper's table (AP^p at 0.5 .. 0.8 and avg.AP in %, plus PCP at 0.5 and the global
parser's mIoU), one row per folder. docs/evaluation.md defines the metrics and the folder format.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from gpsnet.data.layout import GPSDataError
from gpsnet.data.outputs import OVERWRITE_FLAG, write_file
from gpsnet.eval.evaluate import (OutputFileError, check_output_file, evaluate_folders, format_class_table,
                                  format_table, json_ready, plot_curves, plot_formats, write_gt_as_predictions)
from gpsnet.eval.metrics import EvalInputError
from gpsnet.eval.predictions import PredictionsError

PROG = "gpsnet evaluate-predictions"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pred_dirs", nargs="*", metavar="PRED_DIR", help="predictions folders")
    ap.add_argument("--data", required=True, help="root of the GPS-layout data set")
    ap.add_argument("--split", default="val", help="split list to evaluate (default val)")
    ap.add_argument("--names", nargs="+", help="one table name per folder (default: folder names)")
    ap.add_argument("--json", help="write the results (fractions, not %%) to this JSON file")
    ap.add_argument("--curves-in-json", action="store_true",
                    help="include the precision/recall curves in the JSON")
    ap.add_argument("--plot", help="write precision/recall curves at 0.5 .. 0.8 to this PNG")
    ap.add_argument("--classes", action="store_true", help="also print the per-class IoU table")
    ap.add_argument("--gt-as-predictions", metavar="OUT",
                    help="write the split's ground truth as a predictions folder OUT and evaluate it too "
                         "(a new or empty folder outside the data root)")
    ap.add_argument(OVERWRITE_FLAG, action="store_true",
                    help="let --gt-as-predictions replace an existing predictions folder OUT")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dirs = list(args.pred_dirs)
    names = list(args.names) if args.names else [Path(d).name or str(d) for d in dirs]
    if args.names and len(args.names) != len(dirs):
        print(f"{PROG}: {len(args.names)} --names for {len(dirs)} folders", file=sys.stderr)
        return 2
    try:
        if args.json:
            check_output_file(args.json, "--json")
        if args.plot:
            check_output_file(args.plot, "--plot", plot_formats())
        if args.gt_as_predictions:
            write_gt_as_predictions(args.data, args.split, args.gt_as_predictions, progress=not args.quiet,
                                    overwrite=args.overwrite, keep_apart=dirs)
            dirs.append(args.gt_as_predictions)
            names.append("ground truth")
        if not dirs:
            print(f"{PROG}: no predictions folder given", file=sys.stderr)
            return 2
        if len(set(names)) != len(names):
            names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = evaluate_folders(dirs, args.data, args.split, progress=not args.quiet)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except (GPSDataError, PredictionsError, EvalInputError, OutputFileError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    table = dict(zip(names, results))
    print(f"AP^p on {args.data} ({args.split}), in %:")
    print(format_table(table))
    if args.classes:
        print()
        print("Global parsing IoU per class, in %:")
        print(format_class_table(table))
    for name, res in table.items():
        notes = []
        if res["missing_images"]:
            notes.append(f"{res['missing_images']} images without predictions (counted as none found)")
        if res["extra_images"]:
            notes.append(f"{res['extra_images']} results for images outside {args.split} (ignored)")
        if notes:
            print(f"note: {name}: " + "; ".join(notes))
    try:
        if args.json:
            payload = {name: json_ready(res, curves=args.curves_in_json) for name, res in table.items()}
            write_file(args.json, json.dumps(payload, indent=2) + "\n", OutputFileError)
            print(f"wrote {args.json}")
        if args.plot:
            plot_curves(table, args.plot)
            print(f"wrote {args.plot}")
    except OutputFileError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

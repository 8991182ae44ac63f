"""Regenerates the figures of ``docs/img`` from a trained model: ``scripts/docs_figures``.

    scripts/docs_figures --weights W --data ROOT [--variant ad_fuse] [--setting small] [--split test]
                         [--image-id ID] [--run RUN_FOLDER] [--prefix demo] [--out docs/img]

writes ``<out>/<prefix>_overlay.png``: the one figure (``gpsnet.viz``) of the image ``--image-id``
(default: the first of the split) parsed by the model, with its ground truth; with ``--run`` (the
model's run folder) ``<prefix>_loss.png`` and ``<prefix>_curve.png`` (``gpsnet.plotlog``, from its
``log.jsonl`` and ``curve.json``); and, with ``--nets``, the drawings of GPSNet's test and train nets
(``gpsnet.drawnet``: ``nets_ad_fuse_test.svg``, ``nets_ad_fuse_train.svg``). The demo's figures:
``scripts/docs_figures --weights out/demo/run/snapshots/ad_fuse_iter_1600.caffemodel --setting small
--data ~/.cache/gpsnet/synthetic-192px-600-s0 --run out/demo/run --prefix demo``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from gpsnet.nets.config import SETTINGS
from gpsnet.nets.variants import variants
from gpsnet.viz import MIN_SCORE

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DRAWN_NETS = {"nets_ad_fuse_test.svg": "prototxt/ad_fuse/test.prototxt",
              "nets_ad_fuse_train.svg": "prototxt/ad_fuse/train.prototxt"}


def overlay(args: argparse.Namespace, png: Path) -> None:
    import cv2
    from gpsnet.data.layout import GPSDataset
    from gpsnet.infer import PredictOptions, make_predictor
    from gpsnet.viz import figure
    dataset = GPSDataset(args.data, args.split)
    image_id = args.image_id or dataset.ids[0]
    if image_id not in dataset.ids:
        raise ValueError(f"--image-id {image_id}: not in the {args.split} split of {args.data}")
    predictor = make_predictor(PredictOptions(weights=args.weights, variant=args.variant, setting=args.setting))
    sample = dataset.load(image_id)
    if not cv2.imwrite(str(png), figure(sample.image, predictor.predict(sample.image), sample, args.min_score)):
        raise OSError(f"cannot write {png}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet docs-figures", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="the trained model (.caffemodel) of the overlay")
    ap.add_argument("--data", type=Path, help="its GPS-layout data root")
    ap.add_argument("--variant", choices=variants(), default="ad_fuse")
    ap.add_argument("--setting", choices=SETTINGS, default="small")
    ap.add_argument("--split", default="test")
    ap.add_argument("--image-id", help="the image of the overlay (default: the split's first)")
    ap.add_argument("--min-score", type=float, default=MIN_SCORE,
                    help=f"persons drawn: those scoring at least this (default {MIN_SCORE:g})")
    ap.add_argument("--run", type=Path, help="the model's run folder (log.jsonl, curve.json): loss and curve")
    ap.add_argument("--prefix", default="demo", help="file name prefix (demo, gpu_small, ...)")
    ap.add_argument("--nets", action="store_true", help="also draw GPSNet's test and train nets")
    ap.add_argument("--out", type=Path, default=DOCS_IMG)
    args = ap.parse_args(argv)
    if bool(args.weights) != bool(args.data):
        ap.error("--weights and --data go together (the overlay)")
    from gpsnet import drawnet, plotlog
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        if args.weights:
            written.append(args.out / f"{args.prefix}_overlay.png")
            overlay(args, written[-1])
        if args.run:
            with tempfile.TemporaryDirectory() as tmp:
                made = plotlog.plot([args.run / "log.jsonl"], Path(tmp))
                for name in ("loss.png", "curve.png"):
                    if Path(tmp) / name in made:
                        written.append(args.out / f"{args.prefix}_{name}")
                        shutil.copyfile(Path(tmp) / name, written[-1])
        if args.nets:
            for name, net in DRAWN_NETS.items():
                written.append(drawnet.draw(drawnet.ROOT / net, args.out / name))
    except (OSError, ValueError, plotlog.LogError, drawnet.DrawError) as err:
        print(f"gpsnet docs-figures: {err}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

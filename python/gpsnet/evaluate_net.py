"""Net evaluation: ``gpsnet eval --variant V --weights W --data ROOT [--split test]``.

Runs inference over a split (predictions into ``--out``) and prints the paper's table
(AP^p at 0.5..0.8, avg.AP, PCP, global mIoU) with ``gpsnet.eval``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Iterator

import numpy as np

from gpsnet.infer import PredictOptions, Predictor, add_common_args, make_predictor
from gpsnet.nets.variants import spec_of



def box_recall(pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5) -> tuple[int, int]:
    """(ground-truth boxes with a predicted box of IoU >= ``iou``, ground-truth boxes)."""
    from gpsnet.detection.boxes import bbox_overlaps
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    pred = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    if gt.shape[0] == 0 or pred.shape[0] == 0:
        return 0, int(gt.shape[0])
    return int((bbox_overlaps(gt, pred).max(axis=1) >= iou).sum()), int(gt.shape[0])


ORACLES: tuple[str, ...] = ("boxes", "faces")


def parse_split(predictor: Predictor, dataset: Any, ids: list[str], oracle: tuple[str, ...] = ()
                ) -> Iterator[tuple[str, Any, Any, tuple[int, int]]]:
    """Parse the images ``ids`` of ``dataset`` (a GPSDataset): yields (image id, sample,
    prediction, (persons found at IoU 0.5, persons)). ``oracle``: "boxes" replaces the detected
    persons by the ground-truth boxes, "faces" the detected faces by the ground-truth faces."""
    for image_id in ids:
        sample = dataset.load(image_id)
        nonempty = sample.person_labels.reshape(sample.num_persons, -1).any(axis=1)
        pred = predictor.predict(
            sample.image,
            person_boxes=sample.person_boxes[nonempty] if "boxes" in oracle else None,
            face_boxes=sample.face_boxes[sample.has_face] if "faces" in oracle else None)
        yield image_id, sample, pred, box_recall(pred.boxes, sample.person_boxes[nonempty])


def evaluate_predictor(predictor: Predictor, data_root: str | Path, split: str = "val",
                       limit: int = 0, oracle: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse the images of a split with ``predictor`` and evaluate in memory (nothing written).

    The result has the keys of ``gpsnet.eval.evaluate_folder`` (without curves) and
    ``box_recall``: the share of ground-truth persons with a detected box of IoU >= 0.5.
    ``oracle``: see :func:`parse_split`."""
    from gpsnet.data.layout import GPSDataset, first_images
    from gpsnet.eval.metrics import GlobalAccumulator, InstanceAccumulator
    dataset = GPSDataset(data_root, split)
    ids = first_images(dataset.ids, limit)
    inst, glob = InstanceAccumulator(), GlobalAccumulator()
    hit = total = 0
    for _, sample, pred, (h, t) in parse_split(predictor, dataset, ids, oracle):
        shape = sample.image.shape[:2]
        masks = np.stack(pred.masks) if pred.masks else np.zeros((0,) + shape, np.uint8)
        inst.add(pred.scores, masks, sample.person_labels)
        if pred.global_seg is not None:
            glob.add(pred.global_seg, sample.global_label)
        hit, total = hit + h, total + t
    res: dict[str, Any] = {"data": str(data_root), "split": split}
    res.update(inst.summary())
    res["mIoU"] = glob.summary()["mIoU"] if glob.num_images else None
    res["box_recall"] = hit / total if total else float("nan")
    return res


@dataclass
class EvalOptions(PredictOptions):
    """What `gpsnet eval` takes beyond the predictor's options (``evaluate(EvalOptions(...))``)."""
    data: Path | None = None            # GPS-layout data root (required)
    split: str = "test"
    out: Path = Path("out/eval")
    overlays: int = 0                   # also draw the first N images
    oracle: list[str] | None = None     # "boxes" and/or "faces": ground truth replaces the detector's


def run(opts: EvalOptions) -> int:
    """``evaluate`` with its errors as a message and exit code 1 (the command's behaviour)."""
    try:
        evaluate(opts)
    except (OSError, ValueError) as err:   # missing or bad files (named), a failed write (WriteFailed)
        print(f"gpsnet eval: {err}", file=sys.stderr)
        return 1
    return 0


def evaluate(args: EvalOptions) -> dict:
    """Parse the split with the real inference path, write ``<out>/predictions`` (the evaluation
    format), overlays of the first ``--overlays`` images and ``results.json``; evaluate the
    predictions folder with ``gpsnet.eval`` and print the paper's table."""
    if args.data is None or args.weights is None:
        raise ValueError("evaluation needs the data root and the weights")
    from gpsnet.data.layout import GPSDataset, first_images
    from gpsnet.eval import evaluate_folders, format_table
    from gpsnet.eval.evaluate import Progress, json_ready
    from gpsnet.eval.predictions import PredictionWriter
    from gpsnet.viz import figure, write_figure
    predictor = make_predictor(args)
    oracle = tuple(args.oracle or ())
    dataset = GPSDataset(args.data, args.split)
    ids = first_images(dataset.ids, args.limit)
    pred_dir = args.out / "predictions"
    overlay_dir = args.out / "overlays"
    if args.overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    hit = total = 0
    bar = Progress(len(ids), f"parsing {args.split}")
    with PredictionWriter(pred_dir, replace=True) as writer:
        for k, (image_id, sample, pred, (h, t)) in enumerate(parse_split(predictor, dataset, ids, oracle)):
            writer.add(image_id, pred.scores, pred.masks, pred.global_seg)
            hit, total = hit + h, total + t
            if k < args.overlays:
                write_figure(overlay_dir / f"{image_id}.png", figure(sample.image, pred, sample))
            bar.update()
    bar.close()
    results = evaluate_folders([pred_dir], args.data, args.split, ids=ids)[0]
    results["box_recall"] = hit / total if total else float("nan")
    results["oracle"] = list(oracle)
    results["flip"] = predictor.flip
    results["scales"] = list(predictor.scales)
    label = spec_of(args.variant).label + (f" (oracle {'+'.join(oracle)})" if oracle else "") \
        + (" (flip)" if predictor.flip else "") \
        + (f" (scales {','.join(f'{f:g}' for f in predictor.scales)})" if predictor.scales != (1.0,) else "")
    recall = f"{100 * results['box_recall']:.1f}%" if total else "- (no person in the ground truth)"
    print(f"{len(ids)} image(s) of {args.data} ({args.split}); person box recall at IoU 0.5: {recall}")
    print(format_table({label: results}))
    (args.out / "results.json").write_text(json.dumps(json_ready(results), indent=1) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet eval", description=__doc__.splitlines()[0])
    d = EvalOptions()
    add_common_args(ap)
    ap.add_argument("--data", type=Path, required=True, help="GPS-layout data root")
    ap.add_argument("--split", default=d.split)
    ap.add_argument("--out", type=Path, default=d.out)
    ap.add_argument("--overlays", type=int, default=d.overlays, help="also draw the first N images")
    ap.add_argument("--oracle", action="append", choices=ORACLES,
                    help="ground-truth person boxes (boxes) or faces (faces) replace the detector's; "
                         "repeat for both")
    return run(EvalOptions(**vars(ap.parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(main())

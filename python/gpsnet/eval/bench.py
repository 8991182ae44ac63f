"""`scripts/bench_eval`: the streaming AP^p evaluation beside a straightforward implementation.

Generates `--images` images (default 1500) of about 5 persons at `--size` (512) with predictions
that are perturbed copies of the ground truth (shifted, some parts relabelled, persons missed,
false persons added), feeds every image to both implementations and asserts identical AP at every
threshold and identical PCP. The straightforward one, written here, follows MHP's code: for every
(predicted person, ground-truth person) pair, a full-image confusion histogram; then MHP's ranked
loop with "taken" flags, once per threshold. Only the evaluation is timed (not the generation).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import cv2
import numpy as np

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES
from gpsnet.eval.metrics import PCP_THRESHOLD, THRESHOLDS, InstanceAccumulator, voc_ap


# ----------------------------------------------------------------------------- the naive reference

def naive_class_iou(pred: np.ndarray, gt: np.ndarray, k: int) -> np.ndarray:
    """Per-class IoU of one pair over the full image (ground truth >= k ignored)."""
    valid = gt < k
    hist = np.bincount(k * gt[valid].astype(np.int64) + pred[valid].astype(np.int64),
                       minlength=k * k).reshape(k, k).astype(np.float64)
    inter = np.diag(hist)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (hist.sum(1) + hist.sum(0) - inter)


class NaiveEvaluator:
    """Per pair, one full-image histogram; per threshold, MHP's loop over the ranked predictions."""

    def __init__(self, k: int = NUM_CLASSES) -> None:
        self.k = k
        self.npos = 0
        self.records: list[tuple[float, float, int, np.ndarray, int]] = []  # score, iou, gt, ious, parts

    def add(self, scores: np.ndarray, preds: np.ndarray, gts: np.ndarray) -> None:
        gts = [g for g in gts if (g > 0).any()]
        for score, pred in zip(scores, preds):
            ovmax, jmax, iou_max, parts = -np.inf, -1, None, 0
            for j, gt in enumerate(gts):
                iou = naive_class_iou(pred, gt, self.k)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(iou)  # as MHP
                if mean > ovmax:
                    ovmax, jmax, iou_max = mean, j, iou
                    u = np.unique(gt)
                    parts = int(np.sum((u > 0) & (u < self.k)))
            gid = jmax + self.npos if jmax >= 0 else -1
            self.records.append((float(score), float(ovmax), gid, iou_max, parts))
        self.npos += len(gts)

    def evaluate(self, t: float) -> tuple[float, float]:
        order = np.argsort(-np.array([r[0] for r in self.records]), kind="stable")
        taken: set[int] = set()
        tp = np.zeros(len(order))
        shares: list[float] = []
        for d, i in enumerate(order):
            _, ov, gid, ious, parts = self.records[i]
            if ov > t and gid not in taken:
                taken.add(gid)
                tp[d] = 1
                hits = float(np.sum(ious[1:] > t))
                shares.append(hits / parts if parts > 0 else 0.0)
        tp_c = np.cumsum(tp)
        fp_c = np.cumsum(1 - tp)
        rec = tp_c / self.npos
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        return voc_ap(rec, prec), math.fsum(shares) / self.npos


# ----------------------------------------------------------------------------- generated data

_BANDS = ((0.00, 0.10, 2), (0.10, 0.22, 11), (0.22, 0.50, 4), (0.50, 0.88, 6), (0.88, 1.00, 9))


def draw_person(shape: tuple[int, int], x: int, y: int, w: int, h: int, rng: np.random.Generator,
                dx: int = 0, dy: int = 0, relabel: float = 0.0, ignore: bool = False) -> np.ndarray:
    """A person-like part map: bands of classes inside an ellipse, arms, optional bag/hat."""
    lab = np.zeros(shape, dtype=np.uint8)
    x, y = x + dx, y + dy
    body = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(body, (x + w // 2, y + h // 2), (max(w // 3, 2), max(h // 2, 2)), 0, 0, 360, 1, -1)
    for top, bottom, cls in _BANDS:
        if relabel and rng.random() < relabel:
            cls = int(rng.integers(1, NUM_CLASSES))
        y0, y1 = y + int(top * h), y + int(bottom * h)
        band = np.zeros_like(body)
        band[max(y0, 0):max(y1, 0)] = 1
        lab[(body & band).astype(bool)] = cls
    cv2.rectangle(lab, (x, y + h // 4), (x + w // 8, y + h // 2), 14, -1)
    cv2.rectangle(lab, (x + w - w // 8, y + h // 4), (x + w, y + h // 2), 15, -1)
    if rng.random() < 0.3:
        cv2.circle(lab, (x + w // 2, y + h // 20), max(w // 6, 1), 1, -1)
    if ignore and rng.random() < 0.05:  # a few ignored pixels
        cv2.rectangle(lab, (x + w // 3, y + h // 2), (x + w // 2, y + 2 * h // 3), IGNORE_LABEL, -1)
    return lab


def gt_and_predictions(rng: np.random.Generator, size: int, persons: int = 5
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt N x S x S, predictions M x S x S, scores M) of one generated image: the evaluator's input
    (no image; ``gpsnet.data.synthetic.generate_image`` draws a data set's images)."""
    n = max(1, int(rng.integers(persons - 2, persons + 3)))
    shape = (size, size)
    boxes = []
    for _ in range(n):
        w = int(rng.integers(size // 8, size // 3))
        h = int(rng.integers(size // 3, size - 4))
        boxes.append((int(rng.integers(0, size - w)), int(rng.integers(0, size - h)), w, h))
    gts = np.stack([draw_person(shape, *b, rng, ignore=True) for b in boxes])
    preds, scores = [], []
    for b in boxes:
        if rng.random() < 0.1:
            continue  # missed
        shift = int(size * rng.uniform(0, 0.03))
        preds.append(draw_person(shape, *b, rng, dx=int(rng.integers(-shift, shift + 1)),
                                 dy=int(rng.integers(-shift, shift + 1)), relabel=rng.uniform(0, 0.2)))
        scores.append(rng.uniform(0.3, 1.0))
    for _ in range(int(rng.integers(0, 3))):  # false persons
        w = int(rng.integers(size // 8, size // 3))
        h = int(rng.integers(size // 4, size // 2))
        preds.append(draw_person(shape, int(rng.integers(0, size - w)), int(rng.integers(0, size - h)),
                                 w, h, rng, relabel=0.5))
        scores.append(rng.uniform(0.0, 0.6))
    if rng.random() < 0.2 and preds:  # a duplicate detection
        preds.append(preds[0].copy())
        scores.append(scores[0] * 0.5)
    pred = np.stack(preds) if preds else np.zeros((0, size, size), np.uint8)
    return gts, pred, np.round(np.array(scores, dtype=np.float64), 3)  # rounding: some equal scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1500, help="images (default 1500)")
    ap.add_argument("--size", type=int, default=512, help="image size (default 512)")
    ap.add_argument("--persons", type=int, default=5, help="mean persons per image (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true", help="time the streaming evaluation only")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    fast = InstanceAccumulator()
    naive = NaiveEvaluator()
    t_fast = t_naive = 0.0
    pairs = 0
    step = max(1, args.images // 20)
    for i in range(args.images):
        gts, pred, scores = gt_and_predictions(rng, args.size, args.persons)
        pairs += len(gts) * len(pred)
        t0 = time.perf_counter()
        fast.add(scores, pred, gts)
        t1 = time.perf_counter()
        t_fast += t1 - t0
        if not args.skip_naive:
            naive.add(scores, pred, gts)
            t_naive += time.perf_counter() - t1
        if (i + 1) % step == 0 or i + 1 == args.images:
            print(f"\r  {i + 1}/{args.images} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    t0 = time.perf_counter()
    fast_res = {t: fast.evaluate(t) for t in THRESHOLDS}
    t_fast += time.perf_counter() - t0
    print(f"{args.images} images of {args.size} x {args.size}, {fast.num_positives} gt persons, "
          f"{fast.num_predictions} predictions, {pairs} pairs")
    print("AP^p: " + "  ".join(f"{t:.1f}:{fast_res[t].ap * 100:.2f}" for t in THRESHOLDS)
          + f"  avg.AP {np.mean([r.ap for r in fast_res.values()]) * 100:.2f}"
          + f"  PCP0.5 {fast_res[PCP_THRESHOLD].pcp * 100:.2f}")
    print(f"streaming (vectorised): {t_fast:.2f} s  ({t_fast / args.images * 1000:.2f} ms/image)")
    if args.skip_naive:
        return 0
    t0 = time.perf_counter()
    naive_res = {t: naive.evaluate(t) for t in THRESHOLDS}
    t_naive += time.perf_counter() - t0
    for t in THRESHOLDS:
        assert naive_res[t][0] == fast_res[t].ap, (t, naive_res[t][0], fast_res[t].ap)
        assert naive_res[t][1] == fast_res[t].pcp, (t, naive_res[t][1], fast_res[t].pcp)
    print("identical AP and PCP at every threshold: yes")
    print(f"per-pair full image (naive): {t_naive:.2f} s  ({t_naive / args.images * 1000:.2f} ms/image)")
    print(f"speed-up: {t_naive / t_fast:.1f}x (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

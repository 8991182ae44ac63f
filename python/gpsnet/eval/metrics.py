"""AP^p, avg.AP, PCP and the global parser's mIoU (DESIGN.md section 6, docs/evaluation.md).

The instance metric is MHP's AP^p ("eval_seg_ap" of the MHP v2 evaluation), reproduced exactly:

* mean part IoU of a (predicted person, ground-truth person) pair: one confusion over the whole
  image, one IoU per class *including background*, averaged over the classes present in either
  map (absent from both: skipped; predicted but absent from the ground truth: IoU 0); ground-truth
  pixels >= K (255) are ignored for both maps' counts;
* all predicted persons of the data set are ranked by score; each takes the ground-truth person
  of its image with the highest mean IoU (the first one on ties); it is a true positive when that
  IoU is strictly above t and that person is not yet taken, otherwise a false positive;
* positives = the number of non-empty ground-truth persons (any pixel != 0); AP at t is the
  all-point VOC area under the precision/recall curve; avg.AP is the mean over t = 0.1 .. 0.9.

Equal scores: the ranking is a stable sort on the score, so equal scores keep the order in which
the predictions were added (image after image, and within an image the order given).

Everything is streaming: `InstanceAccumulator.add` is fed one image at a time and keeps, per
predicted person, its score, its best ground-truth person, the mean IoU with it and the part-hit
counts for PCP; no maps are kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from gpsnet.classes import CLASS_NAMES, NUM_CLASSES

# The thresholds of avg.AP (AP^p_vol): 0.1, 0.2, ..., 0.9 (computed as i / 10 like MHP does).
THRESHOLDS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))
TABLE_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)
PCP_THRESHOLD: float = 0.5


class EvalInputError(ValueError):
    """Predictions or ground truth handed to the metrics are malformed."""


# ----------------------------------------------------------------------------- per image

def label_histograms(maps: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """(N, 256) int64 pixel counts of every value of every uint8 map of an (N, H, W) stack.

    With `boxes` (from `map_boxes`), only the box is scanned: outside it the map is 0."""
    n = maps.shape[0]
    out = np.zeros((n, 256), dtype=np.int64)
    area = maps.shape[1] * maps.shape[2]
    for i in range(n):
        if boxes is None:
            x0, y0, x1, y1 = 0, 0, maps.shape[2], maps.shape[1]
        else:
            x0, y0, x1, y1 = (int(v) for v in boxes[i])
        if x1 <= x0 or y1 <= y0:
            out[i, 0] = area
            continue
        # cv2.calcHist: one pass over uint8 data, much faster than np.bincount (which converts
        # to intp first). OpenCV 4 returns 256 x 1, OpenCV 5 (the GPU machine's) 256 values.
        crop = np.ascontiguousarray(maps[i, y0:y1, x0:x1])
        out[i] = cv2.calcHist([crop], [0], None, [256], [0, 256]).reshape(256).astype(np.int64)
        out[i, 0] += area - crop.size
    return out


@dataclass
class PairStats:
    """Per (predicted person m, ground-truth person n) pair of one image."""

    mean_iou: np.ndarray    # float64 (M, N); NaN where no class is present in either map
    class_iou: np.ndarray   # float64 (M, N, K); NaN for classes absent from both maps
    gt_parts: np.ndarray    # int64 (N,): number of part classes (1..K-1) present in ground truth n


def pair_statistics(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES) -> PairStats:
    """Per-class IoUs and mean part IoU of every (pred person, gt person) pair of one image.

    `pred`: uint8 (M, H, W) predicted part maps, values < K (checked); `gt`: uint8 (N, H, W)
    ground-truth part maps, values >= K are ignored.

    One pass: the whole-image label histogram of every map, plus one joint bincount per ground-truth
    person over the box of its non-zero pixels, vectorised over all predicted persons (codes
    (m, pred class, gt class)). The remaining confusion entries follow from the histograms: outside
    a ground-truth person's non-zero pixels its label is background, so e.g. the background
    intersection is #(pred == 0) minus the prediction's background pixels on the person.
    """
    k = int(num_classes)
    pred = _as_stack(pred, "pred")
    gt = _as_stack(gt, "gt")
    m, n = pred.shape[0], gt.shape[0]
    if m and n and pred.shape[1:] != gt.shape[1:]:
        raise EvalInputError(f"prediction size {pred.shape[2]}x{pred.shape[1]} differs from the "
                             f"ground truth's {gt.shape[2]}x{gt.shape[1]}")
    pred_box = map_boxes(pred)                                        # (M, 4) x0, y0, x1, y1
    gt_box = map_boxes(gt)
    pred_hist = label_histograms(pred, pred_box)
    if m and pred_hist[:, k:].any():
        bad = (np.flatnonzero(pred_hist[:, k:].any(axis=0)) + k).tolist()
        raise EvalInputError(f"predicted labels outside 0..{k - 1}: {bad[:10]}")
    gt_hist = label_histograms(gt, gt_box)
    gt_count = gt_hist[:, :k]                                         # (N, K)
    gt_parts = (gt_count[:, 1:] > 0).sum(axis=1)
    if m == 0 or n == 0:
        return PairStats(np.zeros((m, n)), np.zeros((m, n, k)), gt_parts)

    # cross[m, n, p, g]: pixels with pred_m == p and gt_n == g, for gt labels g >= 1 (index K
    # collects every ignored value >= K). Entries with p >= 1 lie in the intersection of the two
    # maps' boxes: one joint bincount per gt person over its box, vectorised over the predicted
    # persons whose boxes meet it. The p = 0 row follows from the gt histogram.
    cross = np.zeros((m, n, k, k + 1), dtype=np.int64)
    g_lut = np.minimum(np.arange(256), k).astype(np.uint16)          # gt value -> 0..K
    block = k * (k + 1)
    for j in range(n):
        gx0, gy0, gx1, gy1 = gt_box[j]
        if gx1 <= gx0:
            continue
        sel = np.flatnonzero((pred_box[:, 0] < gx1) & (pred_box[:, 2] > gx0)
                             & (pred_box[:, 1] < gy1) & (pred_box[:, 3] > gy0))
        if sel.size == 0:
            continue
        x0 = max(gx0, int(pred_box[sel, 0].min()))
        y0 = max(gy0, int(pred_box[sel, 1].min()))
        x1 = min(gx1, int(pred_box[sel, 2].max()))
        y1 = min(gy1, int(pred_box[sel, 3].max()))
        g = g_lut[gt[j, y0:y1, x0:x1]]                               # (h, w) uint16
        if sel.size * block < 65536:
            code = pred[sel, y0:y1, x0:x1].astype(np.uint16)
            code *= k + 1
            code += (np.arange(sel.size, dtype=np.uint16) * block)[:, None, None]
            code += g
        else:
            code = pred[sel, y0:y1, x0:x1].astype(np.int64) * (k + 1)
            code += (np.arange(sel.size, dtype=np.int64) * block)[:, None, None] + g
        counts = np.bincount(code.ravel(), minlength=sel.size * block)
        cross[sel, j] = counts.reshape(sel.size, k, k + 1)
    gt_ext = np.concatenate([gt_count, gt_hist[:, k:].sum(axis=1, keepdims=True)], axis=1)
    cross[..., 0] = 0  # background gt pixels are never needed directly
    cross[:, :, 0, 1:] = gt_ext[None, :, 1:] - cross[:, :, 1:, 1:].sum(axis=2)

    classes = np.arange(k)
    inter = cross[:, :, classes, classes]                              # (M, N, K), c >= 1 exact
    pred_count = pred_hist[:, None, :k] - cross[:, :, :, k]            # pred c on non-ignored gt
    # background: #(pred == 0 and gt == 0) = #(pred == 0) - #(pred == 0 and gt != 0)
    inter[:, :, 0] = pred_hist[:, None, 0] - cross[:, :, 0, :].sum(axis=-1)
    union = gt_count[None, :, :] + pred_count - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union.astype(np.float64)                       # NaN where union == 0
    return PairStats(nan_mean(iou), iou, gt_parts)


def nan_mean(iou: np.ndarray) -> np.ndarray:
    """`np.nanmean(iou, axis=-1)` without the warning; NaN where every entry is NaN."""
    valid = ~np.isnan(iou)
    total = np.where(valid, iou, 0.0).sum(axis=-1)
    count = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def map_boxes(maps: np.ndarray) -> np.ndarray:
    """(N, 4) int64 boxes x0, y0, x1 (exclusive), y1 of the non-zero pixels of each map; an empty
    map gets an empty box (0, 0, 0, 0)."""
    out = np.zeros((maps.shape[0], 4), dtype=np.int64)
    for i in range(maps.shape[0]):
        x, y, w, h = cv2.boundingRect(maps[i])
        out[i] = (x, y, x + w, y + h)
    return out


def _as_stack(maps: np.ndarray | Sequence[np.ndarray], what: str) -> np.ndarray:
    if isinstance(maps, np.ndarray):
        arr = maps
    elif len(maps) == 0:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    else:
        arr = np.stack([np.asarray(x) for x in maps])
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise EvalInputError(f"{what}: expected an (N, H, W) stack of label maps, got shape {arr.shape}")
    return np.ascontiguousarray(as_label_uint8(arr, what))


def as_label_uint8(arr: np.ndarray, what: str, error: type[ValueError] = EvalInputError) -> np.ndarray:
    """``arr`` as uint8 label values; ``error`` naming ``what`` when a value is outside 0..255."""
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise error(f"{what}: label values outside 0..255")
        arr = arr.astype(np.uint8)
    return arr


# ----------------------------------------------------------------------------- AP^p

def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point VOC AP: area under the monotone precision envelope (sentinels (0, 0) and (1, 0))."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class APResult:
    threshold: float
    ap: float
    pcp: float
    precision: np.ndarray  # per ranked prediction
    recall: np.ndarray
    true_positives: int


@dataclass
class InstanceAccumulator:
    """Streams images in, keeps O(1) numbers per predicted person (see the module docstring)."""

    num_classes: int = NUM_CLASSES
    num_positives: int = 0
    num_images: int = 0
    _scores: list[np.ndarray] = field(default_factory=list)
    _best_iou: list[np.ndarray] = field(default_factory=list)   # -inf: no candidate
    _best_gt: list[np.ndarray] = field(default_factory=list)    # data-set-wide gt id, -1: none
    _hits: list[np.ndarray] = field(default_factory=list)       # (M, 9) part classes with IoU > t
    _parts: list[np.ndarray] = field(default_factory=list)      # gt part classes of the best gt

    def add(self, scores: Sequence[float] | np.ndarray, pred_masks: np.ndarray | Sequence[np.ndarray],
            gt_persons: np.ndarray | Sequence[np.ndarray]) -> None:
        """One image: its M predicted persons (scores, uint8 part maps) and its N ground-truth
        person maps (empty ones, without any non-zero pixel, are dropped as MHP does)."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        pred = _as_stack(pred_masks, "predicted masks")
        gt = _as_stack(gt_persons, "ground-truth persons")
        if pred.shape[0] != scores.size:
            raise EvalInputError(f"{scores.size} scores for {pred.shape[0]} predicted masks")
        if not np.isfinite(scores).all():
            raise EvalInputError("scores must be finite numbers")
        if gt.shape[0]:
            gt = gt[gt.reshape(gt.shape[0], -1).any(axis=1)]
        stats = pair_statistics(pred, gt, self.num_classes)
        m, n = pred.shape[0], gt.shape[0]
        if m:
            if n:
                ious = np.where(np.isnan(stats.mean_iou), -np.inf, stats.mean_iou)
                best = np.argmax(ious, axis=1)                    # first maximum, like MHP
                best_iou = ious[np.arange(m), best]
                none = np.isneginf(best_iou)
                cls = stats.class_iou[np.arange(m), best, 1:]     # (M, K-1)
                thr = np.asarray(THRESHOLDS)
                with np.errstate(invalid="ignore"):
                    hits = (cls[:, :, None] > thr[None, None, :]).sum(axis=1)
                best_gt = np.where(none, -1, best + self.num_positives)
                parts = stats.gt_parts[best]
            else:
                best_iou = np.full(m, -np.inf)
                best_gt = np.full(m, -1, dtype=np.int64)
                hits = np.zeros((m, len(THRESHOLDS)), dtype=np.int64)
                parts = np.zeros(m, dtype=np.int64)
            self._scores.append(scores)
            self._best_iou.append(best_iou.astype(np.float64))
            self._best_gt.append(best_gt.astype(np.int64))
            self._hits.append(hits.astype(np.int16))
            self._parts.append(parts.astype(np.int16))
        self.num_positives += n
        self.num_images += 1

    @property
    def num_predictions(self) -> int:
        return int(sum(s.size for s in self._scores))

    def _ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._scores:
            e = np.zeros(0)
            return e, e.astype(np.int64), np.zeros((0, len(THRESHOLDS)), np.int16), e.astype(np.int16)
        scores = np.concatenate(self._scores)
        order = np.argsort(-scores, kind="stable")
        return (np.concatenate(self._best_iou)[order], np.concatenate(self._best_gt)[order],
                np.concatenate(self._hits)[order], np.concatenate(self._parts)[order])

    def evaluate(self, threshold: float) -> APResult:
        """AP^p and PCP at one threshold (PCP needs a threshold of THRESHOLDS, else NaN).

        PCP (MHP): for each true positive, (part classes 1..K-1 of its ground truth with IoU > t)
        / (part classes present in that ground truth), 0 when it has none; summed over the true
        positives and divided by the number of positives (unmatched ground truths count 0).
        No positives: AP and PCP are NaN.
        """
        best_iou, best_gt, hits, parts = self._ranked()
        tp = _true_positives(best_iou, best_gt, threshold)
        tp_c = np.cumsum(tp)
        fp_c = np.cumsum(1.0 - tp)
        npos = self.num_positives
        if npos == 0:
            nan = float("nan")
            return APResult(threshold, nan, nan, np.zeros(0), np.zeros(0), 0)
        recall = tp_c / float(npos)
        precision = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        ap = voc_ap(recall, precision)
        ti = [i for i, t in enumerate(THRESHOLDS) if abs(t - threshold) < 1e-12]
        if ti:
            sel = tp.astype(bool)
            p = parts[sel].astype(np.float64)
            h = hits[sel, ti[0]].astype(np.float64)
            share = np.divide(h, p, out=np.zeros_like(h), where=p > 0)
            pcp = math.fsum(share.tolist()) / npos  # exact sum: order-independent
        else:
            pcp = float("nan")
        return APResult(threshold, ap, pcp, precision, recall, int(tp.sum()))

    def summary(self) -> dict:
        """AP at every threshold of THRESHOLDS, avg.AP, PCP at 0.5 (plain floats in [0, 1])."""
        res = {t: self.evaluate(t) for t in THRESHOLDS}
        aps = [res[t].ap for t in THRESHOLDS]
        return {
            "AP": {f"{t:.1f}": res[t].ap for t in THRESHOLDS},
            "avg_AP": float(np.mean(aps)),
            "PCP": res[PCP_THRESHOLD].pcp,
            "PCP_by_threshold": {f"{t:.1f}": res[t].pcp for t in THRESHOLDS},
            "true_positives": {f"{t:.1f}": res[t].true_positives for t in THRESHOLDS},
            "num_images": self.num_images,
            "num_gt_persons": self.num_positives,
            "num_predictions": self.num_predictions,
        }


def _true_positives(best_iou: np.ndarray, best_gt: np.ndarray, threshold: float) -> np.ndarray:
    """1.0 for the ranked predictions that are true positives at `threshold`: the first (in rank
    order) of the candidates (best IoU > t) of every ground-truth person; the later ones are
    false positives (no fall-back to a second-best ground truth)."""
    tp = np.zeros(best_iou.size, dtype=np.float64)
    cand = np.flatnonzero((best_iou > threshold) & (best_gt >= 0))
    if cand.size:
        _, first = np.unique(best_gt[cand], return_index=True)
        tp[cand[first]] = 1.0
    return tp


# ----------------------------------------------------------------------------- global parsing

@dataclass
class GlobalAccumulator:
    """Confusion matrix of the global parsing over a data set (ground truth >= K ignored)."""

    num_classes: int = NUM_CLASSES
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment]  # (K gt, K pred)
    num_images: int = 0

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        k = self.num_classes
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise EvalInputError(f"global parsing size {pred.shape[::-1]} differs from the ground "
                                 f"truth's {gt.shape[::-1]}")
        valid = gt < k
        p = pred[valid].astype(np.int64)
        if p.size and p.max() >= k:
            raise EvalInputError(f"global parsing labels outside 0..{k - 1}: "
                                 f"{sorted(set(np.unique(p[p >= k]).tolist()))[:10]}")
        self.confusion += np.bincount(gt[valid].astype(np.int64) * k + p,
                                      minlength=k * k).reshape(k, k)
        self.num_images += 1

    def summary(self) -> dict:
        c = self.confusion.astype(np.float64)
        inter = np.diag(c)
        union = c.sum(0) + c.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / union
        names = CLASS_NAMES if self.num_classes == NUM_CLASSES else [str(i) for i in range(self.num_classes)]
        total = c.sum()
        return {
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "per_class_IoU": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
            "pixel_accuracy": float(inter.sum() / total) if total else float("nan"),
            "num_images": self.num_images,
        }

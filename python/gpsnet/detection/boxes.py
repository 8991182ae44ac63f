"""Box utilities: overlaps, the R-CNN box transform and its inverse, clipping, NMS.

Convention (docs/interfaces.md): continuous coordinates, ``width = x2 - x1`` (no ``+ 1``).
"""
from __future__ import annotations

import numpy as np

from gpsnet.geometry import NET_OFFSET

# Largest log-scale change that bbox_transform_inv applies (as Detectron: log(1000 / 16)).
BBOX_XFORM_CLIP: float = float(np.log(1000.0 / 16.0))


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of N x 4 boxes (0 for degenerate boxes)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return w * h


def bbox_overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """IoU of every box (N x 4) with every query box (K x 4): an N x K float64 array."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def bbox_transform(ex_rois: np.ndarray, gt_rois: np.ndarray) -> np.ndarray:
    """Regression targets (dx, dy, dw, dh) that map ``ex_rois`` onto ``gt_rois`` (both N x 4)."""
    ex = np.asarray(ex_rois, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_rois, dtype=np.float64).reshape(-1, 4)
    ex_w = np.maximum(ex[:, 2] - ex[:, 0], 1e-6)
    ex_h = np.maximum(ex[:, 3] - ex[:, 1], 1e-6)
    ex_cx = ex[:, 0] + 0.5 * ex_w
    ex_cy = ex[:, 1] + 0.5 * ex_h
    gt_w = np.maximum(gt[:, 2] - gt[:, 0], 1e-6)
    gt_h = np.maximum(gt[:, 3] - gt[:, 1], 1e-6)
    gt_cx = gt[:, 0] + 0.5 * gt_w
    gt_cy = gt[:, 1] + 0.5 * gt_h
    return np.stack([(gt_cx - ex_cx) / ex_w, (gt_cy - ex_cy) / ex_h,
                     np.log(gt_w / ex_w), np.log(gt_h / ex_h)], axis=1)


def bbox_transform_inv(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply N x 4k deltas to N x 4 boxes: N x 4k predicted boxes (inverse of bbox_transform)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    deltas = np.asarray(deltas, dtype=np.float64)
    if boxes.shape[0] == 0:
        return np.zeros((0, deltas.shape[1] if deltas.ndim == 2 else 4), dtype=np.float64)
    deltas = deltas.reshape(boxes.shape[0], -1)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    dx, dy = deltas[:, 0::4], deltas[:, 1::4]
    dw = np.minimum(deltas[:, 2::4], BBOX_XFORM_CLIP)
    dh = np.minimum(deltas[:, 3::4], BBOX_XFORM_CLIP)
    pcx = dx * w[:, None] + cx[:, None]
    pcy = dy * h[:, None] + cy[:, None]
    pw = np.exp(dw) * w[:, None]
    ph = np.exp(dh) * h[:, None]
    out = np.empty_like(deltas)
    out[:, 0::4] = pcx - 0.5 * pw
    out[:, 1::4] = pcy - 0.5 * ph
    out[:, 2::4] = pcx + 0.5 * pw
    out[:, 3::4] = pcy + 0.5 * ph
    return out


def clip_boxes(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """Clip N x 4k net boxes (gpsnet.geometry) to the image: ``[0, width] x [0, height]`` in
    image coordinates."""
    boxes = np.array(boxes, dtype=np.float64, copy=True)
    if boxes.size == 0:
        return boxes
    lo = NET_OFFSET
    boxes[:, 0::4] = np.clip(boxes[:, 0::4], lo, width + lo)
    boxes[:, 1::4] = np.clip(boxes[:, 1::4], lo, height + lo)
    boxes[:, 2::4] = np.clip(boxes[:, 2::4], lo, width + lo)
    boxes[:, 3::4] = np.clip(boxes[:, 3::4], lo, height + lo)
    return boxes


def filter_small_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Indices of the boxes whose width and height are both at least ``min_size``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.where((w >= min_size) & (h >= min_size))[0]


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, by decreasing score.

    A box is suppressed when its IoU with an already kept box is strictly above ``thresh``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= thresh]
    return np.asarray(keep, dtype=np.int64)

"""NumPy reference of the GPSNet RoI layers: RoIAlign (Detectron / torchvision semantics),
FaceMajoritySelect, AdjustedRoIAlign and AdjustBack, forward and backward.

Written from the layers' definitions (docs/layers.md), independently of the C++ code, in
float64. RoIs are (batch_index, x1, y1, x2, y2) rows in image coordinates.
"""
from __future__ import annotations

import math

import numpy as np


def _bilinear_taps(y: np.ndarray, x: np.ndarray, height: int, width: int):
    """Flat indices (..., 4) and weights (..., 4) of bilinear samples at (y, x) of a
    height x width map, with torchvision's rules: a sample with y < -1, y > height, x < -1 or
    x > width has zero weights; otherwise the position is clamped to the map."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    inside = ~((y < -1.0) | (y > height) | (x < -1.0) | (x > width))
    y = np.maximum(y, 0.0)
    x = np.maximum(x, 0.0)
    y_low = np.floor(y).astype(np.int64)
    x_low = np.floor(x).astype(np.int64)
    y_edge = y_low >= height - 1
    x_edge = x_low >= width - 1
    y_low = np.where(y_edge, height - 1, y_low)
    x_low = np.where(x_edge, width - 1, x_low)
    y_high = np.where(y_edge, height - 1, y_low + 1)
    x_high = np.where(x_edge, width - 1, x_low + 1)
    y = np.where(y_edge, y_low, y)
    x = np.where(x_edge, x_low, x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    idx = np.stack([y_low * width + x_low, y_low * width + x_high,
                    y_high * width + x_low, y_high * width + x_high], axis=-1)
    w = np.stack([hy * hx, hy * lx, ly * hx, ly * lx], axis=-1) * inside[..., None]
    return idx, w


def _roi_align_taps(box, height, width, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                    aligned):
    """(indices, weights) of shape (pooled_h * pooled_w, n_taps): output bin k of one channel
    is sum(plane.ravel()[indices[k]] * weights[k])."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in box)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_h / pooled_h))
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_w / pooled_w))
    count = max(gh * gw, 1)
    n_bins = pooled_h * pooled_w
    if gh <= 0 or gw <= 0:
        return np.zeros((n_bins, 0), np.int64), np.zeros((n_bins, 0))
    ph = np.arange(pooled_h)[:, None]
    pw = np.arange(pooled_w)[:, None]
    ys = y1 + ph * bin_h + (np.arange(gh)[None, :] + 0.5) * bin_h / gh   # pooled_h x gh
    xs = x1 + pw * bin_w + (np.arange(gw)[None, :] + 0.5) * bin_w / gw   # pooled_w x gw
    yy = np.broadcast_to(ys[:, None, :, None], (pooled_h, pooled_w, gh, gw))
    xx = np.broadcast_to(xs[None, :, None, :], (pooled_h, pooled_w, gh, gw))
    idx, w = _bilinear_taps(yy, xx, height, width)
    return idx.reshape(n_bins, -1), w.reshape(n_bins, -1) / count


def roi_align(features, rois, pooled_h=7, pooled_w=7, spatial_scale=1.0, sampling_ratio=0,
              aligned=False):
    """RoIAlign forward: features N x C x H x W, rois R x 5 -> R x C x pooled_h x pooled_w."""
    features = np.asarray(features, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    n, c, h, w = features.shape
    out = np.zeros((len(rois), c, pooled_h, pooled_w))
    flat = features.reshape(n, c, h * w)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        if not (0 <= b < n and b == roi[0]):
            raise ValueError(f"roi {r}: batch index {roi[0]} outside [0, {n})")
        idx, wt = _roi_align_taps(roi[1:], h, w, pooled_h, pooled_w, spatial_scale,
                                  sampling_ratio, aligned)
        out[r] = (flat[b][:, idx] * wt).sum(-1).reshape(c, pooled_h, pooled_w)
    return out


def roi_align_backward(top_diff, features_shape, rois, pooled_h=7, pooled_w=7,
                       spatial_scale=1.0, sampling_ratio=0, aligned=False):
    """Gradient of roi_align w.r.t. the features, given the gradient of its output."""
    top_diff = np.asarray(top_diff, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    n, c, h, w = features_shape
    grad = np.zeros((n, c * h * w))
    chan = (np.arange(c) * h * w)[:, None, None]
    for r, roi in enumerate(rois):
        idx, wt = _roi_align_taps(roi[1:], h, w, pooled_h, pooled_w, spatial_scale,
                                  sampling_ratio, aligned)
        if idx.shape[1] == 0:
            continue
        g = top_diff[r].reshape(c, -1)[:, :, None] * wt[None]          # C x bins x taps
        grad[int(roi[0])] += np.bincount((chan + idx[None]).ravel(), weights=g.ravel(),
                                         minlength=c * h * w)
    return grad.reshape(n, c, h, w)


def face_majority_select(rois, faces, min_overlap=0.0, scores=None, score_threshold=0.0):
    """R x 6 (batch, x1, y1, x2, y2, valid): per person RoI, the face of the same image whose
    centre lies inside the RoI (borders included) with the largest area inside the RoI
    (ties: lowest face index; faces with area inside < min_overlap * area ignored). With
    ``scores``, a face scoring below ``score_threshold`` never beats one at or above it."""
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 5)
    high = (np.ones(len(faces), bool) if scores is None
            else np.asarray(scores, dtype=np.float64).reshape(-1) >= score_threshold)
    out = np.zeros((len(rois), 6))
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        out[r, 0] = b
        best, best_key = -1, (False, 0.0)
        for f, (fb, fx1, fy1, fx2, fy2) in enumerate(faces):
            if fb != b:
                continue
            cx, cy = 0.5 * (fx1 + fx2), 0.5 * (fy1 + fy2)
            if not (x1 <= cx <= x2 and y1 <= cy <= y2):
                continue
            iw = min(fx2, x2) - max(fx1, x1)
            ih = min(fy2, y2) - max(fy1, y1)
            inter = iw * ih if iw > 0 and ih > 0 else 0.0
            if inter < min_overlap * (fx2 - fx1) * (fy2 - fy1):
                continue
            key = (bool(high[f]), inter)      # high-score faces first, then the area inside
            if best < 0 or key > best_key:
                best, best_key = f, key
        if best >= 0:
            out[r, 1:5] = faces[best, 1:5]
            out[r, 5] = 1.0
    return out


def adjust_rois(rois, major_faces, face_x=0.5, face_y=0.2):
    """Adjusted rois R x 5: each RoI with a valid face enlarged so that the face centre lands
    at (face_x, face_y) of it: W = max((cx - x1) / fx, (x2 - cx) / (1 - fx)), X1 = cx - fx W."""
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    faces = np.asarray(major_faces, dtype=np.float64).reshape(-1, 6)
    out = rois.copy()
    for r in range(len(rois)):
        if faces[r, 5] == 0:
            continue
        _, x1, y1, x2, y2 = rois[r]
        cx, cy = 0.5 * (faces[r, 1] + faces[r, 3]), 0.5 * (faces[r, 2] + faces[r, 4])
        w = max((cx - x1) / face_x, (x2 - cx) / (1 - face_x))
        h = max((cy - y1) / face_y, (y2 - cy) / (1 - face_y))
        out[r, 1], out[r, 2] = cx - face_x * w, cy - face_y * h
        out[r, 3], out[r, 4] = out[r, 1] + w, out[r, 2] + h
    return out


def adjusted_roi_align(features, rois, major_faces, pooled_h=41, pooled_w=41,
                       spatial_scale=0.125, sampling_ratio=0, aligned=False, face_x=0.5,
                       face_y=0.2):
    """AdjustedRoIAlign forward: (R x C x Ph x Pw features, R x 5 adjusted rois)."""
    adjusted = adjust_rois(rois, major_faces, face_x, face_y)
    return roi_align(features, adjusted, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                     aligned), adjusted


def _adjust_back_taps(adj, orig, height, width):
    """(indices, weights, outside) for one RoI: output pixel k reads
    sum(map.ravel()[indices[k]] * weights[k]), or is outside when outside[k]."""
    aw, ah = adj[3] - adj[1], adj[4] - adj[2]
    n = height * width
    if not (aw > 0 and ah > 0):
        return np.zeros((n, 4), np.int64), np.zeros((n, 4)), np.ones(n, bool)
    ow, oh = orig[3] - orig[1], orig[4] - orig[2]
    x = orig[1] + (np.arange(width) + 0.5) * ow / width
    y = orig[2] + (np.arange(height) + 0.5) * oh / height
    u = (x - adj[1]) / aw * width - 0.5
    v = (y - adj[2]) / ah * height - 0.5
    vv, uu = np.meshgrid(v, u, indexing="ij")
    idx, w = _bilinear_taps(vv, uu, height, width)
    outside = (vv < -1) | (vv > height) | (uu < -1) | (uu > width)
    return idx.reshape(n, 4), w.reshape(n, 4), outside.ravel()


def adjust_back(maps, adjusted_rois, rois, outside_value=0.0):
    """AdjustBack forward: maps R x K x P x P in the adjusted frame -> the original frame."""
    maps = np.asarray(maps, dtype=np.float64)
    adjusted_rois = np.asarray(adjusted_rois, dtype=np.float64).reshape(-1, 5)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    r_, k, h, w = maps.shape
    out = np.empty_like(maps)
    for r in range(r_):
        idx, wt, outside = _adjust_back_taps(adjusted_rois[r], rois[r], h, w)
        vals = (maps[r].reshape(k, -1)[:, idx] * wt).sum(-1)
        vals[:, outside] = outside_value
        out[r] = vals.reshape(k, h, w)
    return out


def adjust_back_backward(top_diff, adjusted_rois, rois):
    """Gradient of adjust_back w.r.t. the maps."""
    top_diff = np.asarray(top_diff, dtype=np.float64)
    adjusted_rois = np.asarray(adjusted_rois, dtype=np.float64).reshape(-1, 5)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    r_, k, h, w = top_diff.shape
    grad = np.zeros((r_, k, h * w))
    for r in range(r_):
        idx, wt, outside = _adjust_back_taps(adjusted_rois[r], rois[r], h, w)
        wt = wt * ~outside[:, None]
        g = top_diff[r].reshape(k, -1)[:, :, None] * wt[None]
        chan = (np.arange(k) * h * w)[:, None, None]
        grad[r] = np.bincount((chan + idx[None]).ravel(), weights=g.ravel(),
                              minlength=k * h * w).reshape(k, h * w)
    return grad.reshape(r_, k, h, w)

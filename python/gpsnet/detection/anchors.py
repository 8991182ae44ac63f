"""Anchors of the RPN on a stride-``feat_stride`` feature map.

Anchor ``a`` at feature cell ``(y, x)`` is centred on pixel ``(stride * y, stride * x)`` of the
canvas, the pixel that the cell sits on (net coordinates, gpsnet.geometry). Its area is ``size ** 2`` and ``ratio = h / w``.
Order: ``(y, x, a)`` with ``a`` fastest, matching Caffe's ``A x H x W`` channel layout after the
usual transpose.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def base_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """A x 4 anchors centred on the origin, ``A = len(sizes) * len(ratios)`` (ratio-major)."""
    out = []
    for r in ratios:
        for s in sizes:
            w = s / np.sqrt(r)
            h = s * np.sqrt(r)
            out.append([-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h])
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def shifted_anchors(base: np.ndarray, height: int, width: int, feat_stride: int) -> np.ndarray:
    """All ``height * width * A`` anchors of a feature map, order ``(y, x, a)``, a fastest."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    cx = xs.reshape(-1) * float(feat_stride)
    cy = ys.reshape(-1) * float(feat_stride)
    shifts = np.stack([cx, cy, cx, cy], axis=1)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)

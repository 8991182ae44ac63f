"""Smooth L1 loss as a Python layer (BVLC Caffe has none; py-faster-rcnn's fork had one in C++).

Bottoms: predictions, targets, inside weights, [outside weights] (same shape, N x ...).
Top: the scalar loss ``sum(out * smoothL1(in * (pred - target))) / N`` with
``smoothL1(x) = 0.5 (sigma x)^2`` for ``|x| < 1 / sigma^2``, else ``|x| - 0.5 / sigma^2``.
param_str: ``sigma`` (1; the RPN uses 3 as in py-faster-rcnn). Set ``loss_weight`` in the
prototxt (Python layers have no default loss weight).
"""
from __future__ import annotations

from dataclasses import dataclass

import caffe
import numpy as np

from gpsnet.layers._common import ShowsErrors, layer_params


@dataclass(frozen=True)
class SmoothL1Params:
    sigma: float = 1.0


def smooth_l1(x: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Values and derivatives of the smooth L1 function."""
    s2 = sigma * sigma
    small = np.abs(x) < 1.0 / s2
    val = np.where(small, 0.5 * s2 * x * x, np.abs(x) - 0.5 / s2)
    grad = np.where(small, s2 * x, np.sign(x))
    return val, grad


class SmoothL1LossLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom, top) -> None:
        (p,) = layer_params(self, SmoothL1Params)
        self.sigma = p.sigma
        if len(bottom) not in (3, 4):
            raise ValueError("SmoothL1LossLayer: bottoms pred, targets, inside[, outside] weights")
        top[0].reshape(1)

    def reshape(self, bottom, top) -> None:
        for i in range(1, len(bottom)):   # (pycaffe's blob vectors cannot be sliced)
            b = bottom[i]
            if b.data.shape != bottom[0].data.shape:
                raise ValueError(f"SmoothL1LossLayer: bottom shapes differ: {b.data.shape} vs "
                                 f"{bottom[0].data.shape}")
        top[0].reshape(1)

    def forward(self, bottom, top) -> None:
        if bottom[0].count == 0:
            top[0].data[0] = 0.0
            self._grad = None
            return
        n = max(bottom[0].data.shape[0], 1)
        diff = bottom[2].data * (bottom[0].data - bottom[1].data)
        val, grad = smooth_l1(diff, self.sigma)
        out = bottom[3].data if len(bottom) == 4 else 1.0
        top[0].data[0] = float(np.sum(out * val)) / n
        self._grad = (out * bottom[2].data * grad / n).astype(np.float32)

    def backward(self, top, propagate_down, bottom) -> None:
        if propagate_down[0] and self._grad is not None:
            bottom[0].diff[...] = self._grad * top[0].diff[0]
        for i in range(1, len(bottom)):
            if propagate_down[i] and bottom[i].count:
                bottom[i].diff[...] = 0

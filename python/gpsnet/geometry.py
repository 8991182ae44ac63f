"""The one pixel convention of the nets: where a feature cell and a RoI bin sit in the image, and the
resampling of the nets' maps back to image pixels by it (``paste``, ``upsample_cells``, ``rescale_region``).

* Image coordinates (data sets, predictions, users) are continuous: pixel ``(i, j)`` covers
  ``[j, j + 1) x [i, i + 1)``; boxes are ``(x1, y1, x2, y2)`` with ``x2 = last column + 1``
  (``gpsnet.data.layout.mask_box``).
* Net coordinates (every box inside the nets: ground truth, anchors, proposals, RoIs, detections)
  are pixel indices: pixel ``i`` is centred on ``i``, so net = image + :data:`NET_OFFSET` (-0.5).
  The data layer converts with :func:`to_net`, inference converts back with :func:`from_net`.
* A stride-``s`` feature map of the DeepLab backbone (3x3 convs of pad 1, 3x3 pools of stride 2 and
  pad 1) has cell ``k`` centred on pixel **index** ``s * k``: the pixel that ``label[::s, ::s]``
  (the data layer's ``label_s8``) samples, the anchors' centre, the global parser's up-sampling.
* Every RoIAlign-family layer runs with ``spatial_scale = 1 / s`` and ``aligned: false``: a RoI
  coordinate ``c`` is read at feature coordinate ``c / s``, i.e. at pixel index ``c``. So inside the
  nets a RoI coordinate is a (real-valued) pixel index, and for a RoI ``[lo, hi]`` of P bins, bin
  ``b`` reads pixel index ``lo + (b + 0.5) (hi - lo) / P`` (:func:`bin_centres`).
* Mask targets give bin ``b`` the label of the nearest pixel to that index (:func:`nearest_pixel`);
  AdjustBack resamples between two RoI frames in the same coordinates; the paste-back gives pixel
  index ``i`` the value at bin coordinate :func:`bin_coordinate` ``(i)``, the exact inverse.

(``aligned: true`` would read ``c / s - 0.5``, i.e. pixel index ``c - s / 2``: 4 px off at s = 8.)
"""
from __future__ import annotations

from typing import Any

import numpy as np

NET_OFFSET: float = -0.5    # net coordinate - image coordinate
ROI_ALIGNED: bool = False   # the RoIAlign-family layers' `aligned` (see the module docstring)
ROI_SAMPLING_RATIO: int = 2


def to_net(boxes: np.ndarray) -> np.ndarray:
    """Image boxes (... x 4, continuous) -> net coordinates (pixel indices)."""
    return np.asarray(boxes, np.float64) + NET_OFFSET


def from_net(boxes: np.ndarray) -> np.ndarray:
    """Net boxes (... x 4, pixel indices) -> image coordinates (continuous)."""
    return np.asarray(boxes, np.float64) - NET_OFFSET


def bin_centres(lo: float, hi: float, pooled: int) -> np.ndarray:
    """The pixel indices (real-valued) that the ``pooled`` bins of ``[lo, hi)`` read."""
    return lo + (np.arange(pooled) + 0.5) * (hi - lo) / pooled


def nearest_pixel(index: np.ndarray) -> np.ndarray:
    """The integer pixel nearest to a real-valued pixel index."""
    return np.floor(np.asarray(index, np.float64) + 0.5).astype(np.int64)


def bin_coordinate(index: np.ndarray, lo: float, hi: float, pooled: int) -> np.ndarray:
    """Inverse of :func:`bin_centres`: the bin coordinate (0 = centre of bin 0) of pixel indices."""
    return (np.asarray(index, np.float64) - lo) / max(hi - lo, 1e-6) * pooled - 0.5


def feature_cells(size: int, stride: int) -> int:
    """Cells of a stride-``stride`` map of a ``size``-pixel canvas (``size = stride * k + 1``)."""
    return (size - 1) // stride + 1


def roi_align_param(pooled: int, stride: int, sampling_ratio: int = ROI_SAMPLING_RATIO,
                    aligned: bool = ROI_ALIGNED) -> dict[str, Any]:
    """The ``roi_align_param`` of every RoIAlign-family layer on a stride-``stride`` map
    (``NetConfig.sampling_ratio`` samples per bin and axis; 0: adaptive). ``aligned=True`` is not
    this module's convention (``NetConfig.roi_aligned``: only to measure what the offset costs)."""
    return dict(pooled_h=pooled, pooled_w=pooled, spatial_scale=1.0 / stride,
                sampling_ratio=sampling_ratio, aligned=aligned)


# ------------------------------------------------------- resampling: nets' maps back to image pixels
def interpolation_matrix(coords: np.ndarray, n: int) -> np.ndarray:
    """len(coords) x n weights of linear interpolation at ``coords`` (0 = centre of cell 0) over n
    cells, the edge cells repeated outside (exact, unlike OpenCV's 1/32-quantised remap)."""
    c = np.clip(np.asarray(coords, np.float64), 0.0, n - 1.0)
    lo = np.minimum(np.floor(c).astype(np.int64), max(n - 2, 0))
    frac = c - lo
    w = np.zeros((c.size, n))
    rows = np.arange(c.size)
    w[rows, lo] = 1.0 - frac
    if n > 1:
        w[rows, lo + 1] += frac
    return w


def sample_grid(prob: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """K x h x w maps sampled bilinearly at the cell coordinates ``ys`` x ``xs`` (0 = centre of cell 0):
    K x len(ys) x len(xs)."""
    wy = interpolation_matrix(ys, prob.shape[1])
    wx = interpolation_matrix(xs, prob.shape[2])
    return np.einsum("yi,kij,xj->kyx", wy, prob.astype(np.float64), wx, optimize=True).astype(np.float32)


def resample_box(prob: np.ndarray, box: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """K x P x P maps over ``box`` sampled bilinearly at the pixels [y0, y1) x [x0, x1): pixel index
    i takes bin coordinate ``bin_coordinate(i)``, the inverse of what the nets read."""
    _, p, _ = prob.shape
    return sample_grid(prob, bin_coordinate(np.arange(y0, y1), box[1], box[3], p),
                       bin_coordinate(np.arange(x0, x1), box[0], box[2], p))


def paste(prob: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Arg-max part labels of ``prob`` (K x P x P over ``box``, net coordinates) in a height x
    width map: the pixels whose index lies in the box."""
    out = np.zeros((height, width), np.uint8)
    x0, y0 = max(int(np.ceil(box[0])), 0), max(int(np.ceil(box[1])), 0)
    x1, y1 = min(int(np.floor(box[2])) + 1, width), min(int(np.floor(box[3])) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return out
    out[y0:y1, x0:x1] = resample_box(prob, box, x0, x1, y0, y1).argmax(0).astype(np.uint8)
    return out


def upsample_cells(prob: np.ndarray, height: int, width: int, stride: int = 8) -> np.ndarray:
    """K x h x w feature maps at stride ``stride`` (8 in the paper's setting, 4 in the CPU one; cell i
    at pixel index ``stride * i``) resampled bilinearly to K x height x width."""
    return sample_grid(prob, np.arange(height) / stride, np.arange(width) / stride)


def rescale_region(prob: np.ndarray, height: int, width: int, ratio: float) -> np.ndarray:
    """K x h x w maps over an image region scaled by ``ratio`` resampled bilinearly to the same image's
    region of height x width pixels at scale 1 (pixel index i covers image coordinate i + 0.5)."""
    return sample_grid(prob, (np.arange(height) + 0.5) * ratio - 0.5, (np.arange(width) + 0.5) * ratio - 0.5)

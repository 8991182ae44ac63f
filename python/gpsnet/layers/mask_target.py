"""Mask target layer: the assigned person's part labels cropped by RoIs to P x P.

Bottoms: ``mask_rois`` (M x 5), ``mask_gt_index`` (M), ``gt_masks`` (G x 1 x S x S), and
optionally ``adjusted_rois`` (M x 5, from AdjustedRoIAlign). Tops: labels by the RoIs
(M x 1 x P x P) and, with the fourth bottom, labels by the adjusted RoIs. Nearest sampling at bin
centres; 255 outside the canvas; other persons' pixels are background (``gt_masks`` holds one
person per row). param_str: ``MaskTargetParams``: ``pooled`` (NetConfig's P), ``binary`` (false; true:
1 person / 0 background, for Mask R-CNN's instance masks). See :func:`gpsnet.detection.targets.mask_targets`.
"""
from __future__ import annotations

from dataclasses import dataclass

import caffe

from gpsnet.detection.targets import mask_targets
from gpsnet.layers._common import ShowsErrors, layer_params, read_blob
from gpsnet.nets.config import DEFAULT_CONFIG


@dataclass(frozen=True)
class MaskTargetParams:
    pooled: int = DEFAULT_CONFIG.pooled
    binary: bool = False


class MaskTargetLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom, top) -> None:
        (p,) = layer_params(self, MaskTargetParams)
        self.pooled, self.binary = p.pooled, p.binary
        if not ((len(bottom) == 3 and len(top) == 1) or (len(bottom) == 4 and len(top) == 2)):
            raise ValueError("MaskTargetLayer: bottoms rois, gt_index, gt_masks[, adjusted_rois]; "
                             "one top per RoI set")
        self.reshape(bottom, top)

    def reshape(self, bottom, top) -> None:
        m = bottom[0].data.reshape(-1, 5).shape[0]
        for i in range(len(top)):   # (pycaffe's blob vectors cannot be iterated)
            top[i].reshape(m, 1, self.pooled, self.pooled)

    def forward(self, bottom, top) -> None:
        rois_sets = [bottom[0].data] + ([bottom[3].data] if len(bottom) == 4 else [])
        for i, rois in enumerate(rois_sets):
            top[i].data[:, 0] = mask_targets(rois, bottom[1].data, read_blob(bottom[2]), self.pooled,
                                        self.binary)

    def backward(self, top, propagate_down, bottom) -> None:
        pass

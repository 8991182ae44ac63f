"""RPN anchor target layer (py-faster-rcnn's AnchorTargetLayer, for a batch of images).

Bottoms: ``rpn_cls_score`` (B x 2A x H x W, only its shape is used), ``gt_persons`` (G x 5),
``gt_faces`` (F x 5, F may be 0), ``im_info`` (B x 3). The RPN is class-agnostic: persons and
faces are both objects.
Tops: ``rpn_labels`` (B x 1 x A*H x W: 1 fg, 0 bg, -1 ignore), ``rpn_bbox_targets``,
``rpn_bbox_inside_weights``, ``rpn_bbox_outside_weights`` (all B x 4A x H x W; outside weights
are 1 / (sampled anchors of the image)).
param_str (JSON): ``AnchorParams`` (``feat_stride``, ``anchor_sizes``, ``anchor_ratios`` h / w), ``seed``
and :class:`gpsnet.detection.targets.AnchorTargetConfig`'s fields; the defaults of NetConfig's fields
are the full setting's.
"""
from __future__ import annotations

from dataclasses import dataclass

import caffe
import numpy as np

from gpsnet.detection.anchors import base_anchors, shifted_anchors
from gpsnet.detection.targets import AnchorTargetConfig, anchor_targets
from gpsnet.layers._common import SamplingParams, SeededSampling, ShowsErrors, layer_params, read_blob
from gpsnet.nets.config import DEFAULT_CONFIG


@dataclass(frozen=True)
class AnchorParams:
    """The anchors of the RPN layers' param_str (``AnchorTargetLayer``, ``ProposalLayer``)."""
    feat_stride: int = DEFAULT_CONFIG.feat_stride
    anchor_sizes: tuple[float, ...] = DEFAULT_CONFIG.anchor_sizes
    anchor_ratios: tuple[float, ...] = DEFAULT_CONFIG.anchor_ratios

    def base(self) -> np.ndarray:
        return base_anchors(self.anchor_sizes, self.anchor_ratios)


class AnchorTargetLayer(ShowsErrors, SeededSampling, caffe.Layer):
    def setup(self, bottom, top) -> None:
        anchors, self.cfg, sampling = layer_params(self, AnchorParams, AnchorTargetConfig, SamplingParams)
        self.feat_stride, self.base = anchors.feat_stride, anchors.base()
        self.init_sampling(sampling)
        if len(bottom) != 4 or len(top) != 4:
            raise ValueError("AnchorTargetLayer: bottoms rpn_cls_score, gt_persons, gt_faces, "
                             "im_info; tops labels, targets, inside, outside weights")
        a = self.base.shape[0]
        if bottom[0].channels != 2 * a:
            raise ValueError(f"AnchorTargetLayer: rpn_cls_score has {bottom[0].channels} channels, "
                             f"expected 2 x {a} anchors")
        self.reshape(bottom, top)

    def reshape(self, bottom, top) -> None:
        b, _, h, w = bottom[0].data.shape
        a = self.base.shape[0]
        top[0].reshape(b, 1, a * h, w)
        for i in range(1, len(top)):   # (pycaffe's blob vectors cannot be sliced)
            top[i].reshape(b, 4 * a, h, w)

    def forward(self, bottom, top) -> None:
        b, _, h, w = bottom[0].data.shape
        a = self.base.shape[0]
        anchors = shifted_anchors(self.base, h, w, self.feat_stride)
        gt = np.concatenate([read_blob(bottom[1], 5).reshape(-1, 5), read_blob(bottom[2], 5).reshape(-1, 5)])
        info = bottom[3].data.reshape(-1, 3)
        rng = self.next_rng()
        for i in range(b):
            boxes = gt[gt[:, 0] == i, 1:]
            labels, targets, inside = anchor_targets(anchors, boxes, info[i, 0], info[i, 1],
                                                     self.cfg, rng)
            n_sampled = max(int((labels >= 0).sum()), 1)
            outside = np.where(labels[:, None] >= 0, 1.0 / n_sampled, 0.0)
            top[0].data[i, 0] = labels.reshape(h, w, a).transpose(2, 0, 1).reshape(a * h, w)
            for j, arr in ((1, targets), (2, inside), (3, np.repeat(outside, 4, 1))):
                top[j].data[i] = arr.reshape(h, w, a, 4).transpose(2, 3, 0, 1).reshape(4 * a, h, w)

    def backward(self, top, propagate_down, bottom) -> None:
        pass

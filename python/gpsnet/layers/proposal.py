"""RPN proposal layer and the test-time detection layer.

``ProposalLayer`` bottoms: ``rpn_cls_prob_reshape`` (B x 2A x H x W; channels A.. are the
object probabilities), ``rpn_bbox_pred`` (B x 4A x H x W), ``im_info`` (B x 3). Tops: ``rois``
(R x 5: batch, x1, y1, x2, y2) and optionally their scores (R). param_str:
:class:`~gpsnet.layers.anchor_target.AnchorParams`' fields and :class:`~gpsnet.detection.targets.ProposalConfig`'s
fields (``pre_nms_top_n``, ``post_nms_top_n``, ``nms_thresh``, ``min_size``): the builder writes
different counts into the train and test nets.

``DetectionLayer`` (test nets) bottoms: ``rois``, ``cls_prob`` (R x 3), ``bbox_pred`` (R x 12),
``im_info``. Tops: ``person_rois`` (P x 5, P >= 1 per image), ``person_scores`` (P),
``face_rois`` (F x 5, F may be 0) and optionally ``face_scores``. param_str:
:class:`~gpsnet.detection.targets.DetectConfig`'s fields.
"""
from __future__ import annotations

import caffe
import numpy as np

from gpsnet.detection.anchors import shifted_anchors
from gpsnet.detection.targets import DetectConfig, ProposalConfig, detect, propose
from gpsnet.layers._common import ShowsErrors, layer_params, read_blob, write_blob
from gpsnet.layers.anchor_target import AnchorParams


class ProposalLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom, top) -> None:
        anchors, self.cfg = layer_params(self, AnchorParams, ProposalConfig)
        self.feat_stride, self.base = anchors.feat_stride, anchors.base()
        top[0].reshape(1, 5)
        if len(top) > 1:
            top[1].reshape(1)

    def reshape(self, bottom, top) -> None:
        pass

    def forward(self, bottom, top) -> None:
        b, _, h, w = bottom[0].data.shape
        a = self.base.shape[0]
        anchors = shifted_anchors(self.base, h, w, self.feat_stride)
        info = bottom[2].data.reshape(-1, 3)
        rois, scores = [], []
        for i in range(b):
            fg = bottom[0].data[i, a:].transpose(1, 2, 0).reshape(-1)
            deltas = bottom[1].data[i].reshape(a, 4, h, w).transpose(2, 3, 0, 1).reshape(-1, 4)
            boxes, s = propose(anchors, fg, deltas, info[i, 0], info[i, 1], self.cfg)
            rois.append(np.concatenate([np.full((boxes.shape[0], 1), i), boxes], axis=1))
            scores.append(s)
        r = np.concatenate(rois).astype(np.float32)
        top[0].reshape(*r.shape)
        top[0].data[...] = r
        if len(top) > 1:
            s = np.concatenate(scores).astype(np.float32)
            top[1].reshape(s.shape[0])
            top[1].data[...] = s

    def backward(self, top, propagate_down, bottom) -> None:
        pass


class DetectionLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom, top) -> None:
        (self.cfg,) = layer_params(self, DetectConfig)
        top[0].reshape(1, 5)
        top[1].reshape(1)
        top[2].reshape(0, 5)
        if len(top) > 3:
            top[3].reshape(0)

    def reshape(self, bottom, top) -> None:
        pass

    def forward(self, bottom, top) -> None:
        persons, p_scores, faces, f_scores = detect(read_blob(bottom[0], 5), bottom[1].data, bottom[2].data,
                                                    bottom[3].data, self.cfg)
        arrays = (persons, p_scores, faces, f_scores)
        for i in range(len(top)):   # (pycaffe's blob vectors cannot be iterated)
            write_blob(top[i], arrays[i])

    def backward(self, top, propagate_down, bottom) -> None:
        pass

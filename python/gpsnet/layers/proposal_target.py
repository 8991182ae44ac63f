"""Proposal target layer: samples the box head's RoIs and the mask branch's person RoIs.

Bottoms: ``rpn_rois`` (R x 5), ``gt_persons`` (G x 5), ``gt_faces`` (F x 5, F may be 0),
``im_info`` (B x 3, gives the batch size). Classes: 0 background, 1 person, 2 face.
Tops: ``rois`` (S x 5), ``labels`` (S), ``bbox_targets``, ``bbox_inside_weights``,
``bbox_outside_weights`` (S x 12, targets divided by ``bbox_stds``), and optionally
``mask_rois`` (M x 5, M >= 1) and ``mask_gt_index`` (M: row of gt_persons / gt_masks, -1 for the
dummy RoI of a batch without persons). See :func:`gpsnet.detection.targets.sample_rois`.
param_str: ``seed`` and :class:`~gpsnet.detection.targets.RoiSampleConfig`'s fields.

``DetectionTargetLayer`` (Det.+Par.'s parser stage): bottoms ``person_rois`` (D x 5, the trained
detector's boxes), ``gt_persons`` (G x 5), ``im_info`` (B x 3); tops ``mask_rois`` (M x 5, M >= 1)
and ``mask_gt_index`` (M): the detected boxes matched to a person, see
:func:`gpsnet.detection.targets.match_detections`. param_str: as ``ProposalTargetLayer``.
"""
from __future__ import annotations

import caffe
import numpy as np

from gpsnet.detection.targets import NUM_DET_CLASSES, RoiSampleConfig, match_detections, sample_rois
from gpsnet.layers._common import SamplingParams, SeededSampling, ShowsErrors, layer_params, read_blob, write_blob


class _RoiSampling(ShowsErrors, SeededSampling, caffe.Layer):
    """The two target layers' param_str: ``seed`` and RoiSampleConfig's fields; no backward."""

    def init_config(self) -> None:
        self.cfg, sampling = layer_params(self, RoiSampleConfig, SamplingParams)
        self.init_sampling(sampling)

    def reshape(self, bottom, top) -> None:
        pass

    def backward(self, top, propagate_down, bottom) -> None:
        pass


class ProposalTargetLayer(_RoiSampling):
    def setup(self, bottom, top) -> None:
        self.init_config()
        if len(bottom) != 4 or len(top) not in (5, 7):
            raise ValueError("ProposalTargetLayer: bottoms rpn_rois, gt_persons, gt_faces, im_info; "
                             "5 tops (box head) or 7 (box head + mask_rois, mask_gt_index)")
        top[0].reshape(1, 5)
        top[1].reshape(1)
        for i in range(2, 5):   # (pycaffe's blob vectors cannot be sliced)
            top[i].reshape(1, 4 * NUM_DET_CLASSES)
        if len(top) == 7:
            top[5].reshape(1, 5)
            top[6].reshape(1)

    def forward(self, bottom, top) -> None:
        s = sample_rois(read_blob(bottom[0], 5), read_blob(bottom[1], 5), read_blob(bottom[2], 5),
                        bottom[3].data.reshape(-1, 3).shape[0], self.cfg, self.next_rng())
        arrays = [s.rois, s.labels, s.bbox_targets, s.bbox_inside_weights,
                  (s.bbox_inside_weights > 0).astype(np.float32)]
        if len(top) == 7:
            arrays += [s.mask_rois, s.mask_gt_index]
        for i in range(len(top)):   # (pycaffe's blob vectors cannot be iterated)
            write_blob(top[i], arrays[i])


class DetectionTargetLayer(_RoiSampling):
    def setup(self, bottom, top) -> None:
        self.init_config()
        if len(bottom) != 3 or len(top) != 2:
            raise ValueError("DetectionTargetLayer: bottoms person_rois, gt_persons, im_info; "
                             "tops mask_rois, mask_gt_index")
        top[0].reshape(1, 5)
        top[1].reshape(1)

    def forward(self, bottom, top) -> None:
        rois, index = match_detections(read_blob(bottom[0], 5), read_blob(bottom[1], 5),
                                       bottom[2].data.reshape(-1, 3).shape[0], self.cfg, self.next_rng())
        write_blob(top[0], rois)
        write_blob(top[1], index)

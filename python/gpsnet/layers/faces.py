"""``MixMajorFacesLayer``: the train nets' major faces with ``NetConfig.train_faces = "mix"``.

Bottoms: the major faces of the ground-truth faces and of the detected faces (each R x 6: batch,
x1, y1, x2, y2, valid; FaceMajoritySelect's tops for the same person rois). Top: R x 6, per RoI
the ground-truth row where it is valid, else the detected row (valid or not). No gradient.
"""
from __future__ import annotations

import caffe
import numpy as np

from gpsnet.layers._common import ShowsErrors, layer_params, read_blob, write_blob


def mix_major_faces(gt: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Per row: ``gt``'s where its valid column (5) is set, else ``detected``'s."""
    gt = np.asarray(gt, np.float32).reshape(-1, 6)
    detected = np.asarray(detected, np.float32).reshape(-1, 6)
    if gt.shape != detected.shape:
        raise ValueError(f"MixMajorFacesLayer: the two major-face blobs differ in shape ({gt.shape} vs "
                         f"{detected.shape}); both must come from the same person rois")
    return np.where(gt[:, 5:6] > 0, gt, detected)


class MixMajorFacesLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom, top) -> None:
        layer_params(self)
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError("MixMajorFacesLayer: bottoms (gt major faces, detected major faces), one top")
        top[0].reshape(1, 6)

    def reshape(self, bottom, top) -> None:
        top[0].reshape(bottom[0].shape[0], 6)

    def forward(self, bottom, top) -> None:
        write_blob(top[0], mix_major_faces(read_blob(bottom[0], 6), read_blob(bottom[1], 6)))

    def backward(self, top, propagate_down, bottom) -> None:
        pass

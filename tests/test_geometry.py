"""One pixel convention (gpsnet.geometry, docs/interfaces.md): feature maps that are linear in the
image's x and y go through the nets' own RoIAlign and AdjustedRoIAlign configurations; every bin must
read the pixel the mask targets give it, and the paste-back must put it back where it came from."""
from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.data.layout import mask_box  # noqa: E402
from gpsnet.detection.anchors import base_anchors, shifted_anchors  # noqa: E402
from gpsnet.detection.targets import mask_targets  # noqa: E402
from gpsnet.geometry import (bin_centres, feature_cells, from_net, nearest_pixel,  # noqa: E402
                             paste, resample_box, roi_align_param, to_net, upsample_cells)
from gpsnet.nets.config import NetConfig  # noqa: E402

FACE_X, FACE_Y = NetConfig().face_x, NetConfig().face_y
from gpsnet.reference import nets  # noqa: E402

SIZE = 97


def linear_features(stride: int) -> np.ndarray:
    """1 x 2 x h x h: channel 0 = the pixel index x of each cell, channel 1 = its y (gpsnet.geometry)."""
    k = feature_cells(SIZE, stride)
    xs = (np.arange(k) * stride).astype(np.float64)
    f = np.zeros((1, 2, k, k))
    f[0, 0] = xs[None, :]
    f[0, 1] = xs[:, None]
    return f


ROIS = np.array([[0, 10.3, 12.7, 55.1, 80.4], [0, 30.0, 5.5, 44.5, 60.0], [0, 20.25, 20.75, 70.5, 40.0]])


@pytest.mark.parametrize("stride", [4, 8])
@pytest.mark.parametrize("pooled", [11, 28])
def test_roi_align_bins_read_the_pixels_the_targets_assign(stride, pooled):
    feats = linear_features(stride)
    net = nets.layer_net("RoIAlign", [feats.shape, ROIS.shape], 1, "roi_align_param",
                         roi_align_param(pooled, stride))
    (out,), _ = nets.run_layer(net, [feats, ROIS])
    for r, (_, x1, y1, x2, y2) in enumerate(ROIS):
        np.testing.assert_allclose(out[r, 0], np.tile(bin_centres(x1, x2, pooled), (pooled, 1)), atol=1e-3)
        np.testing.assert_allclose(out[r, 1], np.tile(bin_centres(y1, y2, pooled)[:, None], (1, pooled)),
                                   atol=1e-3)
    # the mask target of a bin is the pixel nearest to what the bin reads
    cols = np.tile(np.arange(SIZE, dtype=np.float32), (SIZE, 1))
    t = mask_targets(ROIS, np.zeros(len(ROIS)), cols[None, None], pooled)
    np.testing.assert_array_equal(t, nearest_pixel(out[:, 0]))
    assert np.abs(t - out[:, 0]).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("stride", [4, 8])
def test_adjusted_roi_align_reads_its_adjusted_frame(stride):
    cfg = NetConfig.small()
    p = cfg.pooled
    feats = linear_features(stride)
    rois = ROIS[:1]
    face = np.array([[0, 30.0, 20.0, 36.0, 26.0, 1.0]])   # a major face (valid) inside the roi
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, rois.shape, face.shape], 2, "adjusted_roi_align_param",
                         dict(roi_align_param(p, stride), face_x=FACE_X, face_y=FACE_Y))
    (out, adjusted), _ = nets.run_layer(net, [feats, rois, face])
    _, x1, y1, x2, y2 = adjusted[0]
    assert x1 <= rois[0, 1] and y1 <= rois[0, 2] and x2 >= rois[0, 3] and y2 >= rois[0, 4]
    # the face centre lands at (FACE_X, FACE_Y) of the adjusted frame
    np.testing.assert_allclose([(33.0 - x1) / (x2 - x1), (23.0 - y1) / (y2 - y1)], [FACE_X, FACE_Y], atol=1e-4)
    inside = (bin_centres(x1, x2, p) >= 0) & (bin_centres(x1, x2, p) <= SIZE - 1)
    np.testing.assert_allclose(out[0, 0][:, inside], np.tile(bin_centres(x1, x2, p)[inside], (p, 1)), atol=1e-3)
    t = mask_targets(adjusted, np.zeros(1), np.tile(np.arange(SIZE, dtype=np.float32), (SIZE, 1))[None], p)
    np.testing.assert_array_equal(t[0][:, inside], nearest_pixel(out[0, 0][:, inside]))


@pytest.mark.parametrize("pooled", [11, 28])
def test_paste_back_inverts_the_bins(pooled):
    """A bin map that is linear in the pixel index (what RoIAlign of linear features gives) pasted
    back gives every pixel its own index within 0.05 px."""
    for _, x1, y1, x2, y2 in ROIS:
        box = np.array([x1, y1, x2, y2])
        prob = np.stack([np.tile(bin_centres(x1, x2, pooled), (pooled, 1)),
                         np.tile(bin_centres(y1, y2, pooled)[:, None], (1, pooled))])
        xa, xb = int(np.ceil(x1)), int(np.floor(x2)) + 1
        ya, yb = int(np.ceil(y1)), int(np.floor(y2)) + 1
        back = resample_box(prob, box, xa, xb, ya, yb)
        # bins are linear between the first and the last bin centre; outside, the edge bin repeats
        cx, cy = bin_centres(x1, x2, pooled), bin_centres(y1, y2, pooled)
        ix = (np.arange(xa, xb) >= cx[0]) & (np.arange(xa, xb) <= cx[-1])
        iy = (np.arange(ya, yb) >= cy[0]) & (np.arange(ya, yb) <= cy[-1])
        np.testing.assert_allclose(back[0][:, ix], np.tile(np.arange(xa, xb)[ix], (yb - ya, 1)), atol=0.05)
        np.testing.assert_allclose(back[1][iy], np.tile(np.arange(ya, yb)[iy, None], (1, xb - xa)), atol=0.05)


def test_a_person_makes_the_round_trip():
    """A person's mask -> its net box -> mask targets -> paste-back gives the mask back (P large
    enough for the person's size), and the box goes back to the image's box."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[20:61, 30:45] = 4
    mask[20:30, 33:42] = 11
    mask[50:61, 30:36] = 12
    box = mask_box(mask != 0)
    net_box = to_net(box)
    np.testing.assert_allclose(from_net(net_box), box)
    p = 64
    t = mask_targets(np.concatenate([[0], net_box])[None], np.zeros(1), mask[None], p)[0]
    prob = np.eye(20)[t.astype(int)].transpose(2, 0, 1)
    np.testing.assert_array_equal(paste(prob, net_box, SIZE, SIZE), mask)


def test_cells_anchors_and_upsampling_share_the_cell_positions():
    stride = 4
    anchors = shifted_anchors(base_anchors([8.0], [1.0]), 3, 3, stride)
    np.testing.assert_allclose((anchors[:, 0] + anchors[:, 2]) / 2, np.tile(np.arange(3) * stride, 3))
    # cell k up-sampled lands on pixel index stride * k
    f = linear_features(stride)[0]
    up = upsample_cells(f, SIZE, SIZE, stride)
    np.testing.assert_allclose(up[0, 0, :SIZE - stride], np.arange(SIZE - stride), atol=1e-3)


@pytest.mark.parametrize("variant", ["ad_fuse", "det_par"])
def test_every_roi_align_family_layer_follows_the_convention_unless_told(variant):
    """Every RoIAlign-family layer of the nets reads RoIs as pixel indices (aligned: false); only
    NetConfig.roi_aligned (kept to measure the old nets' half-cell offset) turns them all."""
    from dataclasses import replace
    from gpsnet.nets.graphs import build
    kinds = ("RoIAlign", "AdjustedRoIAlign")

    def aligned(cfg, train, stage=None):
        proto = build(variant, cfg, train, stage)
        return [(layer.roi_align_param if layer.type == "RoIAlign" else layer.adjusted_roi_align_param).aligned
                for layer in proto.layer if layer.type in kinds]

    stage = "par" if variant == "det_par" else None
    for train in (True, False):
        assert aligned(NetConfig.tiny(), train, stage if train else None) and \
            not any(aligned(NetConfig.tiny(), train, stage if train else None))
        assert all(aligned(replace(NetConfig.tiny(), roi_aligned=True), train, stage if train else None))

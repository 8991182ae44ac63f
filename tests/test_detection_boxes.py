"""Box utilities and anchors on hand-made inputs."""
import numpy as np
import pytest

from gpsnet.detection.anchors import base_anchors, shifted_anchors
from gpsnet.detection.boxes import (bbox_overlaps, bbox_transform, bbox_transform_inv, clip_boxes,
                                    filter_small_boxes, nms)


def test_overlaps_hand_made():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 10]], float)
    ov = bbox_overlaps(a, b)
    assert ov.shape == (2, 3)
    assert ov[0, 0] == pytest.approx(1.0)
    assert ov[0, 1] == pytest.approx(0.0)          # touching edges: no area
    assert ov[0, 2] == pytest.approx(0.5)
    assert ov[1, 0] == pytest.approx(25 / 175)
    assert ov[1, 1] == pytest.approx(25 / 175)


def test_overlaps_empty():
    assert bbox_overlaps(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert bbox_overlaps(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)


def test_transform_roundtrip():
    rng = np.random.default_rng(0)
    ex = rng.uniform(0, 50, (20, 2))
    ex = np.concatenate([ex, ex + rng.uniform(1, 40, (20, 2))], 1)
    gt = rng.uniform(0, 50, (20, 2))
    gt = np.concatenate([gt, gt + rng.uniform(1, 40, (20, 2))], 1)
    d = bbox_transform(ex, gt)
    np.testing.assert_allclose(bbox_transform_inv(ex, d), gt, atol=1e-9)


def test_transform_values():
    d = bbox_transform(np.array([[0, 0, 10, 20.]]), np.array([[5, 0, 15, 40.]]))
    np.testing.assert_allclose(d, [[0.5, 0.5, 0.0, np.log(2)]])


def test_transform_inv_multiclass_and_empty():
    boxes = np.array([[0, 0, 10, 10.]])
    out = bbox_transform_inv(boxes, np.zeros((1, 12)))
    np.testing.assert_allclose(out, np.tile(boxes, 3))
    assert bbox_transform_inv(np.zeros((0, 4)), np.zeros((0, 12))).shape == (0, 12)


def test_clip_and_filter():
    # net coordinates (gpsnet.geometry): the image [0, 20] x [0, 6] is [-0.5, 19.5] x [-0.5, 5.5]
    c = clip_boxes(np.array([[-5, -5, 30, 8.], [2, 3, 4, 5]]), height=6, width=20)
    np.testing.assert_allclose(c, [[-0.5, -0.5, 19.5, 5.5], [2, 3, 4, 5]])
    assert list(filter_small_boxes(np.array([[0, 0, 3, 10.], [0, 0, 4, 4]]), 4)) == [1]


def test_nms_hand_made():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = nms(boxes, scores, 0.5)
    assert list(keep) == [3, 2]
    assert list(nms(boxes, scores, 0.95)) == [3, 0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_anchors():
    base = base_anchors([16], [1.0, 4.0])
    np.testing.assert_allclose(base[0], [-8, -8, 8, 8])
    np.testing.assert_allclose(base[1], [-4, -16, 4, 16])   # ratio = h / w = 4
    all_a = shifted_anchors(base, 2, 3, 8)
    assert all_a.shape == (12, 4)
    # order (y, x, a): index (y=1, x=2, a=1) = (1 * 3 + 2) * 2 + 1
    # centred on the pixel of the cell: index (16, 8) in net coordinates (gpsnet.geometry)
    np.testing.assert_allclose(all_a[11], [16 - 4, 8 - 16, 16 + 4, 8 + 16])

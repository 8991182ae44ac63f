"""FaceMajoritySelect, AdjustedRoIAlign and AdjustBack through pycaffe against the NumPy
reference (gpsnet.reference), forward and backward, on random cases."""
from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.reference import (adjust_back, adjust_back_backward, adjust_rois,  # noqa: E402
                              adjusted_roi_align, face_majority_select, nets, roi_align,
                              roi_align_backward)

TOL = 1e-5


def f32(a):
    """Values as float32 holds them (the layers run in float)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def random_persons_and_faces(rng, n_rois, n_faces, num_images, size):
    xy = rng.uniform(0, size, size=(n_rois, 2))
    wh = rng.uniform(2, size / 2, size=(n_rois, 2))
    rois = np.column_stack([rng.integers(0, num_images, n_rois), xy, xy + wh])
    c = rng.uniform(0, size, size=(n_faces, 2))
    r = rng.uniform(0.5, 4, size=(n_faces, 1))
    faces = np.column_stack([rng.integers(0, num_images, n_faces), c - r, c + r])
    # a face inside each of the first rois, two faces in roi 0
    for i in range(min(3, n_rois, n_faces)):
        cx, cy = rois[i, 1:3] + 0.5 * (rois[i, 3:5] - rois[i, 1:3])
        faces[i] = [rois[i, 0], cx - 1, cy - 1.5, cx + 1, cy + 1.5]
    if n_faces > 3 and n_rois > 0:
        faces[3] = [rois[0, 0], rois[0, 1], rois[0, 2], rois[0, 1] + 1, rois[0, 2] + 1]
    return f32(rois), f32(faces)


# ----------------------------------------------------------------- FaceMajoritySelect

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_overlap", [0.0, 0.6])
def test_face_majority_select_matches_reference(seed, min_overlap):
    rng = np.random.default_rng(seed)
    rois, faces = random_persons_and_faces(rng, 15, 25, 2, 40)
    net = nets.layer_net("FaceMajoritySelect", [rois.shape, faces.shape], 1,
                         "face_majority_select_param", {"min_overlap": min_overlap})
    (top,), _ = nets.run_layer(net, [rois, faces])
    want = face_majority_select(rois, faces, f32(min_overlap)[()])
    np.testing.assert_array_equal(top, f32(want))
    assert top[:, 5].any() and not top[:, 5].all()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("score_threshold", [0.0, 0.5, 1.0])
def test_face_majority_select_with_scores_matches_reference(seed, score_threshold):
    """The third bottom (face scores): a face below score_threshold never beats one at or above."""
    rng = np.random.default_rng(seed)
    rois, faces = random_persons_and_faces(rng, 15, 25, 2, 40)
    scores = f32(rng.uniform(0, 1, len(faces)))
    net = nets.layer_net("FaceMajoritySelect", [rois.shape, faces.shape, scores.shape], 1,
                         "face_majority_select_param", {"score_threshold": score_threshold})
    (top,), _ = nets.run_layer(net, [rois, faces, scores])
    want = face_majority_select(rois, faces, scores=scores, score_threshold=f32(score_threshold)[()])
    np.testing.assert_array_equal(top, f32(want))
    unscored = face_majority_select(rois, faces)
    if score_threshold == 0.0:
        np.testing.assert_array_equal(want, unscored)
    for r, row in enumerate(want):   # no face of the roi's image scoring higher-tier is larger inside
        picked = np.flatnonzero((faces[:, 1:] == row[1:5]).all(1))
        if row[5] and scores[picked[0]] < score_threshold:
            assert not face_majority_select(rois[r:r + 1], faces[scores >= score_threshold])[0, 5]


def test_face_majority_select_without_faces_and_without_rois():
    rois = np.array([[0, 0, 0, 10, 10], [1, 2, 2, 6, 6]], np.float32)
    net = nets.layer_net("FaceMajoritySelect", [rois.shape, (1, 5)], 1)
    (top,), _ = nets.run_layer(net, [rois, np.zeros((0, 5))])
    np.testing.assert_array_equal(top, [[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    (top,), _ = nets.run_layer(net, [np.zeros((0, 5)), np.ones((3, 5))])
    assert top.shape == (0, 6)


def test_face_majority_select_picks_largest_area_inside():
    rois = np.array([[0, 0, 0, 10, 10]])
    faces = np.array([[0, 1, -4, 9, 5],     # 40 inside
                      [0, -6, 3, 8, 9],     # 48 inside (larger overall too)
                      [1, 2, 2, 8, 8],      # other image
                      [0, 20, 20, 30, 30]])  # centre outside
    net = nets.layer_net("FaceMajoritySelect", [rois.shape, faces.shape], 1)
    (top,), _ = nets.run_layer(net, [rois, faces])
    np.testing.assert_array_equal(top, [[0, -6, 3, 8, 9, 1]])


# ------------------------------------------------------------------- AdjustedRoIAlign

def adjusted_case(seed, scale=0.25):
    rng = np.random.default_rng(seed)
    size = 40
    feats = rng.normal(size=(2, 3, int(size * scale), int(size * scale))).astype(np.float32)
    rois, faces = random_persons_and_faces(rng, 10, 14, 2, size)
    major = face_majority_select(rois, faces)
    return rng, feats, rois, f32(major)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("face_xy", [(0.5, 0.2), (0.3, 0.45)])
def test_adjusted_roi_align_matches_reference(aligned, sampling_ratio, face_xy):
    rng, feats, rois, major = adjusted_case(7 + sampling_ratio + int(aligned))
    fx, fy = face_xy
    params = dict(pooled_h=4, pooled_w=3, spatial_scale=0.25, sampling_ratio=sampling_ratio,
                  aligned=aligned, face_x=fx, face_y=fy)
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, rois.shape, major.shape], 2,
                         "adjusted_roi_align_param", params)
    fx32, fy32 = f32(fx)[()], f32(fy)[()]
    want, want_adj = adjusted_roi_align(feats, rois, major, 4, 3, 0.25, sampling_ratio, aligned,
                                        fx32, fy32)
    g = rng.normal(size=want.shape).astype(np.float32)
    (top, adj), (grad, _, _) = nets.run_layer(net, [feats, rois, major], [g, None])
    np.testing.assert_allclose(adj, want_adj, atol=1e-4, rtol=TOL)
    # sample positions from the layer's own float boxes: compare the sampling itself to 1e-5
    np.testing.assert_allclose(top, roi_align(feats, adj, 4, 3, 0.25, sampling_ratio, aligned),
                               atol=TOL, rtol=TOL)
    np.testing.assert_allclose(top, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(grad, roi_align_backward(g, feats.shape, adj, 4, 3, 0.25,
                                                        sampling_ratio, aligned),
                               atol=TOL, rtol=TOL)


def test_adjusted_rois_properties():
    _, feats, rois, major = adjusted_case(11)
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, rois.shape, major.shape], 2,
                         "adjusted_roi_align_param", dict(pooled_h=2, pooled_w=2, face_x=0.5,
                                                          face_y=0.25))
    (top, adj), _ = nets.run_layer(net, [feats, rois, major])
    valid = major[:, 5] > 0
    assert valid.any() and not valid.all()
    cx, cy = (major[:, 1] + major[:, 3]) / 2, (major[:, 2] + major[:, 4]) / 2
    w, h = adj[:, 3] - adj[:, 1], adj[:, 4] - adj[:, 2]
    np.testing.assert_allclose(((cx - adj[:, 1]) / w)[valid], 0.5, atol=1e-5)
    np.testing.assert_allclose(((cy - adj[:, 2]) / h)[valid], 0.25, atol=1e-5)
    assert (adj[:, 1:3] <= rois[:, 1:3] + 1e-4).all() and (adj[:, 3:5] >= rois[:, 3:5] - 1e-4).all()
    np.testing.assert_array_equal(adj[~valid], rois[~valid])
    plain = roi_align(feats, rois, 2, 2, 0.125, 0, False)
    np.testing.assert_allclose(top[~valid], plain[~valid], atol=TOL)


def test_adjusted_roi_align_reference_adjustment_hand_case():
    adj = adjust_rois([[1, 0, 0, 10, 20]], [[1, 4, 1, 6, 3, 1]], 0.5, 0.2)
    np.testing.assert_allclose(adj, [[1, 0, -2.5, 10, 20]])


# ------------------------------------------------------------------------- AdjustBack

def adjust_back_case(seed):
    rng = np.random.default_rng(seed)
    orig = rng.uniform(0, 30, size=(8, 2))
    orig = np.column_stack([np.zeros(8), orig, orig + rng.uniform(1, 20, size=(8, 2))])
    pad = rng.uniform(0, 8, size=(8, 4))
    adj = orig.copy()
    adj[:, 1:3] -= pad[:, :2]
    adj[:, 3:5] += pad[:, 2:]
    adj[5, 1:5] = orig[5, 1:5] + [3, 3, -3, -2]      # smaller than the original
    adj[6, 3:5] = adj[6, 1:3]                         # empty adjusted box
    adj[7] = orig[7]                                  # unadjusted
    maps = rng.normal(size=(8, 3, 6, 5)).astype(np.float32)
    return rng, maps, f32(adj), f32(orig)


@pytest.mark.parametrize("outside_value", [0.0, -2.5])
def test_adjust_back_matches_reference(outside_value):
    rng, maps, adj, orig = adjust_back_case(int(outside_value * 10) + 30)
    net = nets.layer_net("AdjustBack", [maps.shape, adj.shape, orig.shape], 1,
                         "adjust_back_param", {"outside_value": outside_value})
    g = rng.normal(size=maps.shape).astype(np.float32)
    (top,), (grad, _, _) = nets.run_layer(net, [maps, adj, orig], [g])
    np.testing.assert_allclose(top, adjust_back(maps, adj, orig, outside_value), atol=TOL,
                               rtol=TOL)
    np.testing.assert_allclose(grad, adjust_back_backward(g, adj, orig), atol=TOL, rtol=TOL)
    np.testing.assert_allclose(top[7], maps[7], atol=1e-4)  # same box: identity (float boxes)
    assert (top[6] == outside_value).all()                       # empty adjusted box


def test_adjust_back_reference_adjoint():
    rng, maps, adj, orig = adjust_back_case(5)
    y = adjust_back(maps, adj, orig)
    g = rng.normal(size=y.shape)
    assert np.vdot(y, g) == pytest.approx(np.vdot(maps, adjust_back_backward(g, adj, orig)))


def test_adjust_back_inverts_adjusted_roi_align_for_smooth_features():
    """AdjustBack(AdjustedRoIAlign(F)) ~ RoIAlign(F) in the original boxes: within 2 % of the
    feature range for smooth F (bilinear resampling of a P x P grid)."""
    s, p = 64, 41
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    feats = np.stack([np.sin(0.09 * xx + 0.05 * yy), np.cos(0.06 * yy) * np.sin(0.04 * xx)])
    feats = feats[None].astype(np.float32)
    rois = np.array([[0, 100, 80, 260, 420], [0, 200, 40, 330, 300]], np.float64)
    faces = np.array([[0, 150, 90, 190, 140, 1], [0, 250, 120, 290, 160, 1]], np.float64)
    params = dict(pooled_h=p, pooled_w=p, spatial_scale=0.125, sampling_ratio=2, aligned=True)
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, rois.shape, faces.shape], 2,
                         "adjusted_roi_align_param", params)
    (local, adj), _ = nets.run_layer(net, [feats, rois, faces])
    back_net = nets.layer_net("AdjustBack", [local.shape, adj.shape, rois.shape], 1)
    (back,), _ = nets.run_layer(back_net, [local, adj, rois])
    plain = roi_align(feats, rois, p, p, 0.125, 2, True)
    err = np.abs(back - plain).max() / (feats.max() - feats.min())
    assert err < 0.02, err


# --------------------------------------------------------------------- bad parameters

BAD = [
    ("AdjustedRoIAlign", "adjusted_roi_align_param", {"face_x": 0.0}, "face_x must lie in (0, 1)"),
    ("AdjustedRoIAlign", "adjusted_roi_align_param", {"face_y": 1.0}, "face_y must lie in (0, 1)"),
    ("AdjustedRoIAlign", "adjusted_roi_align_param", {"pooled_w": 0}, "pooled_w must be > 0"),
    ("FaceMajoritySelect", "face_majority_select_param", {"min_overlap": -0.1},
     "min_overlap must lie in [0, 1]"),
    ("FaceMajoritySelect", "face_majority_select_param", {"score_threshold": 1.5},
     "score_threshold must lie in [0, 1]"),
]


@pytest.mark.parametrize("layer,field,params,message", BAD)
def test_bad_params_stop_with_a_clear_message(layer, field, params, message):
    shapes = {"AdjustedRoIAlign": [(1, 1, 4, 4), (1, 5), (1, 6)],
              "FaceMajoritySelect": [(1, 5), (1, 5)]}[layer]
    tops = 2 if layer == "AdjustedRoIAlign" else 1
    proc = subprocess.run([sys.executable, "-c", f"""
from gpsnet.reference import nets
nets.layer_net({layer!r}, {shapes!r}, {tops}, {field!r}, {params!r})
"""], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]


def test_adjusted_roi_align_and_adjust_back_zero_rois():
    feats = np.ones((1, 2, 4, 4), np.float32)
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, (1, 5), (1, 6)], 2,
                         "adjusted_roi_align_param", dict(pooled_h=3, pooled_w=3))
    (top, adj), (grad, _, _) = nets.run_layer(net, [feats, np.zeros((0, 5)), np.zeros((0, 6))],
                                              [None, None])
    assert top.shape == (0, 2, 3, 3) and adj.shape == (0, 5)
    assert not grad.any()
    net = nets.layer_net("AdjustBack", [(1, 2, 3, 3), (1, 5), (1, 5)], 1)
    (top,), _ = nets.run_layer(net, [np.zeros((0, 2, 3, 3)), np.zeros((0, 5)), np.zeros((0, 5))],
                               [None])
    assert top.shape == (0, 2, 3, 3)


def test_rois_are_not_differentiable():
    """force_backward gives the features a diff but never the rois or faces."""
    feats = np.ones((1, 2, 4, 4), np.float32)
    rois = np.array([[0, 0, 0, 3, 3]], np.float32)
    faces = np.array([[0, 1, 0, 2, 1, 1]], np.float32)
    net = nets.layer_net("AdjustedRoIAlign", [feats.shape, rois.shape, faces.shape], 2,
                         "adjusted_roi_align_param", dict(pooled_h=2, pooled_w=2))
    _, (grad, grois, gfaces) = nets.run_layer(net, [feats, rois, faces],
                                              [np.ones((1, 2, 2, 2)), None])
    assert grad.any() and not grois.any() and not gfaces.any()

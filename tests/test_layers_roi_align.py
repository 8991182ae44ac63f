"""RoIAlign through pycaffe against the NumPy reference (gpsnet.reference), forward and backward."""
from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.reference import nets, roi_align, roi_align_backward  # noqa: E402

TOL = 1e-5


def random_rois(rng, n, num_images, img_w, img_h, margin=3.0):
    """Random rois inside, partly and wholly outside the image, some of zero size."""
    x = rng.uniform(-margin, img_w + margin, size=(n, 2))
    y = rng.uniform(-margin, img_h + margin, size=(n, 2))
    rois = np.column_stack([rng.integers(0, num_images, n), x.min(1), y.min(1), x.max(1),
                            y.max(1)]).astype(np.float64)
    rois[0, 3] = rois[0, 1]                       # zero width
    rois[1, 3:5] = rois[1, 1:3]                   # zero size
    rois[2, 1:5] = [img_w + 5, 1, img_w + 9, 4]   # wholly outside
    return rois.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 3])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_forward_backward_matches_reference(aligned, sampling_ratio, scale):
    rng = np.random.default_rng(1000 + 10 * sampling_ratio + int(aligned) + int(4 * scale))
    feats = rng.normal(size=(2, 3, 9, 11)).astype(np.float32)
    rois = random_rois(rng, 12, 2, 11 / scale, 9 / scale)
    params = dict(pooled_h=3, pooled_w=2, spatial_scale=scale, sampling_ratio=sampling_ratio,
                  aligned=aligned)
    net = nets.layer_net("RoIAlign", [feats.shape, rois.shape], 1, "roi_align_param", params)
    want = roi_align(feats, rois, 3, 2, scale, sampling_ratio, aligned)
    top_diff = rng.normal(size=want.shape).astype(np.float32)
    (top,), (grad, _) = nets.run_layer(net, [feats, rois], [top_diff])
    np.testing.assert_allclose(top, want, atol=TOL, rtol=TOL)
    want_grad = roi_align_backward(top_diff, feats.shape, rois, 3, 2, scale, sampling_ratio,
                                   aligned)
    np.testing.assert_allclose(grad, want_grad, atol=TOL, rtol=TOL)


def test_reference_backward_is_the_adjoint():
    """<roi_align(x), g> == <x, roi_align_backward(g)>: the reference's own consistency."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 7, 8))
    rois = random_rois(rng, 6, 2, 8, 7)
    y = roi_align(x, rois, 2, 3, 1.0, 0, False)
    g = rng.normal(size=y.shape)
    assert np.vdot(y, g) == pytest.approx(np.vdot(x, roi_align_backward(g, x.shape, rois, 2, 3,
                                                                        1.0, 0, False)))


def test_roi_align_numeric_gradient():
    """Backward of the layer against central differences of its forward (it is linear)."""
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    rois = np.array([[0, 0.4, 0.7, 4.1, 3.6], [0, -1.3, 1.0, 2.2, 6.0]])
    net = nets.layer_net("RoIAlign", [feats.shape, rois.shape], 1, "roi_align_param",
                         dict(pooled_h=2, pooled_w=2, sampling_ratio=2, aligned=True))
    g = rng.normal(size=(2, 2, 2, 2)).astype(np.float32)
    _, (grad, _) = nets.run_layer(net, [feats, rois], [g])
    eps = 1e-2
    num = np.zeros(feats.size)
    for i in range(feats.size):
        d = np.zeros(feats.size, np.float32)
        d[i] = eps
        (tp,), _ = nets.run_layer(net, [feats + d.reshape(feats.shape), rois])
        (tm,), _ = nets.run_layer(net, [feats - d.reshape(feats.shape), rois])
        num[i] = np.vdot(g, tp - tm) / (2 * eps)
    np.testing.assert_allclose(grad.ravel(), num, atol=1e-3)


def test_roi_align_zero_rois():
    feats = np.ones((1, 3, 4, 4), np.float32)
    net = nets.layer_net("RoIAlign", [feats.shape, (1, 5)], 1, "roi_align_param",
                         dict(pooled_h=2, pooled_w=2))
    (top,), (grad, _) = nets.run_layer(net, [feats, np.zeros((0, 5))], [None])
    assert top.shape == (0, 3, 2, 2)
    assert not grad.any()


def test_roi_align_defaults_are_detectron_legacy():
    p = caffe.proto.caffe_pb2.RoIAlignParameter()
    assert (p.pooled_h, p.pooled_w, p.spatial_scale, p.sampling_ratio, p.aligned) == (
        7, 7, 1.0, 0, False)


BAD = [
    ({"pooled_h": 0}, (1, 5), 0, "pooled_h must be > 0"),
    ({"pooled_w": 0}, (1, 5), 0, "pooled_w must be > 0"),
    ({"spatial_scale": 0.0}, (1, 5), 0, "spatial_scale must be > 0"),
    ({"spatial_scale": -0.5}, (1, 5), 0, "spatial_scale must be > 0"),
    ({}, (2, 4), 0, "rois must be R x 5"),
    ({}, (1, 5), 3, "batch index 3, outside [0, 1)"),
    ({}, (1, 5), -1, "batch index -1"),
]


def run_in_child(script: str) -> subprocess.CompletedProcess:
    """A CHECK failure aborts the process: run the net in a child and read its log."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("params,rois_shape,batch,message", BAD)
def test_bad_params_and_shapes_stop_with_a_clear_message(params, rois_shape, batch, message):
    proc = run_in_child(f"""
import numpy as np
from gpsnet.reference import nets
net = nets.layer_net("RoIAlign", [(1, 1, 4, 4), {rois_shape!r}], 1, "roi_align_param", {params!r})
rois = np.zeros({rois_shape!r}); rois[:, 0] = {batch}
nets.run_layer(net, [np.zeros((1, 1, 4, 4)), rois])
""")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("sampling_ratio", [60, 130])
def test_roi_align_with_more_samples_than_one_tap_table(sampling_ratio):
    """The CPU loops compute the bilinear taps of a table of bins once for all the channels
    (roi_util::kTapTable samples): 60 x 60 samples a bin split 3 x 3 bins into several tables,
    130 x 130 a bin is more than one table holds (each bin alone)."""
    rng = np.random.default_rng(sampling_ratio)
    feats = rng.normal(size=(2, 2, 12, 13)).astype(np.float32)
    rois = random_rois(rng, 4, 2, 13, 12)
    params = dict(pooled_h=3, pooled_w=3, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=True)
    net = nets.layer_net("RoIAlign", [feats.shape, rois.shape], 1, "roi_align_param", params)
    want = roi_align(feats, rois, 3, 3, 1.0, sampling_ratio, True)
    top_diff = rng.normal(size=want.shape).astype(np.float32)
    (top,), (grad, _) = nets.run_layer(net, [feats, rois], [top_diff])
    np.testing.assert_allclose(top, want, atol=10 * TOL, rtol=10 * TOL)   # float32 sums of 3600+ samples
    want_grad = roi_align_backward(top_diff, feats.shape, rois, 3, 3, 1.0, sampling_ratio, True)
    np.testing.assert_allclose(grad, want_grad, atol=10 * TOL, rtol=10 * TOL)

"""The fork's fused CPU BatchNorm (caffe_layers/patches/0006-batch-norm-fused.patch, docs/fork.md
"CPU threads") against NumPy: batch statistics, the moving averages and the gradient in training,
the stored statistics with use_global_stats, in place and not, on a blob large enough for the
channel loop to run on threads."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("caffe")

from gpsnet.reference.nets import text_net  # noqa: E402

SHAPE = (2, 6, 61, 59)   # 43 k elements: over the 32768 from which the channels split over threads
EPS, MAF = 1e-5, 0.999


def _net(in_place: bool, global_stats: bool):
    top = "x" if in_place else "y"
    return text_net(
        "force_backward: true\n"
        f'layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {" ".join(f"dim: {d}" for d in SHAPE)} }} }} }}\n'
        f'layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "{top}" '
        f"batch_norm_param {{ use_global_stats: {str(global_stats).lower()} eps: {EPS} "
        f"moving_average_fraction: {MAF} }} }}\n"), top


def _reference(x: np.ndarray, mean: np.ndarray, var: np.ndarray):
    """y = (x - mean) / sqrt(var + eps) per channel, and that denominator (broadcastable)."""
    sd = np.sqrt(var + EPS)[None, :, None, None]
    y = (x - mean[None, :, None, None]) / sd
    return y, sd


@pytest.mark.parametrize("in_place", [False, True])
def test_training_statistics_moving_averages_and_gradient(in_place):
    net, top = _net(in_place, global_stats=False)
    rng = np.random.default_rng(1)
    seen_mean = np.zeros(SHAPE[1])
    seen_var = np.zeros(SHAPE[1])
    factor = 0.0
    for step in range(2):
        x = rng.normal(3.0, 2.0, SHAPE) * rng.uniform(0.5, 2, (1, SHAPE[1], 1, 1))
        dy = rng.normal(size=SHAPE)
        net.blobs["x"].data[...] = x
        net.forward()
        got_y = net.blobs[top].data.copy()
        net.blobs[top].diff[...] = dy
        net.backward()
        got_dx = net.blobs["x"].diff.copy()

        mean = x.mean(axis=(0, 2, 3))
        var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
        y, sd = _reference(x, mean, var)
        m = x.size / SHAPE[1]
        dx = (dy - dy.mean(axis=(0, 2, 3), keepdims=True)
              - y * (dy * y).mean(axis=(0, 2, 3), keepdims=True)) / sd
        np.testing.assert_allclose(got_y, y, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_dx, dx, rtol=1e-3, atol=1e-4)

        seen_mean = mean + MAF * seen_mean
        seen_var = var * m / (m - 1) + MAF * seen_var
        factor = factor * MAF + 1
        np.testing.assert_allclose(net.params["bn"][0].data, seen_mean, rtol=1e-5)
        np.testing.assert_allclose(net.params["bn"][1].data, seen_var, rtol=1e-4)
        assert net.params["bn"][2].data[0] == pytest.approx(factor)


@pytest.mark.parametrize("in_place", [False, True])
def test_global_stats_use_the_stored_statistics(in_place):
    net, top = _net(in_place, global_stats=True)
    rng = np.random.default_rng(2)
    stored_mean, stored_var, factor = rng.normal(size=SHAPE[1]), rng.uniform(0.5, 3, SHAPE[1]), 1.7
    net.params["bn"][0].data[...] = stored_mean
    net.params["bn"][1].data[...] = stored_var
    net.params["bn"][2].data[...] = factor
    x, dy = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    net.blobs["x"].data[...] = x
    net.forward()
    got_y = net.blobs[top].data.copy()
    net.blobs[top].diff[...] = dy
    net.backward()
    y, sd = _reference(x, stored_mean / factor, stored_var / factor)
    np.testing.assert_allclose(got_y, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.blobs["x"].diff, dy / sd, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.params["bn"][0].data, stored_mean.astype(np.float32))

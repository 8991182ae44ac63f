"""Class-balanced parsing losses (CPU setting): ClassWeightsLayer's weights on a generated data set,
and Caffe's InfogainLoss with them against a NumPy weighted cross-entropy."""
from __future__ import annotations

import json
import os

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES  # noqa: E402
from gpsnet.data.layout import GPSDataset  # noqa: E402
from gpsnet.layers.class_weights import class_weights  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from gpsnet.data.synthetic import generate_dataset
    r = tmp_path_factory.mktemp("cw")
    generate_dataset(r, 10, size=96, seed=2)
    return r


def test_weights_follow_the_pixel_frequencies(root):
    w = class_weights(str(root), "train", power=0.5, images=100, max_weight=4.0)
    ds = GPSDataset(root, "train")
    hist = sum(np.bincount(ds.load(i).global_label.ravel(), minlength=256) for i in ds.ids)[:NUM_CLASSES]
    f = hist / hist.sum()
    present = f > 0
    want = np.ones(NUM_CLASSES)
    want[present] = np.clip((np.median(f[present]) / f[present]) ** 0.5, 0.25, 4.0)
    np.testing.assert_allclose(w, want)
    assert w[0] == w.min() < 1 < w.max() <= 4.0            # background is the most frequent class
    order = np.argsort(f[present])
    assert (np.diff(w[present][order]) <= 1e-12).all()      # rarer classes weigh more
    assert (class_weights(str(root), "train", power=0.0) == 1).all()


def _net(tmp_path, root, k_shape, power):
    # score = Scale(x) with a learnable factor 1, so that the loss backpropagates into "score"
    text = f"""
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {' dim: '.join(map(str, k_shape))} }} }} }}
layer {{ name: "s" type: "Scale" bottom: "x" top: "score" scale_param {{ axis: 0 num_axes: 0 filler {{ type: "constant" value: 1 }} }} }}
layer {{ name: "l" type: "Input" top: "label" input_param {{ shape {{ dim: {k_shape[0]} dim: 1 dim: {k_shape[2]} dim: {k_shape[3]} }} }} }}
layer {{ name: "class_weights" type: "Python" top: "class_weights"
  python_param {{ module: "gpsnet.layers.class_weights" layer: "ClassWeightsLayer"
                  param_str: '{json.dumps(dict(root=str(root), power=power))}' }} }}
layer {{ name: "loss" type: "InfogainLoss" bottom: "score" bottom: "label" bottom: "class_weights" top: "loss"
  loss_param {{ ignore_label: {IGNORE_LABEL} normalization: VALID }} propagate_down: true propagate_down: false
  propagate_down: false }}
"""
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


def test_infogain_loss_is_the_weighted_cross_entropy(root, tmp_path):
    rng = np.random.default_rng(0)
    shape = (2, NUM_CLASSES, 5, 6)
    net = _net(tmp_path, root, shape, 0.5)
    score = rng.normal(size=shape).astype(np.float32)
    label = rng.integers(0, NUM_CLASSES, size=(2, 1, 5, 6)).astype(np.float32)
    label[0, 0, 0, :3] = IGNORE_LABEL
    net.blobs["x"].data[...] = score
    net.blobs["label"].data[...] = label
    net.forward()
    w = np.diag(net.blobs["class_weights"].data[0, 0])
    np.testing.assert_allclose(w, class_weights(str(root), "train", power=0.5))
    logp = score - np.log(np.exp(score).sum(axis=1, keepdims=True))
    lab = label[:, 0].astype(int)
    valid = lab != IGNORE_LABEL
    picked = np.take_along_axis(logp, np.where(valid, lab, 0)[:, None], axis=1)[:, 0]
    want = -(w[np.where(valid, lab, 0)] * picked)[valid].sum() / valid.sum()
    np.testing.assert_allclose(float(net.blobs["loss"].data), want, rtol=1e-5)
    net.backward()
    prob = np.exp(logp)
    onehot = np.eye(NUM_CLASSES)[np.where(valid, lab, 0)].transpose(0, 3, 1, 2)
    grad = (prob - onehot) * (w[np.where(valid, lab, 0)] * valid)[:, None] / valid.sum()
    np.testing.assert_allclose(net.blobs["score"].diff, grad, atol=1e-6)


def test_missing_root_is_a_clear_error(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "cw" type: "Python" top: "w" python_param { module: '
                    '"gpsnet.layers.class_weights" layer: "ClassWeightsLayer" param_str: \'{"power": 1}\' } }\n')
    with pytest.raises(Exception):
        caffe.Net(str(path), caffe.TRAIN)

"""The detector / mask Python layers inside pycaffe nets, on hand-made inputs."""
import json

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.detection.anchors import base_anchors, shifted_anchors  # noqa: E402
from gpsnet.detection.targets import mask_targets  # noqa: E402
from gpsnet.reference.nets import input_layer, text_net  # noqa: E402


def _net(text: str):
    return text_net(text)


def _python(name, module, layer, bottoms, tops, params, extra=""):
    b = "".join(f' bottom: "{x}"' for x in bottoms)
    t = "".join(f' top: "{x}"' for x in tops)
    return (f'layer {{ name: "{name}" type: "Python"{b}{t} {extra} python_param {{ module: "gpsnet.layers.{module}" '
            f"layer: \"{layer}\" param_str: '{json.dumps(params)}' }} }}\n")


SIZES, RATIOS = [8, 16], [1.0, 2.0]


def test_anchor_target_and_proposal_layers():
    a = len(SIZES) * len(RATIOS)
    p = dict(feat_stride=8, anchor_sizes=SIZES, anchor_ratios=RATIOS)
    text = (input_layer("score", (2, 2 * a, 9, 9)) + input_layer("gt_persons", (2, 5)) + input_layer("gt_faces", (1, 5))
            + input_layer("im_info", (2, 3)) + input_layer("bbox", (2, 4 * a, 9, 9))
            + _python("at", "anchor_target", "AnchorTargetLayer", ["score", "gt_persons", "gt_faces", "im_info"],
                      ["labels", "targets", "inside", "outside"], dict(p, batch_size=32))
            + _python("prop", "proposal", "ProposalLayer", ["score", "bbox", "im_info"], ["rois", "scores"],
                      dict(p, pre_nms_top_n=50, post_nms_top_n=7, min_size=1)))
    net = _net(text)
    net.blobs["gt_persons"].data[...] = [[0, 10, 10, 30, 50], [1, 20, 5, 40, 60]]
    net.blobs["gt_faces"].data[...] = [[0, 15, 12, 25, 22]]
    net.blobs["im_info"].data[...] = [[65, 65, 1], [65, 65, 1]]
    rng = np.random.default_rng(0)
    net.blobs["score"].data[...] = rng.uniform(0, 1, net.blobs["score"].data.shape)
    net.blobs["bbox"].data[...] = 0
    net.forward()
    labels = net.blobs["labels"].data
    assert labels.shape == (2, 1, a * 9, 9)
    assert net.blobs["targets"].data.shape == (2, 4 * a, 9, 9)
    for i in range(2):
        assert (labels[i] == 1).sum() >= 1 and ((labels[i] >= 0).sum() <= 32)
        # outside weights: 1 / sampled anchors on sampled anchors
        out = net.blobs["outside"].data[i].reshape(a, 4, 9, 9)
        lab = labels[i, 0].reshape(a, 9, 9)
        np.testing.assert_allclose(out[:, 0][lab >= 0], 1.0 / (lab >= 0).sum(), rtol=1e-5)
    # fg anchors, taken back to (y, x, a) order, regress onto a gt box of their image
    anchors = shifted_anchors(base_anchors(SIZES, RATIOS), 9, 9, 8)
    lab0 = labels[0, 0].reshape(a, 9, 9).transpose(1, 2, 0).reshape(-1)
    assert (lab0 == 1).any()
    rois = net.blobs["rois"].data
    assert rois.shape[1] == 5 and set(rois[:, 0].astype(int)) == {0, 1}
    assert (rois[:, 0] == 0).sum() <= 7 and net.blobs["scores"].data.shape == (rois.shape[0],)
    # zero deltas: the proposals are (clipped) anchors
    for r in rois[rois[:, 0] == 0, 1:]:
        clipped = np.clip(anchors, -0.5, 64.5)
        assert np.abs(clipped - r).max(axis=1).min() < 1e-4


def test_proposal_target_and_mask_target_layers():
    text = (input_layer("rpn_rois", (3, 5)) + input_layer("gt_persons", (2, 5)) + input_layer("gt_faces", (0, 5))
            + input_layer("im_info", (1, 3)) + input_layer("gt_masks", (2, 1, 33, 33))
            + _python("pt", "proposal_target", "ProposalTargetLayer", ["rpn_rois", "gt_persons", "gt_faces", "im_info"],
                      ["rois", "labels", "t", "iw", "ow", "mask_rois", "mask_gt_index"], dict(batch_size=8, seed=1))
            + _python("mt", "mask_target", "MaskTargetLayer", ["mask_rois", "mask_gt_index", "gt_masks"],
                      ["mask_label"], dict(pooled=5)))
    net = _net(text)
    net.blobs["rpn_rois"].data[...] = [[0, 0, 0, 8, 8], [0, 2, 2, 16, 30], [0, 17, 1, 32, 31]]
    net.blobs["gt_persons"].data[...] = [[0, 2, 2, 16, 30], [0, 18, 2, 32, 30]]
    masks = np.zeros((2, 1, 33, 33), np.float32)
    masks[0, 0, 2:30, 2:16] = 4
    masks[1, 0, 2:30, 18:32] = 6
    net.blobs["gt_masks"].data[...] = masks
    net.blobs["im_info"].data[...] = [[33, 33, 1]]
    net.forward()
    labels = net.blobs["labels"].data
    assert set(labels.astype(int)) <= {0, 1} and (labels == 1).sum() >= 2      # no faces: no class 2
    mr, gi = net.blobs["mask_rois"].data, net.blobs["mask_gt_index"].data
    assert mr.shape[0] == gi.shape[0] >= 2
    np.testing.assert_array_equal(net.blobs["mask_label"].data[:, 0],
                                  mask_targets(mr, gi, masks, 5))
    assert net.blobs["ow"].data.shape == net.blobs["t"].data.shape == (labels.shape[0], 12)


def test_smooth_l1_loss_layer_value_and_gradient():
    text = (input_layer("p", (3, 4)) + input_layer("t", (3, 4)) + input_layer("w", (3, 4))
            + _python("l", "smooth_l1_loss", "SmoothL1LossLayer", ["p", "t", "w"], ["loss"], dict(sigma=1.0),
                      extra="loss_weight: 1 propagate_down: true propagate_down: false propagate_down: false"))
    net = _net(text.replace('layer { name: "p" type: "Input"', 'force_backward: true\nlayer { name: "p" type: "Input"'))
    x = np.array([[0.5, -2, 0, 0], [0, 0, 3, 0], [0.2, 0, 0, 0]], np.float32)
    net.blobs["p"].data[...] = x
    net.blobs["t"].data[...] = 0
    net.blobs["w"].data[...] = 1
    net.blobs["w"].data[2] = 0
    net.forward()
    expect = (0.125 + 1.5 + 2.5) / 3
    assert float(net.blobs["loss"].data[0]) == pytest.approx(expect, rel=1e-5)
    net.backward()
    g = np.zeros_like(x)
    g[0] = [0.5, -1, 0, 0]
    g[1, 2] = 1
    np.testing.assert_allclose(net.blobs["p"].diff, g / 3, rtol=1e-5)


def test_bad_param_str_names_the_layer():
    text = input_layer("rpn_rois", (1, 5)) + input_layer("g", (1, 5)) + input_layer("f", (0, 5)) + input_layer("i", (1, 3)) + _python(
        "pt", "proposal_target", "ProposalTargetLayer", ["rpn_rois", "g", "f", "i"],
        ["a", "b", "c", "d", "e"], dict(bogus=1))
    with pytest.raises(Exception):
        _net(text)

"""The faces of the adjusted variants' train nets (``NetConfig.train_faces``, docs/nets.md "The face
choice at test"): ground truth, the detector's own (a second, weight-shared box head on the RPN
proposals that adds no gradient) or a mix; and ``--set KEY=VALUE`` (builder.override) on the
commands. Tiny setting."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from gpsnet.nets.config import TRAIN_FACES, NetConfig, override
from gpsnet.layers.state import close_net
from gpsnet.nets.parts import BOX_HEAD_FCS

os.environ.setdefault("GLOG_minloglevel", "2")


# ------------------------------------------------------------------------------------ no pycaffe needed
def test_train_faces_is_validated():
    assert NetConfig().train_faces == NetConfig.small().train_faces == "detected"   # measured best: docs/ablation.md
    for value in TRAIN_FACES:
        assert replace(NetConfig.tiny(), train_faces=value).train_faces == value
    with pytest.raises(ValueError, match="train_faces must be one of gt, detected, mix"):
        NetConfig(train_faces="detector")


def test_override_converts_by_the_field_type():
    cfg = override(NetConfig.small(), ["train_faces=mix", "face_score_thresh=0.3", "pooled=21",
                                       "batch_norm=false", "scales=0.5,1.5", "dilations=2, 4"])
    assert (cfg.train_faces, cfg.face_score_thresh, cfg.pooled, cfg.batch_norm, cfg.scales, cfg.dilations) == \
        ("mix", 0.3, 21, False, (0.5, 1.5), (2, 4))
    assert override(NetConfig.small(), None) == override(NetConfig.small(), []) == NetConfig.small()


@pytest.mark.parametrize("items, message", [
    (["nope=1"], "unknown key 'nope'"),
    (["train_faces"], "expected KEY=VALUE"),
    (["pooled=2.5"], "pooled=2.5: expected an integer"),
    (["face_score_thresh=high"], "expected a number"),
    (["batch_norm=maybe"], "expected a boolean"),
    (["scales=1"], "expected 2 comma-separated values"),
    (["train_faces=detector"], "train_faces must be one of"),
    (["size=100"], "size must be 8k"),
])
def test_override_errors(items, message):
    with pytest.raises(ValueError, match=message):
        override(NetConfig.small(), items)


@pytest.mark.parametrize("command", ["train", "ablate", "eval"])
def test_set_errors_on_the_command_line(command, tmp_path, capsys):
    from gpsnet import cli
    argv = {"train": ["--setting", "tiny", "--out", str(tmp_path / "run")],
            "ablate": ["--setting", "tiny", "--out", str(tmp_path / "abl")],
            "eval": ["--setting", "tiny", "--weights", str(tmp_path / "w.caffemodel"), "--data", str(tmp_path)]}
    assert cli.main([command, *argv[command], "--set", "train_faces=detector"]) == 1
    assert "train_faces must be one of gt, detected, mix, got 'detector'" in capsys.readouterr().err
    assert cli.main([command, *argv[command], "--set", "no_such_field=1"]) == 1
    assert "unknown key 'no_such_field'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "abl").exists()


def test_ablate_passes_set_to_its_children():
    from gpsnet.ablate import strip_options
    argv = ["--iters", "5", "--set", "train_faces=detected", "--variants", "ad_loc", "--jobs", "2"]
    assert strip_options(argv, {"--variants", "--seeds", "--extra-seeds", "--jobs", "--data"}) == \
        ["--iters", "5", "--set", "train_faces=detected"]


def test_mix_major_faces_rule():
    from gpsnet.layers.faces import mix_major_faces
    gt = np.array([[0, 1, 1, 5, 5, 1], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], np.float32)
    det = np.array([[0, 2, 2, 9, 9, 1], [0, 3, 3, 6, 6, 1], [1, 0, 0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(mix_major_faces(gt, det), [gt[0], det[1], det[2]])
    with pytest.raises(ValueError, match="same person rois"):
        mix_major_faces(gt, det[:2])


# ------------------------------------------------------------------------------------ nets
caffe = pytest.importorskip("caffe")
needs_fork = pytest.mark.skipif("RoIAlign" not in caffe.layer_type_list(),
                                reason="the fork's C++ layers are not in pycaffe")


def _net(mode, data_root, tmp_path, variant="ad_fuse"):
    from gpsnet import train as train_mod
    from gpsnet.nets.prototxt import net_text
    text = train_mod.patch_data_layer(net_text(variant, replace(NetConfig.tiny(), train_faces=mode), True),
                                      data_root, 0)
    path = tmp_path / f"{variant}-{mode}.prototxt"
    path.write_text(text)
    caffe.set_mode_cpu()
    return caffe.Net(str(path), caffe.TRAIN)


@needs_fork
@pytest.mark.parametrize("mode", TRAIN_FACES)
def test_each_face_source_trains(mode, data_root, tmp_path):
    from gpsnet import train as train_mod
    args = train_mod.parse_args(["--variant", "ad_loc", "--setting", "tiny", "--data", str(data_root),
                                 "--iters", "4", "--lr", "0.003", "--out", str(tmp_path / "run"),
                                 "--display", "0", "--set", f"train_faces={mode}"])
    res = train_mod.train(args)
    rows = [json.loads(r) for r in res["log"].read_text().splitlines()]
    assert len(rows) == 4 and all(np.isfinite(r["total"]) for r in rows)
    text = (tmp_path / "run" / "train.prototxt").read_text()
    assert ('type: "DetectionOutput"' in text) == (mode != "gt")
    assert ("MixMajorFacesLayer" in text) == (mode == "mix")


@needs_fork
def test_only_the_adjusted_train_nets_have_a_detection_pass():
    from gpsnet.nets.prototxt import net_text
    from gpsnet.nets.variants import VARIANTS, spec_of
    gt = replace(NetConfig.small(), train_faces="gt")
    for variant in VARIANTS:   # (det_par's parser stage runs its trained detector by design: not a face source)
        if spec_of(variant).stages:
            continue
        text = net_text(variant, gt, True)
        assert "_det\"" not in text and "DetectionOutput" not in text and "fc6_box_w" not in text
        # a face source changes nothing in a variant without the adjustment
        detected = replace(NetConfig.small(), train_faces="detected")
        assert (net_text(variant, detected, True) == text) == (variant not in ("ad_loc", "ad_fuse"))


def _rows_of(blob_rows, table):
    """For each row, whether it equals (to 1e-4) a row of ``table``."""
    if table.shape[0] == 0:
        return np.zeros(len(blob_rows), bool)
    return np.array([np.abs(table - r).max(axis=1).min() < 1e-4 for r in blob_rows])


@needs_fork
def test_detected_major_faces_are_the_detections(data_root, tmp_path):
    from gpsnet.layers._common import read_blob
    net = _net("detected", data_root, tmp_path)
    try:
        valid_total = 0
        for _ in range(3):
            net.forward()
            major = net.blobs["major_faces"].data.copy()
            faces = read_blob(net.blobs["det_face_rois"], 5).copy()
            valid = major[:, 5] > 0
            valid_total += valid.sum()
            assert _rows_of(major[valid, :5], faces).all()
            # the detections come from the RPN proposals of this step, scored by the shared head
            assert net.blobs["det_face_scores"].count == faces.shape[0]
        assert valid_total > 0   # the untrained head scores every class about 1/3 >= det_score_thresh
        for name in BOX_HEAD_FCS:   # one set of weights: a change of the training head's is the pass's
            for own, det in zip(net.params[name], net.params[f"{name}_det"]):
                own.data[...] += 1.0
                np.testing.assert_array_equal(det.data, own.data)
    finally:
        close_net(net)


@needs_fork
def test_mix_prefers_the_ground_truth_faces(data_root, tmp_path):
    net = _net("mix", data_root, tmp_path)
    try:
        seen_gt = seen_det = 0
        for _ in range(3):
            net.forward()
            major = net.blobs["major_faces"].data
            gt = net.blobs["major_faces_gt"].data
            det = net.blobs["major_faces_det"].data
            has_gt = gt[:, 5] > 0
            np.testing.assert_array_equal(major[has_gt], gt[has_gt])
            np.testing.assert_array_equal(major[~has_gt], det[~has_gt])
            seen_gt += has_gt.sum()
            seen_det += (~has_gt & (det[:, 5] > 0)).sum()
        assert seen_gt > 0 and seen_det > 0
    finally:
        close_net(net)


@needs_fork
@pytest.mark.parametrize("mode", ["detected", "mix"])
def test_detection_pass_adds_no_gradient(mode, data_root, tmp_path):
    """Same weights and batch: the box head's gradients with the detection pass equal those without
    it, even with the pass's own blobs holding random diffs (a Backward run through it would
    carry them into the shared weights)."""
    ref = _net("gt", data_root, tmp_path)
    net = _net(mode, data_root, tmp_path)
    try:
        for name, blobs in ref.params.items():
            for src, dst in zip(blobs, net.params[name]):
                dst.data[...] = src.data
        ref.forward()
        net.forward()
        for k in ("loss_cls", "loss_bbox", "rpn_loss_cls"):
            assert net.blobs[k].data.reshape(-1)[0] == pytest.approx(ref.blobs[k].data.reshape(-1)[0], rel=1e-6)
        rng = np.random.default_rng(0)
        for blob in ("roi_pool_det", "fc6_box_det", "fc7_box_det", "cls_score_det", "bbox_pred_det",
                     "cls_prob_det"):
            d = net.blobs[blob].diff
            d[...] = rng.normal(size=d.shape)
        for n in (ref, net):
            for blobs in n.params.values():
                for b in blobs:
                    b.diff[...] = 0
            n.backward()
        for name in BOX_HEAD_FCS:
            for a, b in zip(ref.params[name], net.params[name]):
                assert np.abs(a.diff).sum() > 0
                np.testing.assert_allclose(b.diff, a.diff, rtol=1e-5, atol=1e-8)
    finally:
        close_net(ref)
        close_net(net)


@needs_fork
@pytest.mark.parametrize("mode", ["detected", "mix"])
def test_same_initial_weights_as_with_ground_truth_faces(mode, data_root, tmp_path):
    """The detection pass draws nothing from Caffe's RNG (its layers' weights are the training
    head's): with the same seed, every layer starts as in the ground-truth-face net, so the face
    source is the only difference of a measured run."""
    caffe.set_random_seed(5)
    ref = _net("gt", data_root, tmp_path)
    caffe.set_random_seed(5)
    net = _net(mode, data_root, tmp_path)
    try:
        assert set(ref.params) < set(net.params)
        for name, blobs in ref.params.items():
            for a, b in zip(blobs, net.params[name]):
                np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    finally:
        close_net(ref)
        close_net(net)


@needs_fork
def test_shared_layers_are_not_learnable_params_of_their_own(data_root, tmp_path):
    """The pass's layers read the training head's blobs: the solver's history and ``--weights``
    count them once (a gt-face model fills a detected-face net with nothing left at its fillers)."""
    from gpsnet.weights import load_weights, owned_params
    ref = _net("gt", data_root, tmp_path)
    net = _net("detected", data_root, tmp_path)
    try:
        assert list(owned_params(net)) == list(ref.params)
        ref.params["fc6_box"][0].data[...] = 0.25
        ref.save(str(tmp_path / "gt.caffemodel"))
        report = load_weights(net, tmp_path / "gt.caffemodel", quiet=True)
        assert report.left == [] and len(report.filled) == len(ref.params)
        assert (net.params["fc6_box_det"][0].data == 0.25).all()
    finally:
        close_net(ref)
        close_net(net)

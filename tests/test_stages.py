"""The baselines as the paper builds them (issue 10, item 4): Det.+Par. is a detector, then a
single-person parser trained on crops of the *trained* detector's boxes; Ins.+Glo. a global parser
and a Mask R-CNN-style instance net; each pair trained separately (``VariantSpec.stages``) and
combined only in the test net. ``gpsnet train --variant det_par|ins_glo`` runs the stages and merges
their weights; ``gpsnet eval`` evaluates the merged model like any other."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpsnet.detection.targets import RoiSampleConfig, match_detections

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ matching
def _rng():
    return np.random.default_rng(0)


def test_detections_matched_to_a_person_become_parser_rois():
    gt = np.array([[0, 10, 10, 50, 90], [0, 60, 10, 90, 90], [1, 5, 5, 40, 60]], np.float32)
    dets = np.array([[0, 12, 12, 50, 88],     # person 0 (IoU ~0.9)
                     [0, 58, 8, 92, 92],      # person 1
                     [0, 0, 0, 20, 20],       # nothing: dropped
                     [0, 30, 10, 70, 90],     # between 0 and 1, IoU < 0.5 with each: dropped
                     [1, 100, 100, 120, 120]], np.float32)   # image 1: no match -> its gt boxes
    rois, index = match_detections(dets, gt, 2, RoiSampleConfig(), _rng())
    np.testing.assert_array_equal(rois, [[0, 12, 12, 50, 88], [0, 58, 8, 92, 92], [1, 5, 5, 40, 60]])
    np.testing.assert_array_equal(index, [0, 1, 2])


def test_matching_samples_at_most_max_mask_rois_and_a_batch_without_persons_gets_the_dummy():
    gt = np.array([[0, 10, 10, 50, 90]], np.float32)
    dets = np.array([[0, 10 + d, 10, 50 + d, 90] for d in range(6)], np.float32)
    rois, index = match_detections(dets, gt, 1, RoiSampleConfig(max_mask_rois=3), _rng())
    assert rois.shape == (3, 5) and set(index) == {0}
    assert {tuple(r) for r in rois} <= {tuple(r) for r in dets}
    rois, index = match_detections(dets, np.zeros((0, 5), np.float32), 1, RoiSampleConfig(), _rng())
    np.testing.assert_array_equal(rois, [[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(index, [-1])


# ------------------------------------------------------------------------------------ nets
caffe = pytest.importorskip("caffe")
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from gpsnet import evaluate_net, train as train_mod  # noqa: E402
from gpsnet.nets import build_nets  # noqa: E402
from gpsnet.nets.config import NetConfig  # noqa: E402
from gpsnet.nets.graphs import build  # noqa: E402
from gpsnet.nets.prototxt import net_text  # noqa: E402
from gpsnet.nets.variants import Stage, VariantSpec  # noqa: E402
from gpsnet.weights import read_net_param  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")
TINY = NetConfig.tiny()


def _layers(text_or_proto):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text_or_proto, net)
    return {layer.name: layer for layer in net.layer}


def test_det_par_parser_stage_runs_the_trained_detector_frozen():
    det, par, test = (_layers(net_text("det_par", TINY, True, "det")), _layers(net_text("det_par", TINY, True, "par")),
                      _layers(net_text("det_par", TINY, False)))
    assert "loss_parse" not in str(det) and not any(name.startswith("par_") for name in det)
    assert any(layer.python_param.layer == "ProposalTargetLayer" for layer in det.values())
    # stage par: the detector as at test time (DetectionOutput), every one of its parameters at lr 0
    # and BatchNorm on its stored statistics; the parser learns
    assert any(layer.type == "DetectionOutput" for layer in par.values())
    assert any(layer.python_param.layer == "DetectionTargetLayer" for layer in par.values())
    assert not any(layer.python_param.layer == "ProposalTargetLayer" for layer in par.values())
    for name in det:
        if name in par and par[name].param:
            assert all(p.lr_mult == 0 and p.decay_mult == 0 for p in par[name].param), name
            if par[name].type == "BatchNorm":
                assert par[name].batch_norm_param.use_global_stats, name
    assert par["par_conv1_1"].param[0].lr_mult == 1 and not par["par_conv1_1_bn"].batch_norm_param.use_global_stats
    # the test net holds both stages' learnable layers
    learnable = {n for n, layer in test.items() if layer.param}
    assert learnable == {n for n, layer in {**det, **par}.items() if layer.param}


def test_ins_glo_is_two_nets_with_their_own_backbones():
    glo, ins, test = (_layers(net_text("ins_glo", TINY, True, "glo")), _layers(net_text("ins_glo", TINY, True, "ins")),
                      _layers(net_text("ins_glo", TINY, False)))
    assert set(glo) & set(ins) <= {"data", "input", "silence_label", "silence_unused", "class_weights"}, set(glo) & set(ins)
    assert "glo_conv1_1" in glo and "conv1_1" in ins and "conv1_1" not in glo and "mask_score" in ins
    assert {n for n, layer in test.items() if layer.param} == {n for n, layer in {**glo, **ins}.items() if layer.param}
    assert "global_prob" in test and "mask_prob" in test


@pytest.mark.parametrize("call, message", [
    (lambda: build("det_par", TINY, True), r"trains in stages \(det, par\): name the stage"),
    (lambda: build("det_par", TINY, True, "glo"), r"det_par has no stage 'glo'; its stages: det, par"),
    (lambda: build("ad_fuse", TINY, True, "det"), r"no stage 'det' \(it trains as one net\)"),
    (lambda: build("ins_glo", TINY, False, "glo"), "names a train net; the test net holds every stage"),
    (lambda: VariantSpec("x", "X", 9, local="plain", stages=(Stage("a", start_from="b"), Stage("b"))),
     "starts from 'b', which is not an earlier stage"),
    (lambda: VariantSpec("x", "X", 9, local="plain", stages=(Stage("a"), Stage("a"))), "stage names must differ"),
])
def test_stage_errors_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_build_nets_check_names_a_file_the_builder_no_longer_writes(tmp_path, capsys):
    assert build_nets.main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "det_par" / "train.prototxt").exists()
    assert (tmp_path / "det_par" / "train_det.prototxt").is_file() and (tmp_path / "det_par" / "solver_par.prototxt").is_file()
    stray = tmp_path / "det_par" / "train.prototxt"
    stray.write_text('name: "gpsnet_det_par_train"\n# the joint net of before\n')
    own = tmp_path / "det_par" / "my_ablation.prototxt"   # a user's own net: never flagged, never removed
    own.write_text('name: "my_det_par"\n')
    capsys.readouterr()
    assert build_nets.main(["--out", str(tmp_path), "--check"]) == 1
    assert f"{stray} (the builder no longer writes it: remove it)" in capsys.readouterr().out
    assert build_nets.main(["--out", str(tmp_path)]) == 0 and not stray.exists()
    assert own.read_text() == 'name: "my_det_par"\n'
    assert build_nets.main(["--out", str(tmp_path), "--check"]) == 0


def test_build_nets_keeps_a_users_copy_of_a_committed_net(tmp_path, capsys):
    """Issue 22, defect 2: a user's edited copy of a committed net keeps the builder's first line;
    it is the builder's file only under the name the builder gives it."""
    out = tmp_path / "prototxt"
    shutil.copytree(REPO / "prototxt", out)
    folder = out / "small" / "ad_fuse"
    mine = folder / "train_mine.prototxt"
    mine.write_text((folder / "train.prototxt").read_text().replace("num_output: 8\n", "num_output: 16\n", 1))
    my_solver = folder / "solver_mine.prototxt"
    my_solver.write_text((folder / "solver.prototxt").read_text().replace("/train.prototxt", "/train_mine.prototxt"))
    other = folder / "test_det_par.prototxt"   # a copy of another variant's test net
    other.write_text((out / "small" / "det_par" / "test.prototxt").read_text())
    mine_before = {p: p.read_text() for p in (mine, my_solver, other)}
    assert mine.read_text().splitlines()[0] == 'name: "gpsnet_ad_fuse_train"'
    capsys.readouterr()
    assert build_nets.main(["--out", str(out), "--check"]) == 0
    assert build_nets.main(["--out", str(out)]) == 0
    assert "removed" not in capsys.readouterr().out
    assert {p: p.read_text() for p in mine_before} == mine_before
    assert build_nets.main(["--out", str(out), "--check"]) == 0 and "remove it" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------ training
def _args(variant, data_root, out, iters, *extra):
    return train_mod.parse_args(["--variant", variant, "--setting", "tiny", "--data", str(data_root),
                                 "--iters", str(iters), "--lr", "0.003", "--out", str(out), "--display", "0", *extra])


def _blobs(path):
    return {layer.name: [np.array(b.data) for b in layer.blobs] for layer in read_net_param(path).layer if layer.blobs}


def test_det_par_trains_detector_then_parser_and_merges(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    res = train_mod.train(_args("det_par", data_root, out, 12))
    det_model = out / "det" / "snapshots" / "det_par_det_iter_12.caffemodel"
    par_model = out / "par" / "snapshots" / "det_par_par_iter_12.caffemodel"
    assert res["stages"] == {"det": det_model, "par": par_model}
    assert res["snapshot"] == out / "snapshots" / "det_par_iter_12.caffemodel"
    det, par, merged = _blobs(det_model), _blobs(par_model), _blobs(res["snapshot"])
    # the parser stage started from the trained detector and left it as it was (BatchNorm statistics too)
    for name, blobs in det.items():
        for a, b in zip(blobs, par[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert any(name.startswith("par_") for name in par)
    assert set(merged) == set(par)
    rows = [json.loads(r) for r in (out / "par" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) >= {"loss_parse"} and "loss_cls" not in rows[0]
    log = capsys.readouterr().out
    assert "stage 2/2 par" in log and "starts from stage det" in log and "merged the stages' weights" in log

    # the merged model is the variant's: the usual evaluation runs on it
    assert evaluate_net.run(evaluate_net.EvalOptions(variant="det_par", setting="tiny", weights=str(res["snapshot"]),
                                                     data=data_root, split="test", out=tmp_path / "eval")) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["num_images"] >= 1

    # the same command again: both stages are kept, nothing is trained
    before = (out / "par" / "log.jsonl").stat().st_mtime_ns
    again = train_mod.train(_args("det_par", data_root, out, 12))
    assert "stage 1/2 det: trained before" in capsys.readouterr().out
    assert (out / "par" / "log.jsonl").stat().st_mtime_ns == before and again["snapshot"] == res["snapshot"]


def test_an_interrupted_stage_resumes_when_the_command_runs_again(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    # stage glo stopped at 4 of 8 (as --time-limit or Ctrl-C leave it: a snapshot), stage ins not started
    train_mod.train(_args("ins_glo", data_root, out / "glo", 4, "--stage", "glo"))
    res = train_mod.train(_args("ins_glo", data_root, out, 8))
    assert "resumes" in capsys.readouterr().out
    rows = [json.loads(r)["iter"] for r in (out / "glo" / "log.jsonl").read_text().splitlines()]
    assert rows == list(range(8))
    merged = _blobs(res["snapshot"])
    assert "glo_conv1_1" in merged and "mask_score" in merged and "conv1_1" in merged
    np.testing.assert_array_equal(merged["glo_fc8_1"][0], _blobs(res["stages"]["glo"])["glo_fc8_1"][0])
    np.testing.assert_array_equal(merged["mask_score"][0], _blobs(res["stages"]["ins"])["mask_score"][0])

    # glo's final model gone (issue 22, defect 7): glo resumes from its snapshot at 4, ins is kept
    ins_log = (out / "ins" / "log.jsonl").stat().st_mtime_ns
    res["stages"]["glo"].unlink()
    capsys.readouterr()
    again = train_mod.train(_args("ins_glo", data_root, out, 8))
    log = capsys.readouterr().out
    assert "stage 1/2 glo: run folder" in log and "resumes" in log and "ins_glo_glo_iter_4.solverstate" in log
    assert "stage 2/2 ins: trained before" in log and (out / "ins" / "log.jsonl").stat().st_mtime_ns == ins_log
    assert again["stages"]["glo"].is_file() and [json.loads(r)["iter"] for r in
                                                 (out / "glo" / "log.jsonl").read_text().splitlines()] == list(range(8))


def _iters(log):
    return [json.loads(r)["iter"] for r in log.read_text().splitlines()]


def test_a_kill_during_stage_par_keeps_det_and_the_same_command_continues(data_root, tmp_path, capsys):
    """Issue 22, defect 7: SIGKILL in stage par before its first snapshot; the same command again said
    "<out>/par already holds a run" (and --overwrite retrained det). Deleted det snapshots too."""
    out = tmp_path / "run"
    argv = ["--variant", "det_par", "--setting", "tiny", "--data", str(data_root), "--iters", "8", "--lr", "0.003",
            "--out", str(out), "--display", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "gpsnet.cli", "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    par_log = out / "par" / "log.jsonl"
    deadline = time.time() + 300
    while not (par_log.is_file() and len(par_log.read_text().splitlines()) >= 1):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    det_model = out / "det" / "snapshots" / "det_par_det_iter_8.caffemodel"
    det_bytes = det_model.read_bytes()
    assert len(_iters(par_log)) < 8 and not list((out / "par" / "snapshots").glob("*.caffemodel"))

    assert train_mod.main(argv) == 0
    log = capsys.readouterr().out
    assert "stage 1/2 det: trained before" in log
    assert "stage 2/2 par: run folder" in log and "trained from its start: its run stopped before its first snapshot" in log
    assert det_model.read_bytes() == det_bytes and _iters(par_log) == list(range(8))
    merged = out / "snapshots" / "det_par_iter_8.caffemodel"
    np.testing.assert_array_equal(_blobs(merged)["par_fc8_1"][0],
                                  _blobs(out / "par" / "snapshots" / "det_par_par_iter_8.caffemodel")["par_fc8_1"][0])

    # det's snapshots deleted: det trains from its start, and par after it (its frozen copy of det was the old one)
    for f in (out / "det" / "snapshots").iterdir():
        f.unlink()
    assert train_mod.main(argv) == 0
    log = capsys.readouterr().out
    assert "stage 1/2 det: run folder" in log and "trained from its start: its run stopped" in log
    assert "stage 2/2 par: run folder" in log and "trained from its start: stage det was trained again" in log
    assert det_model.is_file() and _iters(out / "det" / "log.jsonl") == _iters(par_log) == list(range(8))
    for name, blobs in _blobs(det_model).items():   # par holds the new det
        np.testing.assert_array_equal(blobs[0], _blobs(merged)[name][0], err_msg=name)


def test_a_later_stage_without_weights_is_warned(data_root, tmp_path, capsys):
    train_mod.train(_args("det_par", data_root, tmp_path / "par", 1, "--stage", "par"))
    assert "stage par of det_par starts from stage det's trained weights" in capsys.readouterr().err


def test_stage_options_are_checked(data_root, tmp_path):
    with pytest.raises(ValueError, match="no stage 'det'"):
        train_mod.train(_args("ad_fuse", data_root, tmp_path / "a", 2, "--stage", "det"))
    with pytest.raises(ValueError, match=r"--resume: det_par trains in stages \(det, par\)"):
        train_mod.train(_args("det_par", data_root, tmp_path / "b", 2, "--resume", str(tmp_path / "x.solverstate")))
    assert train_mod.main(["--variant", "det_par", "--stage", "nope", "--setting", "tiny", "--data", str(data_root),
                           "--out", str(tmp_path / "c")]) == 1

"""Every variant (tiny setting: 65-px canvas, channel multiplier 1/16, P = 11) builds, runs forward
and backward, trains (the loss goes down), resumes exactly, and its test net parses an image; the
variants trained in stages (det_par, ins_glo) do so for every stage's train net (tests/test_stages.py
trains them whole). The committed prototxts equal the builder's output."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from gpsnet.drawnet import committed_nets  # noqa: E402
from gpsnet.nets.build_nets import main as build_main  # noqa: E402
from gpsnet.nets.config import NetConfig  # noqa: E402
from gpsnet.nets.prototxt import net_text  # noqa: E402
from gpsnet.nets.variants import VARIANTS, spec_of  # noqa: E402
from gpsnet import train as train_mod  # noqa: E402
from gpsnet.layers.state import close_net  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GLOG_minloglevel", "2")


# Every train net: (variant, stage), stage None for the variants trained as one net.
TRAIN_NETS = [(v, stage) for v in VARIANTS for stage in spec_of(v).train_stages]
# The first layer that stage trains (a stage starting from another keeps that one's layers frozen).
FIRST_TRAINED = {("det_par", "par"): "par_conv1_1", ("ins_glo", "glo"): "glo_conv1_1"}


def test_committed_prototxts_match_builder():
    assert build_main(["--out", str(REPO / "prototxt"), "--check"]) == 0


# What a test / deploy net hands back (prototxt.py's parse outputs, the Ins.+Glo. masks).
PARSE_OUTPUTS = {"global_prob", "person_scores", "face_rois", "face_scores", "parse_prob", "mask_prob"}


def _net_outputs(path: Path) -> set[str]:
    """The outputs Caffe gives the net: the tops that no later layer reads (Net::Init)."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), net)
    available: set[str] = set()
    for layer in net.layer:
        available = (available - set(layer.bottom)) | set(layer.top)
    return available


@pytest.mark.parametrize("path", [p.relative_to(REPO) for p in committed_nets(REPO)], ids=str)
def test_committed_nets_output_only_losses_or_parses(path):
    """No dangling top: `caffe train` prints every value of every net output at each display (a
    computed, unread pool5 was 150k lines a display), and the work for it is wasted."""
    outputs = _net_outputs(REPO / path)
    if path.name.startswith("train"):
        assert outputs and all("loss" in o for o in outputs), sorted(outputs)
    else:
        assert outputs and outputs <= PARSE_OUTPUTS, sorted(outputs - PARSE_OUTPUTS)


@pytest.mark.parametrize("variant, stage", TRAIN_NETS)
def test_forward_backward(variant, stage, data_root, tmp_path):
    text = train_mod.patch_data_layer(net_text(variant, NetConfig.tiny(), True, stage), data_root, 0)
    path = tmp_path / "train.prototxt"
    path.write_text(text)
    caffe.set_mode_cpu()
    net = caffe.Net(str(path), caffe.TRAIN)
    out = net.forward()
    losses = {k: float(v.reshape(-1)[0]) for k, v in out.items() if "loss" in k}
    assert losses and all(np.isfinite(v) for v in losses.values()), losses
    net.backward()
    grad = np.abs(net.params[FIRST_TRAINED.get((variant, stage), "conv1_1")][0].diff).sum()
    assert np.isfinite(grad) and grad > 0
    if variant in ("ad_fuse", "ad_loc"):
        assert net.blobs["adjusted_rois"].data.shape == net.blobs["mask_rois"].data.shape
    close_net(net)


def _train(variant, data_root, out, iters, extra=()):
    args = train_mod.parse_args(["--variant", variant, "--setting", "tiny", "--data", str(data_root),
                                 "--iters", str(iters), "--lr", "0.003", "--out", str(out),
                                 "--display", "0", *extra])
    return train_mod.train(args)


def _rows(log: Path) -> list[dict]:
    return [json.loads(r) for r in log.read_text().splitlines()]


@pytest.mark.parametrize("variant, stage", TRAIN_NETS)
def test_training_lowers_the_loss(variant, stage, data_root, tmp_path):
    # a stage's detector losses fall slower than a joint net's parsing losses: 100 steps (ins: 0.82)
    iters = 100 if stage else 60
    res = _train(variant, data_root, tmp_path / "run", iters, extra=("--stage", stage) if stage else ())
    total = [r["total"] for r in _rows(res["log"])]
    assert len(total) == iters
    assert np.mean(total[-10:]) < 0.85 * np.mean(total[:10]), total
    assert (res["out"] / "loss.png").is_file() and res["snapshot"].is_file()


def test_resume_matches_uninterrupted_run(data_root, tmp_path):
    full = _train("ad_fuse", data_root, tmp_path / "full", 8)
    _train("ad_fuse", data_root, tmp_path / "part", 4, extra=("--snapshot-every", "4"))
    state = tmp_path / "part" / "snapshots" / "ad_fuse_iter_4.solverstate"
    assert state.is_file()
    resumed = _train("ad_fuse", data_root, tmp_path / "part", 8, extra=("--resume", str(state)))
    a, b = _rows(full["log"]), _rows(resumed["log"])
    assert [r["iter"] for r in b] == list(range(8))
    for ra, rb in zip(a, b):
        for k in ra:
            if k.startswith("loss") or k == "total":
                assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), (ra["iter"], k)
    na = caffe.Net(str(tmp_path / "full" / "train.prototxt"), str(full["snapshot"]), caffe.TEST)
    nb = caffe.Net(str(tmp_path / "part" / "train.prototxt"), str(resumed["snapshot"]), caffe.TEST)
    for name in ("conv1_1", "fc8_1", "loc_fc8_1", "fuse_conv2", "cls_score"):
        np.testing.assert_allclose(na.params[name][0].data, nb.params[name][0].data, rtol=1e-4, atol=1e-6)
    close_net(na)
    close_net(nb)


@pytest.mark.parametrize("variant", VARIANTS)
def test_test_net_parses_an_image(variant, data_root, tmp_path):
    from gpsnet.data.layout import image_path, read_image, read_split
    from gpsnet.infer import Predictor
    pred = Predictor(variant, None, NetConfig.tiny())
    image_id = read_split(data_root, "test")[0]
    image = read_image(image_path(data_root, image_id))
    p = pred.predict(image)
    assert len(p.masks) == p.scores.shape[0] == p.boxes.shape[0] >= 1
    for m in p.masks:
        assert m.shape == image.shape[:2] and m.dtype == np.uint8 and m.max() < 20
    assert (p.global_seg is not None) == (variant in ("ad_fuse", "fuse", "ins_glo"))


def test_adam_solver_trains_and_resumes(data_root, tmp_path):
    """--solver Adam (the demo's): the solver file says so, the loss drops, and a resume repeats the run."""
    adam = ("--solver", "Adam", "--lr", "0.001")
    full = _train("ad_fuse", data_root, tmp_path / "full", 30, extra=adam)
    assert 'type: "Adam"' in (tmp_path / "full" / "solver.prototxt").read_text()
    total = [r["total"] for r in _rows(full["log"])]
    assert np.mean(total[-5:]) < 0.85 * np.mean(total[:5]), total
    _train("ad_fuse", data_root, tmp_path / "part", 4, extra=(*adam, "--snapshot-every", "4"))
    state = tmp_path / "part" / "snapshots" / "ad_fuse_iter_4.solverstate"
    resumed = _train("ad_fuse", data_root, tmp_path / "part", 8, extra=(*adam, "--resume", str(state)))
    for ra, rb in zip(_rows(full["log"])[:8], _rows(resumed["log"])):
        assert ra["total"] == pytest.approx(rb["total"], rel=1e-4, abs=1e-5), ra["iter"]

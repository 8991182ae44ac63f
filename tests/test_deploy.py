"""The Python-free deploy path (issue 17, item 4): every variant's ``deploy.prototxt`` holds only C++
layers, the fork's ``caffe time`` runs it with no Python at all, and the C++ example ``gpsnet_parse``
(caffe_layers/examples/gpsnet_parse) parses an image into the person maps that ``gpsnet infer`` gives."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from gpsnet import pretrain  # noqa: E402
from gpsnet.data.synthetic import generate_image  # noqa: E402
from gpsnet.infer import Predictor  # noqa: E402
from gpsnet.nets import init_weights as iw  # noqa: E402
from gpsnet.nets.config import NetConfig  # noqa: E402
from gpsnet.nets.variants import spec_of, variants  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARSE = Path(sys.executable).parent / "gpsnet_parse"        # linked by scripts/build_fork
CAFFE_BIN = Path(os.path.realpath(PARSE)).parent / "caffe"  # the raw tool, not .venv/bin/caffe's environment
DEPLOYS = sorted(ROOT.glob("prototxt/**/deploy.prototxt"))


def _net(path: Path) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), net)
    return net


def _no_python_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which an embedded Python cannot start (PYTHONHOME points nowhere): a net that
    still held a Python layer would abort."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GLOG_"))}
    return dict(env, PYTHONHOME=str(tmp_path / "no-python"), GLOG_logtostderr="1", GLOG_minloglevel="0",
                OPENBLAS_NUM_THREADS="1")


def test_every_variant_has_a_deploy_net_of_cpp_layers_only():
    expected = {ROOT / "prototxt" / d / v / "deploy.prototxt" for v in variants() for d in ("", "small")}
    assert set(DEPLOYS) == expected
    for path in DEPLOYS:
        net = _net(path)
        assert [layer.type for layer in net.layer if layer.type == "Python"] == [], path
        inputs = [layer.top[0] for layer in net.layer if layer.type == "Input"]
        assert inputs == ["data", "im_info"], path
        tops = {t for layer in net.layer for t in layer.top}
        variant = path.parent.name
        assert {"person_rois", "person_scores", spec_of(variant).person_output} <= tops, path


@pytest.mark.parametrize("variant", variants())
def test_small_deploy_nets_run_in_caffe_time_without_python(variant, tmp_path):
    deploy = ROOT / "prototxt" / "small" / variant / "deploy.prototxt"
    proc = subprocess.run([str(CAFFE_BIN), "time", "-model", str(deploy), "-iterations", "1"],
                          env=_no_python_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Average Forward pass" in proc.stderr


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("deploy_image")
    image, _, _ = generate_image(np.random.default_rng([5, 0]), 192, "outdoor")
    path = folder / "image.png"
    cv2.imwrite(str(path), image)
    return path, cv2.imread(str(path), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("variant", ["ad_fuse", "ins_glo"])
def test_gpsnet_parse_gives_the_person_maps_of_gpsnet_infer(variant, image_file, tmp_path):
    cfg = NetConfig.small()
    weights = tmp_path / "init.caffemodel"
    iw.init_weights(pretrain.committed_model("small"), variant, cfg, weights, log=lambda line: None)
    path, image = image_file
    folder = ROOT / "prototxt" / "small" / variant
    prefix = tmp_path / "parsed"
    proc = subprocess.run([str(PARSE), str(folder / "deploy.prototxt"), str(weights), str(path), str(prefix),
                           "--config", str(folder / "config.json")],
                          env=_no_python_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = np.loadtxt(f"{prefix}_persons.txt", ndmin=2)
    pred = Predictor(variant, str(weights), cfg).predict(image)
    assert rows.shape[0] == len(pred.masks) >= 1
    np.testing.assert_allclose(rows[:, 1], pred.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(rows[:, 2:], pred.boxes, atol=2e-3)
    for i, mask in enumerate(pred.masks):
        got = cv2.imread(f"{prefix}_person{i}.png", cv2.IMREAD_UNCHANGED)
        assert got.shape == mask.shape and got.dtype == np.uint8
        # the same float32 maps and arg-max: equal but where two classes tie to float32 rounding
        assert (got == mask).mean() >= 0.999, (variant, i)
        assert (got > 0).sum() == pytest.approx((mask > 0).sum(), rel=0.01)


def test_gpsnet_parse_names_what_is_wrong(image_file, tmp_path):
    path, _ = image_file
    folder = ROOT / "prototxt" / "small" / "ad_fuse"
    deploy, config = str(folder / "deploy.prototxt"), str(folder / "config.json")
    weights = str(pretrain.committed_model("small"))
    cases = [
        ([deploy, weights, str(tmp_path / "missing.png"), str(tmp_path / "o"), "--config", config], "cannot read image"),
        ([deploy, weights, str(path), str(tmp_path / "o"), "--mean", "1,2"], "three numbers"),
        ([deploy, weights, str(path), str(tmp_path / "o"), "--mean", "1,2,x"], "three numbers"),
        ([deploy, weights, str(path), str(tmp_path / "o"), "--config", str(path)], "mean_bgr"),
        ([deploy, weights, str(path), str(tmp_path / "o")], "usage"),
        ([deploy, weights, str(path), str(tmp_path / "o"), "--config", config, "--bogus"], "unknown option --bogus"),
        ([str(tmp_path / "none.prototxt"), weights, str(path), str(tmp_path / "o"), "--config", config], "cannot read net"),
    ]
    for args, message in cases:
        proc = subprocess.run([str(PARSE), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not list(tmp_path.glob("o_*")), args

"""The fork itself: pycaffe imports from the project's venv, the GPSNet layer types and their
parameters are compiled in, and a Python layer runs inside a net."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import caffe  # built and linked into the venv by scripts/setup
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GPSNET_TYPES = ("RoIAlign", "FaceMajoritySelect", "AdjustedRoIAlign", "AdjustBack", "SmoothL1Loss", "AnchorTarget",
                "Proposal", "DetectionOutput")


def test_pycaffe_comes_from_the_fork_build():
    path = Path(caffe.__file__).resolve()
    assert "install/python/caffe" in path.as_posix(), path


def test_gpsnet_layer_types_registered():
    types = set(caffe.layer_type_list())
    assert set(GPSNET_TYPES) <= types, sorted(set(GPSNET_TYPES) - types)
    assert "Python" in types  # pycaffe built with Python layers


def test_proto_fields_from_149():
    from caffe.proto import caffe_pb2

    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    numbers = {name: fields[name].number for name in
               ("roi_align_param", "adjusted_roi_align_param", "face_majority_select_param", "adjust_back_param",
                "smooth_l1_loss_param", "anchor_target_param", "proposal_param", "detection_output_param")}
    assert sorted(numbers.values()) == list(range(149, 157)), numbers
    p = caffe_pb2.AdjustedRoIAlignParameter()
    assert (p.pooled_h, p.pooled_w, p.face_x, p.face_y) == (41, 41, 0.5, pytest.approx(0.2))


PY_LAYER = '''
import caffe
import numpy as np

class Double(caffe.Layer):
    def setup(self, bottom, top):
        self.k = float(self.param_str or 2)
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = self.k * bottom[0].data
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.k * top[0].diff
'''


def test_python_layer_in_a_net(tmp_path, monkeypatch):
    (tmp_path / "double_layer.py").write_text(PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    net_txt = tmp_path / "net.prototxt"
    net_txt.write_text('''
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "d" type: "Python" bottom: "x" top: "y"
        python_param { module: "double_layer" layer: "Double" param_str: "3" } }
''')
    net = caffe.Net(str(net_txt), caffe.TEST)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    np.testing.assert_allclose(net.forward()["y"], 3 * x)
    net.blobs["y"].diff[...] = 1
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, 3 * np.ones_like(x))


def test_caffe_tool_runs_a_net(tmp_path):
    caffe_bin = Path(sys.executable).parent / "caffe"
    assert caffe_bin.exists(), "scripts/build_fork links the caffe tool into the venv"
    net_txt = tmp_path / "net.prototxt"
    net_txt.write_text('''
name: "tiny"
layer { name: "x" type: "DummyData" top: "x"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } data_filler { type: "gaussian" } } }
layer { name: "r" type: "DummyData" top: "rois"
        dummy_data_param { shape { dim: 1 dim: 5 } data_filler { type: "constant" value: 0 } } }
layer { name: "a" type: "RoIAlign" bottom: "x" bottom: "rois" top: "y"
        roi_align_param { pooled_h: 2 pooled_w: 2 } }
''')
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    out = subprocess.run([str(caffe_bin), "time", "-model", str(net_txt), "-iterations", "2"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Average Forward pass" in out.stderr


def test_gpsnet_cli_usage():
    out = subprocess.run([sys.executable, "-m", "gpsnet.cli", "--help"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "usage: gpsnet <command>" in out.stdout and "train" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "gpsnet.cli", "no-such-command"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


@pytest.mark.source_tree
def test_fetch_caffe_is_cached_and_verified():
    out = subprocess.run([str(ROOT / "scripts" / "fetch_caffe")], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "already at" in out.stdout
    assert "e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c" in out.stdout \
        or "99bd99795dcdf0b1d3086a8d67ab1782a8a08383" in out.stdout


def test_bench_layers_gpu_smoke_on_cpu():
    """The caffe-time benchmark (used on GPU machines without pycaffe) runs its small case here."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_layers_gpu"), "--caffe",
                          str(Path(sys.executable).parent / "caffe"), "--small", "--iters", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for layer in ("RoIAlign", "AdjustedRoIAlign", "AdjustBack", "FaceMajoritySelect"):
        rows = [l for l in out.stdout.splitlines() if f"caffe {layer} " in l]
        assert len(rows) == 2, out.stdout  # sampling_ratio 2 and 0
        fwd = float(rows[0].split()[-3])
        assert fwd == fwd and fwd >= 0  # a number, not NaN

"""The fork itself: pycaffe imports from the project's venv, the GPSNet layer types and their
parameters are compiled in, and a Python layer runs inside a net."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
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
        if self.k < 0:
            raise ValueError(f"Double asked to fail (k = {self.k})")
        top[0].data[...] = self.k * bottom[0].data
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.k * top[0].diff
'''


@pytest.fixture
def double_layer(tmp_path, monkeypatch) -> None:
    """The Python layer ``double_layer.Double`` importable by the nets of ``tmp_path``."""
    (tmp_path / "double_layer.py").write_text(PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_python_layer_in_a_net(tmp_path, double_layer):
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


def _heavy_solver(tmp_path: Path, k: float = 2.0) -> Path:
    """A solver of convolutions heavy enough to time (~0.1-0.3 s a pass on 2 cores), a Python layer
    (Double, x k: the ``double_layer`` fixture) and a loss."""
    convs = "".join(f'''
layer {{ name: "c{i}" type: "Convolution" bottom: "{"x" if i == 0 else f"c{i - 1}"}" top: "c{i}"
        convolution_param {{ num_output: 64 kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}'''
                    for i in range(5))
    (tmp_path / "heavy.prototxt").write_text(f'''
layer {{ name: "x" type: "DummyData" top: "x" top: "t"
        dummy_data_param {{ shape {{ dim: 2 dim: 64 dim: 128 dim: 128 }} shape {{ dim: 2 dim: 64 dim: 128 dim: 128 }}
                           data_filler {{ type: "gaussian" }} data_filler {{ type: "constant" }} }} }}
{convs}
layer {{ name: "d" type: "Python" bottom: "c4" top: "y" python_param {{ module: "double_layer" layer: "Double" param_str: "{k}" }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }}
''')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path / "heavy.prototxt"}"\nbase_lr: 0.0001\nlr_policy: "fixed"\n'
                      f'max_iter: 10\nsnapshot_after_train: false\nsnapshot_prefix: "{tmp_path / "h"}"\n'
                      'solver_mode: CPU\n')
    return solver


def _longest_pause(call) -> tuple[float, float]:
    """(seconds ``call`` took, the longest time in it in which a spinning Python thread made no
    progress). Where the caller holds the GIL through C++ (BVLC's pycaffe), that is all of the C++
    part; where it gives the GIL up, a few scheduler time slices."""
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())
            sum(range(1000))

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        time.sleep(0.02)
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
    finally:
        stop.set()
        worker.join()
    inside = [t0] + [t for t in stamps if t0 < t < t1] + [t1]
    return t1 - t0, max(b - a for a, b in zip(inside, inside[1:]))


def test_python_threads_run_while_caffe_computes(tmp_path, double_layer):
    """The fork's pycaffe releases the GIL in Net._forward / _backward and Solver.step (patch 0009),
    so the data layer's prefetch thread runs beside the net; the Python layer, the solver's and the
    net's callbacks take it back."""
    solver = caffe.get_solver(str(_heavy_solver(tmp_path)))
    net = solver.net
    calls = {"start": 0, "gradients": 0, "layers": 0}
    solver.add_callback(lambda: calls.__setitem__("start", calls["start"] + 1),
                        lambda: calls.__setitem__("gradients", calls["gradients"] + 1))
    net.before_forward(lambda layer: calls.__setitem__("layers", calls["layers"] + 1))
    convs = list(net._layer_names).index("c4")   # the C++ layers only: a Python layer's code lets threads in
    for name, call in (("Net._forward", lambda: net._forward(0, convs)), ("Net._backward", lambda: net._backward(convs, 1)),
                       ("Solver.step", lambda: solver.step(1))):
        took, pause = _longest_pause(call)
        assert took > 0.05, f"{name} took {took:.3f} s: too short to tell"
        assert pause < 0.25 * took, f"{name}: a Python thread waited {pause:.3f} s of the {took:.3f} s Caffe computed"
    assert calls == {"start": 1, "gradients": 1, "layers": (convs + 1) + len(net.layers)}
    assert np.isfinite(net.blobs["loss"].data).all()


def test_a_python_layer_error_in_a_released_step_reaches_python(tmp_path, double_layer):
    solver = caffe.get_solver(str(_heavy_solver(tmp_path, k=-1)))
    with pytest.raises(ValueError, match="Double asked to fail"):
        solver.step(1)
    with pytest.raises(ValueError, match="Double asked to fail"):   # and again: the GIL was given back
        solver.net.forward()


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


FLT_MAX = float(np.finfo(np.float32).max)


def _max_pool_net(tmp_path: Path, shape: tuple[int, ...], geometry: tuple[int, ...], mask_top: bool) -> "caffe.Net":
    kh, kw, sh, sw, ph, pw = geometry
    tops = 'top: "y" top: "m"' if mask_top else 'top: "y"'
    dims = " ".join(f"dim: {d}" for d in shape)
    path = tmp_path / "pool.prototxt"
    path.write_text(f'name: "p" force_backward: true input: "x" input_shape {{ {dims} }}\n'
                    f'layer {{ name: "pool" type: "Pooling" bottom: "x" {tops} pooling_param {{ pool: MAX '
                    f'kernel_h: {kh} kernel_w: {kw} stride_h: {sh} stride_w: {sw} pad_h: {ph} pad_w: {pw} }} }}\n')
    caffe.set_mode_cpu()
    return caffe.Net(str(path), caffe.TRAIN)


def _max_pool_reference(x: np.ndarray, dy: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caffe's max pooling (CEIL rounding, the last window starting inside the input where padded) with
    patch 0010's rule: each window scanned row by row, a value taken where larger or NaN, index -1 where
    nothing beats -FLT_MAX; the gradient of index -1 goes nowhere. Returns (y, index, dx)."""
    n, c, h, w = x.shape
    oh, ow = -(-(h + 2 * ph - kh) // sh) + 1, -(-(w + 2 * pw - kw) // sw) + 1
    if ph or pw:
        oh -= (oh - 1) * sh >= h + ph
        ow -= (ow - 1) * sw >= w + pw
    y = np.full((n, c, oh, ow), -FLT_MAX, np.float32)
    idx = np.full((n, c, oh, ow), -1)
    for i in range(oh):
        for j in range(ow):
            for r in range(max(i * sh - ph, 0), min(i * sh - ph + kh, h)):
                for q in range(max(j * sw - pw, 0), min(j * sw - pw + kw, w)):
                    v = x[:, :, r, q]
                    take = (v > y[:, :, i, j]) | np.isnan(v)
                    y[:, :, i, j] = np.where(take, v, y[:, :, i, j])
                    idx[:, :, i, j] = np.where(take, r * w + q, idx[:, :, i, j])
    dx = np.zeros((n * c, h * w), np.float32)
    for p, (i_plane, d_plane) in enumerate(zip(idx.reshape(n * c, -1), dy.reshape(n * c, -1))):
        ok = i_plane >= 0
        np.add.at(dx[p], i_plane[ok], d_plane[ok])
    return y, idx, dx.reshape(x.shape)


def _check_max_pool(tmp_path: Path, x: np.ndarray, geometry: tuple[int, ...], mask_top: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The net's output and bottom gradient, checked against ``_max_pool_reference``."""
    net = _max_pool_net(tmp_path, x.shape, geometry, mask_top)
    net.blobs["x"].data[...] = x
    net.forward()
    dy = np.random.default_rng(1).standard_normal(net.blobs["y"].shape).astype(np.float32)
    y, idx, dx = _max_pool_reference(x, dy, *geometry)
    np.testing.assert_array_equal(net.blobs["y"].data, y)   # NaN where NaN
    if mask_top:
        np.testing.assert_array_equal(net.blobs["m"].data, idx)
    net.blobs["y"].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-6, atol=1e-6)
    return net.blobs["y"].data.copy(), net.blobs["x"].diff.copy()


def test_max_pooling_matches_numpy_on_random_geometries(tmp_path):
    """Patch 0003's row-at-a-time forward against a NumPy reference: 40 random kernels, strides and pads
    (some windows past the input in CEIL mode: upstream's index -1, whose gradient upstream's CPU
    backward wrote before the plane), ties (the first maximum wins), with and without the mask top."""
    rng = np.random.default_rng(123)
    for case in range(40):
        kh, kw = (int(k) for k in rng.integers(1, 6, 2))
        geometry = (kh, kw, *(int(s) for s in rng.integers(1, 4, 2)), int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(kh, 14)), int(rng.integers(kw, 14)))
        x = np.maximum(np.round(rng.standard_normal(shape) * 2), -1).astype(np.float32)
        _check_max_pool(tmp_path, x, geometry, mask_top=bool(case % 2))


@pytest.mark.parametrize("mask_top", [False, True])
def test_max_pooling_of_nan_or_inf_windows_keeps_the_gradient_in_its_plane(tmp_path, mask_top):
    """Patch 0010. Upstream's max pooling kept index -1 for a window where no value beats -FLT_MAX (all NaN,
    -inf), and its CPU backward then added that output's gradient before the plane: into the previous
    plane's last value, or before the buffer (a corrupted heap after a NaN). Now a NaN wins (the output is
    NaN, as PyTorch's; upstream skipped NaN) and an index of -1 sends no gradient (as the GPU's backward)."""
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((1, 3, 4, 5)) * 2).astype(np.float32)
    x[0, 1] = np.nan
    x[0, 2] = -np.inf
    x[0, 0, 3, 4] = np.nan   # one NaN in an ordinary plane: the windows holding it give NaN
    y, dx = _check_max_pool(tmp_path, x, (3, 3, 1, 1, 1, 1), mask_top)
    assert np.isnan(y[0, 1]).all() and (y[0, 2] == -FLT_MAX).all() and np.isnan(y[0, 0]).sum() == 4
    assert np.count_nonzero(dx[0, 2]) == 0 and np.count_nonzero(dx[0, 1]) > 0

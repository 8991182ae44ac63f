"""The Caffe tool path of a Caffe user (issue 12, item 1): after scripts/setup, from a folder laid out as the
repository root (the committed prototxt/ and the data root its data layer names, data/synthetic),
`.venv/bin/caffe train -solver prototxt/small/ad_fuse/solver.prototxt` trains the committed net with its
Python layers and no hand-set variables, makes the snapshot folder, stops on Ctrl-C with a snapshot, and
`caffe test` / `caffe time` run the same net."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAFFE = Path(sys.executable).parent / "caffe"
SOLVER = "prototxt/small/ad_fuse/solver.prototxt"
NET = "prototxt/small/ad_fuse/train.prototxt"
FIRST = re.compile(r"Iteration 0 \(.*\), loss = ")   # Caffe's display line of the first iteration


@pytest.fixture(scope="module")
def user_root(tmp_path_factory) -> Path:
    """A copy of the repository root's layout: prototxt/ (linked) and data/synthetic (generated)."""
    root = tmp_path_factory.mktemp("caffe_user")
    (root / "prototxt").symlink_to(ROOT / "prototxt")
    subprocess.run([sys.executable, "-m", "gpsnet.cli", "make-data", "--out", str(root / "data" / "synthetic"),
                    "--num", "6", "--size", "192"], check=True, capture_output=True, timeout=120)
    return root


def _env() -> dict[str, str]:
    # as a user's shell has it: no PYTHONPATH; glog to stderr, unbuffered, so the test can follow it
    # (in-process pycaffe users in this pytest run set GLOG_minloglevel=2: drop every inherited GLOG_)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("GLOG_")}
    return dict(env, GLOG_logtostderr="1", GLOG_logbuflevel="-1", GLOG_minloglevel="0", OPENBLAS_NUM_THREADS="1")


def test_caffe_train_committed_small_solver_stops_on_ctrl_c_with_a_snapshot(user_root):
    assert not (user_root / "snapshots").exists()
    log = user_root / "train.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(CAFFE), "train", "-solver", SOLVER], cwd=user_root, env=_env(),
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not FIRST.search(log.read_text()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert FIRST.search(log.read_text()), "no first iteration in 300 s"
        proc.send_signal(signal.SIGINT)   # Caffe's -sigint_effect stop (default): snapshot and stop
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Optimization stopped early" in text, text[-3000:]
    snaps = sorted((user_root / "snapshots" / "small" / "ad_fuse").glob("ad_fuse_iter_*.caffemodel"))
    assert snaps and snaps[0].stat().st_size > 0, text[-3000:]
    assert snaps[0].with_suffix(".solverstate").is_file()
    # the committed small solver is the CPU schedule (Adam, poly)
    assert "Iteration 0, lr = 0.002" in text and "ModuleNotFoundError" not in text

    # caffe test scores the committed net with those weights; caffe time times it
    out = subprocess.run([str(CAFFE), "test", "-model", NET, "-weights", str(snaps[0]), "-iterations", "1"],
                         cwd=user_root, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "loss_fuse =" in out.stderr
    out = subprocess.run([str(CAFFE), "time", "-model", NET, "-iterations", "1"],
                         cwd=user_root, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Average Forward-Backward" in out.stderr


def test_caffe_train_says_when_the_snapshot_folder_cannot_be_made(user_root, tmp_path):
    solver = tmp_path / "solver.prototxt"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    text = (ROOT / SOLVER).read_text().replace('snapshot_prefix: "snapshots/small/ad_fuse/ad_fuse"',
                                                f'snapshot_prefix: "{blocker}/sub/ad_fuse"')
    solver.write_text(text)
    out = subprocess.run([str(CAFFE), "train", "-solver", str(solver)], cwd=user_root, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"cannot make the snapshot folder {blocker}/sub" in out.stderr


def test_caffe_train_runs_the_two_stages_of_det_par(user_root, tmp_path):
    """The baseline trained as the paper builds it, with the committed stage solvers: the detector,
    then the parser from the detector's weights (`-weights`), the detector left as it was."""
    import numpy as np
    from gpsnet.weights import read_net_param
    models = {}
    for stage, start in (("det", None), ("par", "det")):
        committed = (ROOT / f"prototxt/small/det_par/solver_{stage}.prototxt").read_text()
        solver = tmp_path / f"solver_{stage}.prototxt"   # the committed solver, 2 iterations
        solver.write_text(re.sub(r"max_iter: \d+", "max_iter: 2", committed))
        cmd = [str(CAFFE), "train", "-solver", str(solver)] + (["-weights", str(models[start])] if start else [])
        out = subprocess.run(cmd, cwd=user_root, env=_env(), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        models[stage] = user_root / "snapshots" / "small" / "det_par" / f"det_par_{stage}_iter_2.caffemodel"
        assert models[stage].is_file(), out.stderr[-3000:]
    outputs = set(re.findall(r"Train net output #\d+: (\w+) =", out.stderr))
    assert outputs == {"loss_parse"}, outputs   # the parser's loss only: the detector is frozen, as at test
    blobs = {stage: {layer.name: [np.array(b.data) for b in layer.blobs]
                     for layer in read_net_param(path).layer if layer.blobs} for stage, path in models.items()}
    for name, det in blobs["det"].items():
        for a, b in zip(det, blobs["par"][name]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_plot_log_reads_the_caffe_train_log(user_root, tmp_path):
    """`gpsnet plot-log` on a real `caffe train` log (glog's format, what Caffe's parse_log.py reads):
    every train net output and the displayed loss, per iteration, as CSV and PNG (issue 20)."""
    import csv
    from gpsnet import plotlog
    solver = tmp_path / "solver.prototxt"   # the committed solver: 3 iterations, each displayed
    text = (ROOT / SOLVER).read_text()
    solver.write_text(re.sub(r"display: \d+", "display: 1",
                             re.sub(r"max_iter: \d+", "max_iter: 3", text.replace(
                                 'snapshot_prefix: "snapshots/small/ad_fuse/ad_fuse"',
                                 f'snapshot_prefix: "{tmp_path}/snap/ad_fuse"'))))
    log = tmp_path / "caffe_train.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(CAFFE), "train", "-solver", str(solver)], cwd=user_root, env=_env(),
                            stdout=f, stderr=subprocess.STDOUT, timeout=600).returncode
    text = log.read_text()
    assert rc == 0, text[-3000:]
    outputs = set(re.findall(r"Train net output #\d+: (\w+) =", text))
    assert {"rpn_loss_cls", "loss_cls", "loss_fuse"} <= outputs
    # displayed losses of iterations 0-2, and Caffe's closing "Iteration 3, loss = L" line
    totals = {int(i): float(v) for i, v in re.findall(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)", text)}
    assert sorted(totals) == [0, 1, 2, 3]

    run = plotlog.read_log(log)
    assert run.kind == "caffe" and set(run.loss_names()) == outputs | {"total"}
    assert [r["iter"] for r in run.losses] == [0, 1, 2, 3]
    assert [r["total"] for r in run.losses] == [totals[i] for i in (0, 1, 2, 3)]
    assert all(r["lr"] > 0 for r in run.losses[:3]) and set(run.losses[3]) == {"iter", "total"}
    assert run.curve == []

    out = tmp_path / "plots"
    assert plotlog.main([str(log), "--out", str(out)]) == 0
    with open(out / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["loss"] for r in rows} == outputs | {"total"} and len(rows) == 3 * len(outputs) + 4
    first = next(r for r in rows if r["loss"] == "loss_fuse" and r["iter"] == "0")
    assert float(first["value"]) == float(re.search(r"Train net output #\d+: loss_fuse = (\S+)", text).group(1))
    assert (out / "loss.png").stat().st_size > 0 and not (out / "curve.png").exists()


# --- bad input (issue 22, defects 5 and 12): this checkout's wrapper -------------------------------
def _tool() -> list[str]:
    """This checkout's scripts/caffe_env with the fork's binary and the venv that .venv/bin/caffe
    (written by scripts/build_fork) names: the wrapper under test, whichever checkout wrote it."""
    line = next(ln for ln in CAFFE.read_text().splitlines() if ln.startswith("exec "))
    _, _, binary, venv, _ = shlex.split(line)
    return [str(ROOT / "scripts" / "caffe_env"), binary, venv]


def _env_here() -> dict[str, str]:
    """``_env()`` keeping PYTHONPATH where set: the tool's Python layers import this checkout's
    gpsnet (the venv's editable install may be another checkout's)."""
    return dict(_env(), **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"})


@pytest.mark.parametrize("bad", ["empty", "empty after a good one", "a solver prototxt", "a SolverParameter"])
def test_caffe_weights_that_are_no_caffemodel_are_refused(bad, user_root, tmp_path):
    """(5) The tool logged "Finetuning from" such a file and trained from the fillers."""
    from caffe.proto import caffe_pb2
    good = tmp_path / "good.caffemodel"
    net = caffe_pb2.NetParameter(name="x")
    net.layer.add(name="conv1_1").blobs.add().data.extend([1.0])
    good.write_bytes(net.SerializeToString())
    named = tmp_path / "bad.caffemodel"
    named.write_bytes({"empty": b"", "empty after a good one": b"",
                       "a solver prototxt": (ROOT / SOLVER).read_bytes(),
                       "a SolverParameter": caffe_pb2.SolverParameter(base_lr=0.1, max_iter=3).SerializeToString(),
                       }[bad])
    weights = f"{good},{named}" if bad == "empty after a good one" else str(named)
    solver = tmp_path / "solver_det.prototxt"   # the committed one, 2 iterations, snapshots in tmp_path
    solver.write_text(re.sub(r"max_iter: \d+", "max_iter: 2", (ROOT / "prototxt/small/det_par/solver_det.prototxt")
                             .read_text()).replace('snapshot_prefix: "', f'snapshot_prefix: "{tmp_path}/'))
    for flag in (["-weights", weights], [f"--weights={weights}"]):
        out = subprocess.run([*_tool(), "train", "-solver", str(solver), *flag], cwd=user_root, env=_env_here(),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 1, out.stderr[-3000:]
        assert out.stderr.startswith(f"caffe: -weights {named}: "), out.stderr[-3000:]
        assert "Finetuning" not in out.stderr and not (tmp_path / "snapshots").exists()


def test_weights_check_passes_caffemodels_and_hdf5(tmp_path, capsys):
    """The check lets through what the tool reads: .caffemodel files (several joined by commas) and
    HDF5 weights (left to the tool)."""
    from caffe.proto import caffe_pb2
    from gpsnet import weights
    good = tmp_path / "good.caffemodel"
    net = caffe_pb2.NetParameter(name="x")
    net.layer.add(name="conv1_1").blobs.add().data.extend([1.0])
    good.write_bytes(net.SerializeToString())
    h5 = tmp_path / "w.h5"
    h5.write_bytes(weights.HDF5_SIGNATURE + b"\0" * 64)
    assert weights.main([f"{good},{good}", str(h5)]) == 0
    assert weights.main([str(tmp_path / "missing.caffemodel")]) == 1
    assert "caffe: -weights " in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["data/synthetic", "its lists"])
def test_caffe_train_prints_a_python_layer_error_before_the_abort(missing, tmp_path):
    """(12) Without data/synthetic (or its lists) the data layer's setup fails in the tool's
    embedded Python: its traceback is printed before Caffe's abort (which printed only
    `terminate called after throwing ... error_already_set`)."""
    (tmp_path / "prototxt").symlink_to(ROOT / "prototxt")
    words = "data/synthetic/images: missing image folder"
    if missing == "its lists":
        subprocess.run([sys.executable, "-m", "gpsnet.cli", "make-data", "--out", str(tmp_path / "data" / "synthetic"),
                        "--num", "5", "--size", "64"], check=True, capture_output=True, timeout=120)
        (tmp_path / "data" / "synthetic" / "lists" / "train.txt").unlink()
        words = "data/synthetic/lists/train.txt: missing split list"
    out = subprocess.run([*_tool(), "train", "-solver", SOLVER], cwd=tmp_path, env=_env_here(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "Python layer GPSDataLayer.setup failed:\nTraceback (most recent call last):" in out.stderr, \
        out.stderr[-3000:]
    assert words in out.stderr and out.stderr.index(words) < out.stderr.index("terminate called")

"""Faults and bad input of `gpsnet train` / `gpsnet infer` (issue 12): each test feeds the bad input
and asserts the clear error or the documented behaviour (docs/nets.md, "Faults and bad input").
Tiny setting, a few iterations; the runs that could crash the interpreter (a NaN loss) or need a
signal run in a subprocess."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

caffe = pytest.importorskip("caffe")
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from gpsnet import infer, safeio, train  # noqa: E402
from gpsnet.data import layout  # noqa: E402
from gpsnet.layers.state import close_net  # noqa: E402
from gpsnet.nets.config import setting  # noqa: E402
from gpsnet.nets.prototxt import net_param_text  # noqa: E402
from gpsnet.nets.solver import CPU_SCHEDULE  # noqa: E402
from gpsnet.weights import WeightsError, load_weights, read_net_param  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")
TINY = ["--setting", "tiny", "--display", "1", *CPU_SCHEDULE.argv()]
SIGNAL_TIMEOUT_S = 120


def _argv(data_root: Path, out: Path, *extra: str, variant: str = "loc") -> list[str]:
    return ["--variant", variant, "--data", str(data_root), "--out", str(out), *TINY, *extra]


def _train(data_root: Path, out: Path, *extra: str, variant: str = "loc") -> dict:
    return train.train(train.parse_args(_argv(data_root, out, *extra, variant=variant)))


def _cli(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpsnet.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _snapshots(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "snapshots").iterdir())


@pytest.fixture(scope="module")
def loc_run(data_root, tmp_path_factory) -> dict:
    """A finished 2-iteration loc run (weights for the loading tests)."""
    return _train(data_root, tmp_path_factory.mktemp("loc") / "run", "--iters", "2")


# --- 2. a non-finite loss ------------------------------------------------------------------------

@pytest.mark.parametrize("lr", ["-1", "-0.001", "nan", "inf", "x"])
def test_bad_learning_rates_are_rejected_up_front(lr, capsys):
    with pytest.raises(SystemExit) as exc:
        train.parse_args(["--lr", lr])
    assert exc.value.code == 2
    assert "argument --lr" in capsys.readouterr().err


def test_the_loss_guard_leaves_every_gradient_unchanged(data_root, tmp_path):
    """Caffe skips the backward pass of a loss whose blob a non-loss layer reads: the guard must not."""
    import numpy as np
    cfg = setting("tiny")
    plain = train.patch_data_layer(net_param_text("ad_fuse", cfg, True), data_root, 0)
    guarded, losses = train.add_loss_guard(plain)
    assert {"loss_cls", "loss_local", "loss_fuse", "rpn_loss_bbox"} <= set(losses)
    nets = []
    for name, text in (("plain", plain), ("guarded", guarded)):
        (tmp_path / name).write_text(text)
        caffe.set_random_seed(0)
        nets.append(caffe.Net(str(tmp_path / name), caffe.TRAIN))
    for name, blobs in nets[0].params.items():
        for i, b in enumerate(blobs):
            nets[1].params[name][i].data[...] = b.data
    for net in nets:
        net.forward()
        net.backward()
    for name, blobs in nets[0].params.items():
        for i, b in enumerate(blobs):
            np.testing.assert_array_equal(nets[1].params[name][i].diff, b.diff, err_msg=f"{name}[{i}]")
    for net in nets:
        close_net(net)


def test_a_diverging_run_stops_before_backward_and_keeps_the_good_snapshot(data_root, tmp_path):
    out = tmp_path / "run"
    proc = _cli("train", "--variant", "loc", "--setting", "tiny", "--data", str(data_root), "--out", str(out),
                "--iters", "20", "--lr", "1e6", "--snapshot-every", "1", "--display", "1")
    log, _ = proc.communicate(timeout=SIGNAL_TIMEOUT_S)
    assert proc.returncode == train.RC_NON_FINITE, log   # not 134 (double free in max-pooling backward)
    assert "non-finite loss" in log and "stopped before its backward pass" in log
    stopped_at = int(log.split("gpsnet train: iteration ")[1].split(":")[0])
    good = out / "snapshots" / f"loc_iter_{stopped_at - 1}.caffemodel"
    assert f"the last good snapshot (weights that gave a finite loss) is {good}" in log
    assert good.is_file() and good.with_suffix(".solverstate").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == stopped_at   # the finite iterations


# --- 4. disk full at snapshot time ---------------------------------------------------------------

def test_disk_full_at_snapshot_leaves_no_partial_file(data_root, tmp_path, monkeypatch):
    """Staged on another file system, the snapshot is copied in; the copy of the second one fails."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the run folder")
    monkeypatch.setattr(train, "staging_candidates", lambda out: [shm])
    out = tmp_path / "run"
    real_copy = shutil.copyfileobj
    calls = []

    def half_then_enospc(src, dst, *args):
        calls.append(1)
        if len(calls) <= 1:          # the first snapshot (iteration 1) is written whole
            return real_copy(src, dst, *args)
        dst.write(src.read(1000))    # then a partial write and a full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safeio.shutil, "copyfileobj", half_then_enospc)
    rc = train.main(_argv(data_root, out, "--iters", "2", "--snapshot-every", "1"))
    assert rc == 1 and len(calls) == 2
    first = out / "snapshots" / "loc_iter_1.caffemodel"
    assert _snapshots(out) == ["loc_iter_1.caffemodel", "loc_iter_1.solverstate"]   # no partial, no temp file
    assert read_net_param(first).layer                                                  # whole


def test_no_room_for_a_snapshot_is_an_error_before_caffe_writes(data_root, tmp_path, monkeypatch, capsys):
    """Caffe aborts on a failed write: the room is checked first, in every staging candidate."""
    out = tmp_path / "run"
    monkeypatch.setattr(safeio, "free_bytes", lambda folder: 0 if folder == out / "snapshots" else 1 << 40)
    monkeypatch.setattr(train, "staging_candidates", lambda out: [out / "snapshots"])
    assert train.main(_argv(data_root, out, "--iters", "1")) == 1
    assert f"cannot write {out / 'snapshots'}: [Errno {errno.ENOSPC} ENOSPC] No space left on device (a " \
           "snapshot needs about" in capsys.readouterr().err
    assert _snapshots(out) == []


def test_a_snapshot_staged_on_the_run_folders_disk_is_renamed(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "staging_candidates", lambda out: [out / "snapshots"])
    res = _train(data_root, tmp_path / "run", "--iters", "1")
    assert _snapshots(res["out"]) == ["loc_iter_1.caffemodel", "loc_iter_1.solverstate"]


def test_write_failed_names_the_path_and_errno(tmp_path, monkeypatch):
    target = tmp_path / "model.caffemodel"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(safeio.WriteFailed) as exc:
        safeio.atomic_write(target, boom)
    assert str(exc.value) == f"cannot write {target}: [Errno {errno.ENOSPC} ENOSPC] No space left on device"
    assert exc.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


# --- 5. signals, a data error mid-run, the split checked up front ---------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_snapshots_and_exits(sig, data_root, tmp_path):
    out = tmp_path / "run"
    proc = _cli("train", "--variant", "loc", "--setting", "tiny", "--data", str(data_root), "--out", str(out),
                "--iters", "100000", "--display", "1", *CPU_SCHEDULE.argv())
    log = out / "log.jsonl"
    deadline = time.time() + SIGNAL_TIMEOUT_S
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(sig)
    text, _ = proc.communicate(timeout=SIGNAL_TIMEOUT_S)
    assert proc.returncode == 128 + sig, text
    assert "Traceback" not in text and f"stopped by {sig.name} at iteration" in text
    it = int(text.split(" at iteration ")[1].split(";")[0])
    assert _snapshots(out) == [f"loc_iter_{it}.caffemodel", f"loc_iter_{it}.solverstate"]
    assert len(log.read_text().splitlines()) == it and (out / "loss.png").is_file()


def test_a_data_error_mid_run_snapshots_and_names_the_file(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    log = out / "log.jsonl"
    real_read = layout.read_image
    failed = []

    def fails_once_training(path, *args):   # the first read after an iteration is logged fails
        if not failed and log.is_file() and log.stat().st_size > 0:
            failed.append(path)
            raise layout.GPSDataError(f"{path}: unreadable or corrupt image")
        return real_read(path, *args)

    monkeypatch.setattr(layout, "read_image", fails_once_training)
    rc = train.main(_argv(data_root, out, "--iters", "50"))
    err = capsys.readouterr().err
    assert rc == train.RC_DATA_ERROR, err
    assert f"data error: {failed[0]}: unreadable or corrupt image" in err
    it = int(err.split("gpsnet train: iteration ")[1].split(":")[0])
    assert 0 < it < 50 and _snapshots(out) == [f"loc_iter_{it}.caffemodel", f"loc_iter_{it}.solverstate"]
    assert len(log.read_text().splitlines()) == it


def test_the_split_is_checked_up_front(data_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    victim = layout.image_path(root, layout.read_split(root, "train")[-1])
    victim.unlink()
    assert train.main(_argv(root, tmp_path / "run", "--iters", "1")) == 1
    assert str(victim) in capsys.readouterr().err
    assert not (tmp_path / "run").exists()   # nothing written before the check


# --- 6. weights are checked ------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [(b"", "empty file (0 bytes)"),
                                              (b"\xff\xfe garbage \x00" * 40, "not a Caffe .caffemodel")])
def test_empty_or_garbage_weights_are_an_error(content, message, data_root, tmp_path, capsys):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(content)
    assert train.main(_argv(data_root, tmp_path / "run", "--iters", "1", "--weights", str(bad))) == 1
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert infer.main(["--variant", "loc", "--setting", "tiny", "--weights", str(bad), "--data", str(data_root),
                       "--out", str(tmp_path / "inf")]) == 1
    assert f"{bad}: {message}" in capsys.readouterr().err


def test_weights_of_another_variant_say_what_was_left_at_fillers(loc_run, capsys):
    net = infer.Predictor("ad_fuse", None, setting("tiny")).net
    report = load_weights(net, loc_run["snapshot"])
    err = capsys.readouterr().err
    assert report.filled and report.left and set(report.filled) | set(report.left) == set(net.params)
    assert f"{len(report.left)} of {len(net.params)} learnable layers left at their fillers" in err


def test_weights_matching_no_layer_are_an_error(tmp_path):
    from caffe.proto import caffe_pb2
    param = caffe_pb2.NetParameter()
    layer = param.layer.add()
    layer.name = "not_in_this_net"
    layer.blobs.add().data.extend([1.0])
    path = tmp_path / "other.caffemodel"
    path.write_bytes(param.SerializeToString())
    net = infer.Predictor("loc", None, setting("tiny")).net
    with pytest.raises(WeightsError, match="none of the net's .* learnable layers has weights"):
        load_weights(net, path)


# --- 7. --resume ------------------------------------------------------------------------------------

def test_resume_after_the_run_folder_moved(data_root, tmp_path, capsys):
    _train(data_root, tmp_path / "run", "--iters", "2")
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    res = _train(data_root, moved, "--iters", "3", "--resume", str(moved / "snapshots" / "loc_iter_2.solverstate"))
    assert res["snapshot"] == (moved / "snapshots" / "loc_iter_3.caffemodel").resolve()
    assert "is gone; using" in capsys.readouterr().out


def test_resume_with_a_caffemodel_suggests_weights(loc_run, data_root, tmp_path, capsys):
    model = str(loc_run["snapshot"])
    assert train.main(_argv(data_root, tmp_path / "run", "--iters", "3", "--resume", model)) == 1
    assert f"pass --weights {model}" in capsys.readouterr().err


# --- 8. clear messages instead of tracebacks ---------------------------------------------------------

def test_garbage_net_and_out_on_a_file(data_root, tmp_path, capsys):
    garbage = tmp_path / "garbage.prototxt"
    garbage.write_text("this is { not a net")
    assert train.main(_argv(data_root, tmp_path / "run", "--iters", "1", "--net", str(garbage))) == 1
    assert f"--net {garbage}: not a Caffe net prototxt" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert train.main(_argv(data_root, a_file, "--iters", "1")) == 1
    assert f"--out {a_file}: a file, not a run folder" in capsys.readouterr().err


def test_infer_with_missing_weights_leaks_no_temporary_prototxt(data_root, tmp_path, monkeypatch, capsys):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(infer.tempfile, "tempdir", None)   # re-read TMPDIR
    missing = tmp_path / "missing.caffemodel"
    assert infer.main(["--variant", "loc", "--setting", "tiny", "--weights", str(missing), "--data", str(data_root),
                       "--out", str(tmp_path / "inf")]) == 1
    assert f"--weights {missing}: no such file" in capsys.readouterr().err
    infer.Predictor("loc", None, setting("tiny"))
    assert list(tmp.iterdir()) == []


def test_disk_full_writing_the_log_is_a_clear_error(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_open = Path.open

    def full_log(self, mode="r", *args, **kw):
        f = real_open(self, mode, *args, **kw)
        if self.name == "log.jsonl" and "a" in mode:
            def write(_text):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            f.write = write
        return f

    monkeypatch.setattr(Path, "open", full_log)
    assert train.main(_argv(data_root, out, "--iters", "2")) == 1
    assert f"cannot write {out / 'log.jsonl'}: [Errno {errno.ENOSPC} ENOSPC]" in capsys.readouterr().err


def test_demo_and_ablate_stop_on_a_non_finite_loss_with_a_message(data_root, tmp_path):
    for cmd, extra in (("demo", ()), ("ablate", ("--variants", "loc", "--seeds", "0", "--setting", "tiny", "--split", "val"))):
        proc = _cli(cmd, "--data", str(data_root), "--iters", "20", "--lr", "1e30", "--out", str(tmp_path / cmd),
                    *extra)
        log, _ = proc.communicate(timeout=SIGNAL_TIMEOUT_S)
        assert proc.returncode == train.RC_NON_FINITE, log
        assert f"gpsnet {cmd}: iteration" in log and "non-finite loss" in log and "Traceback" not in log

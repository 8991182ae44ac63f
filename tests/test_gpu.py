"""The GPU path's parts that run without a GPU: --gpu handling (gpsnet.device), train's time limit and
resume, and the GPU scripts' argument errors (docs/gpu.md)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpsnet import device

ROOT = Path(__file__).resolve().parents[1]


class FakeCaffe:
    __file__ = "/fake/caffe/__init__.py"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def set_mode_cpu(self) -> None:
        self.calls.append(("cpu",))

    def set_mode_gpu(self) -> None:
        self.calls.append(("gpu",))

    def set_device(self, gpu: int) -> None:
        self.calls.append(("device", gpu))


def test_use_device_cpu_by_default():
    caffe = FakeCaffe()
    device.use_device(caffe, None)
    assert caffe.calls == [("cpu",)]


def test_use_device_rejects_a_negative_id():
    with pytest.raises(ValueError, match=">= 0"):
        device.use_device(FakeCaffe(), -1)


def test_use_device_names_a_cpu_only_build(monkeypatch):
    monkeypatch.setattr(device, "loaded_cudart", lambda: None)
    caffe = FakeCaffe()
    with pytest.raises(ValueError, match="CPU_ONLY"):
        device.use_device(caffe, 0)
    assert caffe.calls == []


def test_use_device_counts_the_gpus(monkeypatch):
    monkeypatch.setattr(device, "loaded_cudart", lambda: "/x/libcudart.so.13")
    monkeypatch.setattr(device, "cuda_device_count", lambda path: 1)
    caffe = FakeCaffe()
    with pytest.raises(ValueError, match="sees 1 GPU"):
        device.use_device(caffe, 1)
    device.use_device(caffe, 0)
    assert caffe.calls == [("device", 0), ("gpu",)]


def test_loaded_cudart_follows_the_process_maps():
    # this test process has loaded no CUDA runtime unless pycaffe is a CUDA build
    found = device.loaded_cudart()
    maps = Path("/proc/self/maps").read_text()
    assert (found is not None) == ("libcudart.so" in maps)


def run_gpsnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gpsnet.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_gpu_on_this_machine_fails_clearly_before_any_work(tmp_path):
    """Without a CUDA device (or with the CPU_ONLY pycaffe) --gpu 0 is an error message, not an abort,
    and no run folder or data set is made."""
    pytest.importorskip("caffe")
    import caffe  # noqa: F401
    if device.loaded_cudart() and device.cuda_device_count(device.loaded_cudart()) > 0:
        pytest.skip("this machine has a GPU")
    res = run_gpsnet("train", "--setting", "tiny", "--gpu", "0", "--iters", "1", "--out", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert res.returncode == 1
    assert "gpsnet train: --gpu 0:" in res.stderr and ("CPU_ONLY" in res.stderr or "sees 0 GPU" in res.stderr)
    assert not (tmp_path / "run").exists()


def test_train_time_limit_then_resume_keeps_the_curve(tmp_path, data_root):
    pytest.importorskip("caffe")
    out = tmp_path / "run"
    common = ["train", "--setting", "tiny", "--data", str(data_root), "--iters", "4", "--eval-every", "2",
              "--eval-limit", "1", "--display", "0", "--out", str(out)]
    first = run_gpsnet(*common, "--time-limit", "1e-9", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "time limit: stopping at iteration 0 of 4" in first.stdout
    assert (out / "snapshots" / "ad_fuse_iter_0.solverstate").is_file()
    assert [r["iter"] for r in json.loads((out / "curve.json").read_text())] == [0]
    second = run_gpsnet(*common, "--resume", str(out / "snapshots" / "ad_fuse_iter_0.solverstate"), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (out / "snapshots" / "ad_fuse_iter_4.caffemodel").is_file()
    assert [r["iter"] for r in json.loads((out / "curve.json").read_text())] == [0, 2, 4]
    assert [json.loads(r)["iter"] for r in (out / "log.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def test_gpu_run_without_a_pack_says_so(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run"), "--pack", str(tmp_path / "none.tar.xz")],
                         env=dict(os.environ, OUT=str(tmp_path / "out")), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "no pack at" in res.stdout
    assert "no pack at" in (tmp_path / "out" / "gpu_run.log").read_text()


def test_gpu_pack_refuses_a_folder_that_is_no_cuda_build(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_pack"), "--build", str(tmp_path), str(tmp_path / "x.tar.xz")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "no built (Ninja) CUDA build" in res.stderr
    assert not (tmp_path / "x.tar.xz").exists()


def test_boost_python_patch_touches_only_boost_python_sources():
    patch = (ROOT / "scripts" / "gpu" / "boost-python-py312.patch").read_text()
    files = sorted({line.split()[1] for line in patch.splitlines() if line.startswith("+++ ")})
    assert files == ["b/src/exec.cpp", "b/src/object/class.cpp", "b/src/object/enum.cpp",
                     "b/src/object/function.cpp", "b/src/object/life_support.cpp"]
    removed = [line for line in patch.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert not any("Py_SET_TYPE" in line for line in removed)
    assert sum("Py_SET_TYPE" in line for line in added) == 6
    assert sum("Py_SET_SIZE" in line for line in added) == 2


def fake_pack(tmp_path: Path, python: str, files: list[str]) -> Path:
    import tarfile
    stage = tmp_path / "stage"
    for f in files:
        (stage / f).parent.mkdir(parents=True, exist_ok=True)
        (stage / f).write_text("")
    (stage / "MANIFEST").write_text(f"python {python}\n")
    pack = tmp_path / "pack.tar.xz"
    with tarfile.open(pack, "w:xz") as tar:
        tar.add(stage, arcname=".")
    return pack


THIS_PYTHON = f"{sys.version_info[0]}{sys.version_info[1]}"   # as gpu_run and MANIFEST write it
PACK_FILES = ["lib/libcaffe.so.1.0.0", "lib/libboost_python312.so.1.74.0", "python/caffe/__init__.py",
              "python/caffe/_caffe.so", "python/caffe/proto/caffe_pb2.py"]


def run_gpu_run(tmp_path: Path, pack: Path, steps: str = "check") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run"), "--pack", str(pack), "--steps", steps],
                          env=dict(os.environ, OUT=str(tmp_path / "out"), GPSNET_GPU_DIR=str(tmp_path / "work"),
                                   PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=60)


def test_gpu_run_names_what_a_pack_lacks(tmp_path):
    res = run_gpu_run(tmp_path, fake_pack(tmp_path, THIS_PYTHON, [f for f in PACK_FILES if not f.endswith("_caffe.so")]))
    assert res.returncode == 1
    assert "lacks python/caffe/_caffe.so" in res.stdout


def test_gpu_run_refuses_a_pack_for_another_python(tmp_path):
    res = run_gpu_run(tmp_path, fake_pack(tmp_path, "399", PACK_FILES))
    assert res.returncode == 1
    assert "for Python 399" in res.stdout


@pytest.mark.skipif(shutil.which("gcc") is None,
                    reason="makes its ELF libraries with gcc: the images have no compiler (the host's suite runs it)")
def test_gpu_run_names_libraries_neither_packed_nor_on_the_machine(tmp_path):
    """A pack whose libcaffe needs a library that scripts/gpu/device-has.txt left out but the machine
    lacks: gpu_run stops before any step, naming it (not Python's ImportError later)."""
    import tarfile
    pack = fake_pack(tmp_path, THIS_PYTHON, PACK_FILES)
    build = tmp_path / "so"
    build.mkdir()
    (build / "gone.c").write_text("int gone(void) { return 1; }\n")
    (build / "caffe.c").write_text("int gone(void);\nint caffe(void) { return gone(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(build / "libgpsnetgone.so.7"), "-Wl,-soname,libgpsnetgone.so.7",
                    str(build / "gone.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "stage" / "lib" / "libcaffe.so.1.0.0"),
                    str(build / "caffe.c"), str(build / "libgpsnetgone.so.7")], check=True)
    with tarfile.open(pack, "w:xz") as tar:
        tar.add(tmp_path / "stage", arcname=".")
    res = run_gpu_run(tmp_path, pack, "check")
    assert res.returncode == 1
    assert "neither the pack nor this machine has: libgpsnetgone.so.7" in res.stdout, res.stdout


def test_gpu_run_refuses_an_unknown_step_before_any_work(tmp_path):
    res = run_gpu_run(tmp_path, tmp_path / "none.tar.xz", "check,bench-ful")
    assert res.returncode == 2
    assert "unknown step bench-ful" in res.stderr and "bench-full-tf32" in res.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_run_says_when_a_pack_has_no_cxx_tests(tmp_path):
    res = run_gpu_run(tmp_path, fake_pack(tmp_path, THIS_PYTHON, PACK_FILES), "cxx")
    assert "the pack has no C++ tests (cxx/bin/test.testbin)" in res.stdout, res.stdout


@pytest.mark.skipif(not (ROOT / ".carry" / "gpsnet-gpu.tar.xz").is_file(), reason="no pack made here")
def test_a_made_pack_holds_a_pycaffe_free_of_python_311(tmp_path):
    """On a machine where scripts/gpu_pack ran: its _caffe.so and libcaffe need no libpython and no
    other Boost.Python than the packed one."""
    import tarfile
    with tarfile.open(ROOT / ".carry" / "gpsnet-gpu.tar.xz") as tar:
        tar.extractall(tmp_path, filter="tar")
    for f in PACK_FILES[:1] + ["python/caffe/_caffe.so"]:
        needed = subprocess.run(["readelf", "-d", str(tmp_path / f)], capture_output=True, text=True).stdout
        assert "libpython" not in needed and "boost_python311" not in needed
    manifest = (tmp_path / "MANIFEST").read_text()
    assert manifest.startswith("python 312\n")
    assert "./lib/libboost_python312.so.1.74.0" in manifest
    # gpu_run's cxx step: the build's C++ tests with their own libcaffe and what lib/ lacks
    for f in ("cxx/bin/test.testbin", "cxx/lib/libcaffe.so.1.0.0", "cxx/examples/images/cat.jpg"):
        assert f"./{f}" in manifest, f
    env = dict(os.environ, LD_LIBRARY_PATH=f"{tmp_path / 'cxx' / 'lib'}:{tmp_path / 'lib'}")
    ldd = subprocess.run(["ldd", str(tmp_path / "cxx" / "bin" / "test.testbin")], capture_output=True, text=True,
                         env=env).stdout
    assert str(tmp_path / "cxx" / "lib" / "libcaffe.so.1.0.0") in ldd, ldd


@pytest.mark.parametrize("variant, stage", [("ad_fuse", None), ("det_par", "par")])
def test_profile_script_runs_on_the_cpu(tmp_path, data_root, variant, stage):
    """scripts/gpu/profile_train.py (the device's profiler) on the tiny setting without --gpu: it once
    broke unseen when solver_text's arguments changed, so its CPU path is run here."""
    pytest.importorskip("caffe")
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu" / "profile_train.py"), "--variant", variant, "--setting", "tiny",
           "--data", str(data_root), "--warmup", "1", "--iters", "2", "--layer-iters", "1", "--out", str(out),
           *(["--stage", stage] if stage else [])]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, GLOG_minloglevel="2"))
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["variant"] == variant and result["setting"] == "tiny"


def fake_testbin_pack(tmp_path: Path) -> Path:
    """A pack whose cxx/bin/test.testbin is a script: it records each call (filter, device, the
    no-workspace variable) in $CALLS, aborts the first group's run and passes the others."""
    import tarfile
    pack = fake_pack(tmp_path, THIS_PYTHON, PACK_FILES)
    testbin = tmp_path / "stage" / "cxx" / "bin" / "test.testbin"
    testbin.parent.mkdir(parents=True)
    testbin.write_text('#!/bin/bash\necho "$1 $2 ws=${GPSNET_CUDNN_WORKSPACE_MB:-}" >> "$CALLS"\n'
                       'case "$1" in *Nms*) echo "[  FAILED  ] NmsTest.Dies (1 ms)"; kill -ABRT $$ ;; esac\n'
                       'echo "[  PASSED  ] 2 tests."\n')
    testbin.chmod(0o755)
    with tarfile.open(pack, "w:xz") as tar:
        tar.add(tmp_path / "stage", arcname=".")
    return pack


def test_gpu_run_runs_each_cxx_group_in_its_own_process(tmp_path):
    """The C++ tests go in groups, the never-run GPU code first, each its own process: one that aborts
    (a CHECK) loses its group only; the no-workspace group runs with GPSNET_CUDNN_WORKSPACE_MB=0."""
    calls = tmp_path / "calls.txt"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run"), "--pack", str(fake_testbin_pack(tmp_path)),
                          "--steps", "cxx"],
                         env=dict(os.environ, OUT=str(tmp_path / "out"), GPSNET_GPU_DIR=str(tmp_path / "work"),
                                  PYTHON=sys.executable, CALLS=str(calls)),
                         capture_output=True, text=True, timeout=120)
    lines = calls.read_text().splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("--gtest_filter=Nms*") and "-*DeathTest*" in lines[0]
    assert lines[1] == "--gtest_filter=CuDNNConvEnginesTest* 0 ws="
    assert lines[2] == "--gtest_filter=CuDNNConvEnginesTest* 0 ws=0"
    assert lines[3].startswith("--gtest_filter=CuDNN*-CuDNNConvEnginesTest*")
    assert lines[4].endswith("-*/0.*:*/1.* 0 ws=")
    out = res.stdout
    assert "-- cxx gpsnet: exit 134" in out and "[  FAILED  ] NmsTest.Dies" in out, out
    assert "-- cxx upstream: exit 0; [  PASSED  ] 2 tests." in out, out
    assert sorted(p.name for p in (tmp_path / "out").glob("cxx_*.log")) == [
        "cxx_cudnn-engines.log", "cxx_cudnn-no-workspace.log", "cxx_cudnn-upstream.log", "cxx_gpsnet.log",
        "cxx_upstream.log"]
    assert out.rstrip().endswith("s"), out   # "gpu_run: done in ..s": the log's end is not lost


def test_gpu_run_skips_what_the_budget_has_no_time_for(tmp_path):
    """A step with no time left is skipped and says so (timeout 0 would have meant: no limit)."""
    calls = tmp_path / "calls.txt"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run"), "--pack", str(fake_testbin_pack(tmp_path)),
                          "--steps", "cxx", "--budget", "3"],
                         env=dict(os.environ, OUT=str(tmp_path / "out"), GPSNET_GPU_DIR=str(tmp_path / "work"),
                                  PYTHON=sys.executable, CALLS=str(calls)),
                         capture_output=True, text=True, timeout=60)
    assert not calls.exists()
    assert res.stdout.count("gpu_run: no time left in the budget: skipped env") == 5, res.stdout

"""Bad input on the surfaces added after issue 12 (issue 22, defects 1, 3, 4, 9, 10, 15, 16, 17):
`gpsnet eval --oracle boxes` on images without a person, `gpsnet infer` on a 1 x 5000 px image, an
`eval --out` reused by another variant, `gpsnet ablate` stopped by a signal and run again, its seeds
given twice, `gpsnet demo --gpu` on a build without that GPU, negative `--limit`s. Tiny setting, a
few iterations; crashes and signals run in a subprocess (docs/nets.md "Faults and bad input",
docs/evaluation.md "Bad input")."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip("caffe")
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from gpsnet import ablate, train  # noqa: E402
from gpsnet.data import layout  # noqa: E402
from gpsnet.nets.solver import CPU_SCHEDULE  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")
TIMEOUT_S = 300
TINY = ["--setting", "tiny"]


def _cli(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpsnet.cli", *argv], capture_output=True, text=True,
                          timeout=TIMEOUT_S, **kw)


def _popen(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gpsnet.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def models(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny-setting snapshots (2 iterations) of ad_fuse, loc and det_par (trained in stages)."""
    runs = tmp_path_factory.mktemp("runs")
    return {v: train.train(train.parse_args(["--variant", v, *TINY, "--data", str(data_root), "--iters", "2",
                                             "--display", "0", "--out", str(runs / v), *CPU_SCHEDULE.argv()]))
            ["snapshot"] for v in ("ad_fuse", "loc", "det_par")}


def _eval(model: Path, variant: str, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("eval", "--variant", variant, *TINY, "--weights", str(model), "--data", str(data),
                "--split", "val", "--out", str(out), *extra)


# --- (1) --oracle boxes on images without any person -----------------------------------------------

@pytest.fixture(scope="module")
def no_person(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data set with every person of the val images emptied (all-zero annotations)."""
    root = tmp_path_factory.mktemp("no_person") / "data"
    shutil.copytree(data_root, root)
    index = layout.index_annotations(root)
    for image_id in layout.read_split(root, "val"):
        for f in layout.annotation_files(root, image_id, index):
            label = layout.read_label(f)
            cv2.imwrite(str(f), np.zeros_like(label))
    return root


@pytest.mark.parametrize("variant, extra", [("ad_fuse", ()), ("ad_fuse", ("--flip",)),
                                            ("ad_fuse", ("--oracle", "faces")), ("det_par", ("--flip",))])
def test_oracle_boxes_on_images_without_a_person(variant, extra, models, no_person, tmp_path):
    """SIGFPE before (BatchNorm over zero boxes): now no person predicted, the global parsing kept."""
    done = _eval(models[variant], variant, no_person, tmp_path / "eval", "--oracle", "boxes", *extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "person box recall at IoU 0.5: - (no person in the ground truth)" in done.stdout
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["num_predictions"] == 0 and results["num_gt_persons"] == 0
    assert (results["mIoU"] is None) == (variant == "det_par")   # Ad. Fuse's global parsing stands
    lines = (tmp_path / "eval" / "predictions" / "results.txt").read_text().splitlines()[1:]
    assert sorted(lines) == sorted(layout.read_split(no_person, "val"))   # each image, no person


# --- (3) infer on a 1 x 5000 px image ------------------------------------------------------------

def _limit_memory() -> None:   # the unfixed overlay grew to 20 GB: fail fast instead
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_infer_on_a_very_narrow_image_writes_a_bounded_overlay(models, tmp_path):
    image = tmp_path / "tall.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (5000, 1, 3), dtype=np.uint8))
    proc = subprocess.run([sys.executable, "-m", "gpsnet.cli", "infer", *TINY, "--weights", str(models["ad_fuse"]),
                           "--image", str(image), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=TIMEOUT_S, preexec_fn=_limit_memory)
    assert proc.returncode == 0, proc.stderr[-2000:]
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "tall.png"))
    assert overlay is not None and overlay.shape[0] < 6000 and overlay.shape[1] <= 2 * 2048
    assert "libpng error" not in proc.stderr


def test_an_overlay_that_cannot_be_written_is_an_error(tmp_path):
    """The success line was printed without the overlay (cv2.imwrite's False unchecked)."""
    from gpsnet.viz import write_figure
    with pytest.raises(ValueError, match=f"{tmp_path / 'x.png'}: cannot encode a 1 x 1100000 px PNG"):
        write_figure(tmp_path / "x.png", np.zeros((1_100_000, 1, 3), np.uint8))
    assert not list(tmp_path.iterdir())


# --- (4) an eval --out reused by another variant -------------------------------------------------

def test_eval_out_reused_by_a_variant_without_global_parsing(models, data_root, tmp_path):
    out = tmp_path / "eval"
    assert _eval(models["ad_fuse"], "ad_fuse", data_root, out).returncode == 0
    assert (out / "predictions" / "global_seg").is_dir()
    done = _eval(models["loc"], "loc", data_root, out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["mIoU"] is None   # not the old global_seg's
    assert not (out / "predictions" / "global_seg").exists()
    row = next(ln for ln in done.stdout.splitlines() if ln.startswith("Loc."))
    assert row.split()[-1] == "-"
    (out / "predictions" / "my notes.txt").write_text("keep")   # not a predictions folder's: refused
    done = _eval(models["loc"], "loc", data_root, out)
    assert done.returncode == 1 and "not replaced" in done.stderr and "Traceback" not in done.stderr
    assert (out / "predictions" / "my notes.txt").read_text() == "keep"


# --- (9, 10) ablate stopped by a signal, then run again ----------------------------------------------

def _ablate_args(data_root: Path, out: Path, iters: int, *extra: str) -> list[str]:
    return ["ablate", *TINY, "--data", str(data_root), "--split", "val", "--overlays", "0", "--iters", str(iters),
            "--out", str(out), *CPU_SCHEDULE.argv(), *extra]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + TIMEOUT_S
    while not (path.is_file() and text in path.read_text()):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.2)


def _processes_with(word: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and word in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ablate_jobs_passes_a_signal_on_and_leaves_no_orphans(sig, data_root, tmp_path):
    out = tmp_path / "ablation"
    proc = _popen(*_ablate_args(data_root, out, 100000, "--variants", "loc", "fuse", "--jobs", "2"))
    children: list[int] = []
    try:
        for v in ("loc", "fuse"):
            _wait_for(out / f"{v}-s0.log", "iter      0", proc)
        children = [pid for pid in _processes_with(str(out)) if pid != proc.pid]
        assert len(children) == 2
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        for pid in [proc.pid, *children]:
            if pid in _processes_with(str(out)):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, text
    assert f"gpsnet ablate: stopped by {sig.name}" in text and "run the same gpsnet ablate command again" in text
    assert "Traceback" not in text and not _processes_with(str(out))
    for v in ("loc", "fuse"):   # each child snapshotted before it stopped
        assert list((out / f"{v}-s0" / "run" / "snapshots").glob(f"{v}_iter_*.solverstate"))
        assert f"stopped by {sig.name} at iteration" in (out / f"{v}-s0.log").read_text()


def test_ablate_run_again_resumes_the_interrupted_run(data_root, tmp_path):
    # long enough that the signal sent at iteration 2 lands before the end (tens of steps of slack),
    # short enough that the rerun finishing the schedule is cheap
    iters = 40
    out = tmp_path / "ablation"
    args = _ablate_args(data_root, out, iters, "--variants", "loc")
    proc = _popen(*args)
    _wait_for(out / "loc-s0" / "run" / "log.jsonl", '"iter": 2,', proc)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 130 and "Traceback" not in text, text
    assert "--resume" not in text and "run the same gpsnet ablate command again to continue" in text
    state = next((out / "loc-s0" / "run" / "snapshots").glob("loc_iter_*.solverstate"))
    stopped_at = int(state.stem.rsplit("_iter_", 1)[1])
    assert 2 < stopped_at < iters
    done = _cli(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"ablate: loc seed 0: resumes {state}" in done.stdout
    assert state.is_file()   # kept, not deleted by a restart
    logged = [json.loads(ln)["iter"] for ln in (out / "loc-s0" / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(iters))
    assert (out / "loc-s0" / "eval" / "results.json").is_file() and (out / "ablation.md").is_file()


# --- (15) a (variant, seed) asked for twice --------------------------------------------------------

@pytest.mark.parametrize("extra", [("--seeds", "0", "0"), ("--extra-seeds", "loc:0")])
def test_ablate_refuses_a_seed_given_twice(extra, data_root, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert ablate.main(_ablate_args(data_root, out, 2, "--variants", "loc", *extra)[1:]) == 1
    assert "loc seed 0 asked for twice" in capsys.readouterr().err
    assert not out.exists()   # refused before any run


# --- (16) demo --gpu on a build without that GPU -----------------------------------------------------

def test_demo_with_a_gpu_it_cannot_use_says_so(data_root, tmp_path):
    done = _cli("demo", "--gpu", "99", "--data", str(data_root), "--iters", "1", "--out", str(tmp_path / "demo"))
    assert done.returncode == 1 and "gpsnet demo: --gpu 99: " in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# --- (17) a negative --limit ---------------------------------------------------------------------

@pytest.mark.parametrize("command, option", [("eval", "--limit"), ("infer", "--limit"), ("train", "--eval-limit"),
                                             ("demo", "--eval-limit"), ("demo", "--eval-limit-test")])
def test_a_negative_limit_is_refused(command, option, data_root):
    """`ids[:-1]`: all images but the last, silently."""
    done = _cli(command, option, "-1", "--weights", "w", "--data", str(data_root))
    assert done.returncode == 2 and f"argument {option}: must be >= 0 (0: all images), got -1" in done.stderr


def test_the_api_refuses_a_negative_limit_too(data_root):
    from gpsnet.evaluate_net import evaluate_predictor
    assert layout.first_images(["a", "b"], 0) == ["a", "b"] and layout.first_images(["a", "b"], 1) == ["a"]
    with pytest.raises(ValueError, match="--limit -1: at most N images takes N >= 0"):
        evaluate_predictor(None, data_root, "val", limit=-1)

"""The tools around learning, on real generated files (tiny setting, a few iterations): the learning
curve of `gpsnet train`, oracle evaluation and box recall of `gpsnet eval`, the resumable
`gpsnet ablate`, the demo's outputs and its readable overlays, and a run folder never replaced
by accident."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip("caffe")
pytestmark = pytest.mark.slow   # trains for minutes (pyproject markers)
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from gpsnet import ablate, demo, evaluate_net, train  # noqa: E402
from gpsnet.nets.solver import CPU_SCHEDULE  # noqa: E402
from gpsnet.viz import MIN_FIGURE_WIDTH  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")


def _train(data_root: Path, out: Path, *extra: str) -> dict:
    return train.train(train.parse_args(["--variant", "loc", "--setting", "tiny", "--data", str(data_root),
                                         "--iters", "4", "--out", str(out), "--display", "0",
                                         *CPU_SCHEDULE.argv(), *extra]))


def test_learning_curve_rows_and_plot(data_root, tmp_path):
    res = _train(data_root, tmp_path / "run", "--eval-every", "2", "--eval-limit", "2")
    rows = json.loads((tmp_path / "run" / "curve.json").read_text())
    assert [r["iter"] for r in rows] == [2, 4] and rows == res["curve"]
    for r in rows:
        assert r["split"] == "val" and r["images"] == 2
        assert 0 <= r["AP50"] <= 1 and 0 <= r["avg_AP"] <= 1 and 0 <= r["box_recall"] <= 1
    assert cv2.imread(str(tmp_path / "run" / "curve.png")) is not None
    # the CPU schedule's poly policy goes down to 0 at the last iteration
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(CPU_SCHEDULE.base_lr) and lrs == sorted(lrs, reverse=True)


def test_a_run_folder_is_not_replaced_by_accident(data_root, tmp_path):
    _train(data_root, tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a run"):
        _train(data_root, tmp_path / "run")
    assert train.main(["--variant", "loc", "--setting", "tiny", "--data", str(data_root), "--iters", "1",
                       "--out", str(tmp_path / "run"), "--display", "0"]) == 1
    _train(data_root, tmp_path / "run", "--overwrite")
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").glob("*.caffemodel")) == ["loc_iter_4.caffemodel"]


def test_eval_writes_recall_and_oracle_rows(data_root, tmp_path, capsys):
    res = _train(data_root, tmp_path / "run")
    common = ["--variant", "loc", "--setting", "tiny", "--weights", str(res["snapshot"]), "--data",
              str(data_root), "--split", "val", "--overlays", "1"]
    assert evaluate_net.main(common + ["--out", str(tmp_path / "det")]) == 0
    det = json.loads((tmp_path / "det" / "results.json").read_text())
    assert 0 <= det["box_recall"] <= 1 and det["oracle"] == []
    assert evaluate_net.main(common + ["--out", str(tmp_path / "oracle"), "--oracle", "boxes"]) == 0
    oracle = json.loads((tmp_path / "oracle" / "results.json").read_text())
    assert oracle["box_recall"] == 1.0 and oracle["oracle"] == ["boxes"]
    # one prediction per ground-truth person, each with score 1
    assert oracle["num_predictions"] == oracle["num_gt_persons"]
    assert "oracle boxes" in capsys.readouterr().out
    overlay = next((tmp_path / "oracle" / "overlays").glob("*.png"))
    assert cv2.imread(str(overlay)).shape[1] >= MIN_FIGURE_WIDTH
    # both oracles and the flip test together (issue 11's CI check)
    assert evaluate_net.main(common + ["--out", str(tmp_path / "all"), "--oracle", "boxes", "--oracle", "faces",
                                       "--flip"]) == 0
    both = json.loads((tmp_path / "all" / "results.json").read_text())
    assert both["oracle"] == ["boxes", "faces"] and both["flip"] is True and both["box_recall"] == 1.0
    assert "(oracle boxes+faces) (flip)" in capsys.readouterr().out


def test_ablate_writes_the_table_and_resumes(data_root, tmp_path, capsys):
    argv = ["--variants", "loc", "ad_loc", "--seeds", "0", "--setting", "tiny", "--iters", "2", "--data", str(data_root),
            "--split", "val", "--overlays", "0", "--out", str(tmp_path / "abl")]
    assert ablate.main(argv) == 0
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| Loc. |" in table and "| Ad. Loc. |" in table and "avg.AP" in table
    js = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert set(js["summary"]) == {"loc", "ad_loc"} and js["iters"] == 2
    assert cv2.imread(str(tmp_path / "abl" / "ablation.png")) is not None
    log = tmp_path / "abl" / "loc-s0" / "run" / "log.jsonl"
    before = log.stat().st_mtime_ns
    capsys.readouterr()
    assert ablate.main(argv + ["--extra-seeds", "loc:1"]) == 0        # resumes, adds one seed
    out = capsys.readouterr().out
    assert "loc seed 0: done before" in out and "ad_loc seed 0: done before" in out
    assert log.stat().st_mtime_ns == before
    js = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert js["summary"]["loc"]["seeds"] == 2
    assert ablate.main(argv + ["--extra-seeds", "loc"]) == 1          # bad VARIANT:SEED


def test_demo_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("GPSNET_CACHE", str(tmp_path / "cache"))
    rc = demo.main(["--iters", "2", "--num", "10", "--eval-every", "1", "--eval-limit", "1", "--overlays", "1",
                    "--out", str(tmp_path / "demo")])
    assert rc == 0
    assert (tmp_path / "demo" / "ad_fuse_init.caffemodel").is_file()   # the committed pretrained start, mapped
    run = tmp_path / "demo" / "run"
    for name in ("log.jsonl", "loss.png", "curve.json", "curve.png"):
        assert (run / name).is_file(), name
    assert [r["iter"] for r in json.loads((run / "curve.json").read_text())] == [1, 2]
    res = json.loads((tmp_path / "demo" / "eval" / "results.json").read_text())
    assert res["split"] == "test" and res["num_images"] == 2
    img = cv2.imread(str(next((tmp_path / "demo" / "eval" / "overlays").glob("*.png"))))
    assert img.shape[1] >= MIN_FIGURE_WIDTH and np.isfinite(res["avg_AP"])


def test_overfit_job_stop_kills_what_runs_and_may_be_called_again() -> None:
    """The test lanes' `pytest_sessionfinish` stops every background job, also one whose results were
    read (its pipes then closed) or whose test was interrupted while waiting."""
    import subprocess
    import sys

    from gpsnet.experiments.overfit import OverfitJob

    job = OverfitJob.__new__(OverfitJob)   # the processes only: stop() needs no data or training
    job.procs = {v: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
                 for v, code in (("done", "print('trained')"), ("running", "import time; time.sleep(120)"))}
    assert job.procs["done"].communicate()[0] == "trained\n"      # as results() reads it
    job.stop()
    job.stop()
    assert job.procs["done"].returncode == 0 and job.procs["running"].returncode == -9
    assert all(p.stdout is not None and p.stdout.closed for p in job.procs.values())


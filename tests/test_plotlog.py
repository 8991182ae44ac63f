"""gpsnet plot-log on a real log.jsonl (and curve.json) of gpsnet train, Caffe's test-net lines, several
logs together and the errors (the caffe train log itself: tests/test_caffe_tool.py); scripts/docs_figures."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

caffe = pytest.importorskip("caffe")

from gpsnet import docfigures, plotlog, train  # noqa: E402
from gpsnet.nets.solver import CPU_SCHEDULE  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")

# Caffe's lines for a solver with a test net (test_interval), as glog writes them
CAFFE_LOG = """\
I1206 10:00:00.000000  1234 solver.cpp:330] Iteration 0, Testing net (#0)
I1206 10:00:01.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.1
I1206 10:00:01.000000  1234 solver.cpp:397]     Test net output #1: loss = 2.3 (* 1 = 2.3 loss)
I1206 10:00:01.100000  1234 solver.cpp:218] Iteration 0 (0 iter/s, 1.1s/10 iters), loss = 2.31
I1206 10:00:01.100000  1234 solver.cpp:237]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I1206 10:00:01.100000  1234 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1206 10:00:02.000000  1234 solver.cpp:218] Iteration 10 (11 iter/s, 0.9s/10 iters), loss = -nan
I1206 10:00:02.000000  1234 solver.cpp:237]     Train net output #0: loss = -nan (* 1 = -nan loss)
I1206 10:00:02.000000  1234 sgd_solver.cpp:105] Iteration 10, lr = 0.01
I1206 10:00:02.500000  1234 solver.cpp:330] Iteration 20, Testing net (#0)
I1206 10:00:03.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.5
I1206 10:00:03.000000  1234 solver.cpp:397]     Test net output #1: loss = 1.5e-1 (* 1 = 0.15 loss)
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_plot_log_of_gpsnet_train(data_root, tmp_path, capsys):
    res = train.train(train.parse_args(["--variant", "loc", "--setting", "tiny", "--data", str(data_root),
                                        "--iters", "4", "--out", str(tmp_path / "run"), "--display", "0",
                                        "--eval-every", "2", "--eval-limit", "1", *CPU_SCHEDULE.argv()]))
    log = Path(res["log"])
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert (tmp_path / "run" / "loss.png").is_file()   # train draws its loss.png with plotlog
    assert plotlog.main([str(log)]) == 0
    out = tmp_path / "run" / "plots"
    rows = _rows(out / "loss.csv")
    names = [k for k in logged[0] if k not in ("iter", "lr", "time")]
    assert "total" in names and "loss_local" in names
    assert {r["loss"] for r in rows} == set(names) and len(rows) == 4 * len(names)
    for r in rows:
        assert float(r["value"]) == pytest.approx(logged[int(r["iter"])][r["loss"]])
    curve = _rows(out / "curve.csv")
    assert {(r["iter"], r["metric"]) for r in curve} >= {("2", "AP50"), ("4", "AP50"), ("4", "box_recall")}
    assert (out / "loss.png").stat().st_size > 0 and (out / "curve.png").stat().st_size > 0
    assert "gpsnet log, 4 loss rows" in capsys.readouterr().out

    # scripts/docs_figures: the overlay, loss and curve figures of a model and its run
    figs = tmp_path / "img"
    assert docfigures.main(["--weights", str(res["snapshot"]), "--variant", "loc", "--setting", "tiny",
                            "--data", str(data_root), "--split", "val", "--run", str(tmp_path / "run"),
                            "--prefix", "t", "--out", str(figs)]) == 0
    assert sorted(p.name for p in figs.iterdir()) == ["t_curve.png", "t_loss.png", "t_overlay.png"]
    import cv2
    assert cv2.imread(str(figs / "t_overlay.png")).shape[1] >= 3 * 512

    # the caffe log's test net outputs are its learning curve; two logs go into one plot
    caffe_log = tmp_path / "caffe.log"
    caffe_log.write_text(CAFFE_LOG)
    run = plotlog.read_log(caffe_log)
    assert [r["iter"] for r in run.losses] == [0, 10] and run.losses[0] == {"iter": 0, "total": 2.31, "loss": 2.31,
                                                                               "lr": 0.01}
    assert run.curve == [{"iter": 0, "accuracy": 0.1, "loss": 2.3}, {"iter": 20, "accuracy": 0.5, "loss": 0.15}]
    assert plotlog.main([str(log), str(caffe_log), "--out", str(tmp_path / "both"), "--smooth", "2"]) == 0
    both = _rows(tmp_path / "both" / "loss.csv")
    assert {r["run"] for r in both} == {"run", "caffe"}
    assert {r["run"] for r in _rows(tmp_path / "both" / "curve.csv")} == {"run", "caffe"}
    smoothed = [float(r["smoothed"]) for r in both if r["run"] == "run" and r["loss"] == "total"]
    values = [float(r["value"]) for r in both if r["run"] == "run" and r["loss"] == "total"]
    assert smoothed[1] == pytest.approx((values[0] + values[1]) / 2)


def test_plot_log_errors(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("nothing of a training here\n")
    bad = tmp_path / "log.jsonl"
    bad.write_text('{"iter": 0, "total": 1}\nnot json\n{"iter": 2, "total": 1}\n')
    for args, says in (([str(notes)], "notes.txt: no training iterations in it"),
                       ([str(tmp_path / "missing.log")], "missing.log: cannot read"),
                       ([str(bad)], "log.jsonl:2: not a JSON line")):
        assert plotlog.main(args) == 1
        assert says in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plotlog.main([str(notes), "--smooth", "0"])
    # a line cut short at the end (a run still writing) is left out, the rows before it kept
    cut = tmp_path / "cut" / "log.jsonl"
    cut.parent.mkdir()
    cut.write_text('{"iter": 0, "total": 1.0}\n{"iter": 1, "total": 0.5}\n{"iter": 2, "to')
    assert [r["iter"] for r in plotlog.read_log(cut).losses] == [0, 1]

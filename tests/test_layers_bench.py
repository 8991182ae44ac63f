"""scripts/bench_layers runs (tiny shapes, CPU) and prints every row."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("caffe")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_layers_small_runs_on_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_layers"), "--small",
                           "--iters", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for layer in ("RoIAlign", "AdjustedRoIAlign", "AdjustBack"):
        assert f"{layer}" in out and "caffe (CPU)" in out
    assert out.count("numpy reference (CPU)") == 3
    assert "torchvision" in out


def test_bench_layers_numpy_iters_0_skips_the_reference_and_iters_0_is_refused():
    bench = [sys.executable, str(ROOT / "scripts" / "bench_layers"), "--small"]
    proc = subprocess.run([*bench, "--iters", "1", "--numpy-iters", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("numpy reference (CPU)          skipped (--numpy-iters 0)") == 3
    bad = subprocess.run([*bench, "--iters", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "bench_layers: error: argument --iters: must be >= 1, got 0" in bad.stderr


def test_bench_detection_runs_and_checks_the_tops(tmp_path):
    """scripts/bench_detection (tiny setting, 2 passes): every row, both sides timed, the C++ tops
    consistent with the Python ones (exit 0), the JSON written; a bad --iters is refused."""
    out_json = tmp_path / "det.json"
    proc = subprocess.run([str(ROOT / "scripts" / "bench_detection"), "--setting", "tiny", "--iters", "2",
                           "--json", str(out_json)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for row in ("anchor targets", "proposals", "RPN box loss", "all"):
        assert f"| {row} |" in proc.stdout
    import json
    result = json.loads(out_json.read_text())
    assert result["problems"] == [] and result["gt_boxes"] > 0
    for row in result["ms"].values():
        assert row["cpp"] > 0 and row["python"] > 0 and row["cpp_min"] <= row["cpp"]
    bad = subprocess.run([str(ROOT / "scripts" / "bench_detection"), "--iters", "0"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "bench_detection: error: argument --iters: must be >= 1, got 0" in bad.stderr

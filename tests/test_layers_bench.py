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

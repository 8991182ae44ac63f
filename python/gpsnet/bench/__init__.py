"""Training-speed benchmarks: a Caffe train net's time by step and by layer kind (``caffe_profile``,
shared by scripts/gpu/profile_train.py and scripts/bench_train), the PyTorch twin of the GPSNet net
(``plan``: its layers from ``NetConfig``; ``twin``: the torch code, run by an interpreter with torch)
and the SGEMM rate that gives the GEMM bound. This package module imports nothing (the twin's
interpreter may lack NumPy 2 and pycaffe)."""
from __future__ import annotations

import time
from typing import Callable

# The conv-shaped SGEMM of the GEMM bound (docs/benchmarks.md): M output channels x N output pixels
# x K = input channels * 3 * 3 (the small setting's 64-channel 3x3 convolutions on a 96 x 96 map).
GEMM_SHAPE: tuple[int, int, int] = (64, 9216, 576)


def gemm_gflops(matmul: Callable[[], object], shape: tuple[int, int, int] = GEMM_SHAPE,
                seconds: float = 0.5, calls: int = 1) -> float:
    """GFLOPS of ``matmul()`` (``calls`` M x K by K x N single-precision products of ``shape``): the
    best of repeated calls over about ``seconds`` after one warm-up call."""
    m, n, k = shape
    matmul()
    best = float("inf")
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        matmul()
        t = time.perf_counter() - t0
        best = min(best, t)
        if t0 + t >= end:
            break
    return 2.0 * m * n * k * calls / best / 1e9


def median(xs: list[float]) -> float:
    """The median of ``xs`` (non-empty): the upper middle one of an even count, as the profiles report."""
    s = sorted(xs)
    return s[len(s) // 2]

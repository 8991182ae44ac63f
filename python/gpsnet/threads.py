"""The CPU threads of the fork's processes (docs/fork.md "CPU threads").

``OPENMP_DEFAULTS``: libgomp's idle threads spin ``GOMP_SPINCOUNT`` times at each barrier before they
sleep (300000 by default). With two of the fork's processes on the same cores (a training beside an
evaluation, two trainings, the test suite's lanes), each barrier then waits for a descheduled thread
while the other process's threads spin: a small step took 7.5 s instead of 0.25 s. With 1000 spins it
took 0.52 s beside another one, and the same time alone (docs/fork.md "CPU threads", measured).
libgomp reads its environment once, when it is loaded (``import caffe``, the caffe tool's start),
so these are defaults of the process environment set before that: by the ``gpsnet`` package's
import (every ``gpsnet`` command, the Python layers, the tests) and, for the caffe tool, by
``scripts/caffe_env`` (``shell_exports``). A value already set wins.

``thread_env(n)``: the variables that give a child process ``n`` threads (the fork's OpenMP loops,
OpenBLAS, MKL where a NumPy uses it, OpenCV's loops). The shell scripts that run on one core
(``scripts/test``'s C++ shards, ``scripts/bench_data`` / ``bench_detection`` / ``bench_eval``) take the same
variables from ``shell_exports(1)``.
"""
from __future__ import annotations

import os
import shlex
from collections.abc import MutableMapping

OPENMP_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "1000"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")


def openmp_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Sets the ``OPENMP_DEFAULTS`` that ``environ`` lacks; returns those it set."""
    missing = {k: v for k, v in OPENMP_DEFAULTS.items() if k not in environ}
    environ.update(missing)
    return missing


def thread_env(threads: int) -> dict[str, str]:
    """``THREAD_VARIABLES`` at ``threads`` (a positive count)."""
    if threads < 1:
        raise ValueError(f"threads: {threads} (at least 1)")
    return {var: str(threads) for var in THREAD_VARIABLES}


def shell_exports(threads: int | None = None) -> str:
    """``export NAME=VALUE`` lines for ``OPENMP_DEFAULTS``, with the environment's value where it had one
    (``scripts/caffe_env`` evaluates them before it starts the caffe tool), and with ``threads`` those
    of ``thread_env(threads)``."""
    openmp_defaults()
    values = {name: os.environ[name] for name in OPENMP_DEFAULTS}
    if threads is not None:
        values.update(thread_env(threads))
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


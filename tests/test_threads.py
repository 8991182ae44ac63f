"""The CPU thread settings of the fork's processes (python/gpsnet/threads.py, docs/fork.md "CPU threads"):
the OpenMP spin default reaches pycaffe's process and the caffe tool's, a value the user set wins, and
``thread_env`` gives a child its thread count."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpsnet.threads import OPENMP_DEFAULTS, THREAD_VARIABLES, openmp_defaults, shell_exports, thread_env

ROOT = Path(__file__).resolve().parents[1]


def test_openmp_defaults_fill_in_only_what_is_missing():
    env = {"GOMP_SPINCOUNT": "5", "OTHER": "x"}
    assert openmp_defaults(env) == {}
    assert env == {"GOMP_SPINCOUNT": "5", "OTHER": "x"}
    env = {"OTHER": "x"}
    assert openmp_defaults(env) == OPENMP_DEFAULTS
    assert env == {"OTHER": "x", **OPENMP_DEFAULTS}


def test_thread_env_sets_every_thread_variable():
    assert thread_env(3) == {var: "3" for var in THREAD_VARIABLES}
    assert {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"} <= set(thread_env(1))
    with pytest.raises(ValueError, match="threads: 0"):
        thread_env(0)


def _without_spin(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_DEFAULTS}
    env.update(extra)
    return env


@pytest.mark.parametrize("given, seen", [(None, OPENMP_DEFAULTS["GOMP_SPINCOUNT"]), ("7", "7")])
def test_importing_gpsnet_sets_the_spin_count_before_caffe_loads_libgomp(given, seen):
    env = _without_spin(**({"GOMP_SPINCOUNT": given} if given else {}))
    out = subprocess.run([sys.executable, "-c", "import os, gpsnet; print(os.environ['GOMP_SPINCOUNT'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == seen


def test_shell_exports_quote_the_value(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "1 0")
    assert shell_exports() == "export GOMP_SPINCOUNT='1 0'"


@pytest.mark.parametrize("given, seen", [(None, OPENMP_DEFAULTS["GOMP_SPINCOUNT"]), ("7", "7")])
def test_the_caffe_tool_wrapper_passes_the_spin_count_on(tmp_path, given, seen):
    tool = tmp_path / "caffe"
    tool.write_text('#!/bin/sh\necho "spin=$GOMP_SPINCOUNT args=$*"\n')
    tool.chmod(0o755)
    venv = Path(sys.prefix)
    env = _without_spin(**({"GOMP_SPINCOUNT": given} if given else {}))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "caffe_env"), str(tool), str(venv), "device_query"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"spin={seen} args=device_query"

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


def test_shell_exports_give_a_shell_the_thread_count():
    """``shell_exports(n)`` evaluated by bash (as scripts/test and the one-core benchmarks do) sets
    every variable of ``thread_env(n)`` and the OpenMP defaults."""
    code = "import gpsnet.threads as t; print(t.shell_exports(2))"
    names = [*THREAD_VARIABLES, *OPENMP_DEFAULTS]
    out = subprocess.run(["bash", "-c", f'eval "$("{sys.executable}" -c "{code}")"; echo '
                          + " ".join(f"${n}" for n in names)],
                         env=_without_spin(**{v: "9" for v in THREAD_VARIABLES}), capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["2"] * len(THREAD_VARIABLES) + list(OPENMP_DEFAULTS.values())


def test_the_scripts_take_the_thread_variables_from_threads_py():
    """One place for them: no script under scripts/ sets a thread variable of ``thread_env`` itself
    (scripts/image_smoke's OPENBLAS_NUM_THREADS=1, a limit for the whole smoke test, aside)."""
    setters = {}
    for script in sorted((ROOT / "scripts").iterdir()):
        if script.is_file() and script.name != "image_smoke":
            text = script.read_text(errors="replace")
            found = [v for v in THREAD_VARIABLES if f"{v}=" in text]
            if found:
                setters[script.name] = found
    assert setters == {}
    assert "shell_exports(1)" in (ROOT / "scripts" / "lib" / "venv.bash").read_text()
    for name in ("test", "bench_data", "bench_detection", "bench_eval"):
        assert "one_core" in (ROOT / "scripts" / name).read_text(), name


def _probe(tmp_path: Path, body: str, venv: Path | str) -> subprocess.CompletedProcess:
    """A script that sources scripts/lib/venv.bash as the project's scripts do, then runs body."""
    script = tmp_path / "probe"
    script.write_text(f'#!/usr/bin/env bash\n. "{ROOT / "scripts" / "lib" / "venv.bash"}"\n{body}\n')
    script.chmod(0o755)
    return subprocess.run([str(script)], env=_without_spin(GPSNET_VENV=str(venv), **{v: "9" for v in THREAD_VARIABLES}),
                          capture_output=True, text=True, timeout=60)


def test_the_scripts_venv_library_sets_one_core_and_runs_the_venvs_modules(tmp_path):
    venv = Path(sys.executable).parent.parent
    out = _probe(tmp_path, 'one_core || exit 3\necho "$VENV" ' + " ".join(f"${n}" for n in THREAD_VARIABLES)
                 + '\nvenv_module platform', venv)
    assert out.returncode == 0, out.stderr
    first, platform = out.stdout.splitlines()
    assert first.split() == [str(venv)] + ["1"] * len(THREAD_VARIABLES)
    assert platform  # the venv's python ran `-m platform`


def test_the_scripts_venv_library_names_a_missing_or_broken_venv(tmp_path):
    out = _probe(tmp_path, "echo unreachable", tmp_path / "none")
    assert (out.returncode, out.stdout) == (1, "")
    assert f"probe: no project environment at {tmp_path / 'none'}; run scripts/setup first" in out.stderr
    broken = tmp_path / "broken"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (broken / "bin" / "python").chmod(0o755)
    out = _probe(tmp_path, "one_core || exit 3\necho unreachable", broken)
    assert (out.returncode, out.stdout) == (3, "")
    assert f"probe: the Python of {broken} cannot import gpsnet; run scripts/setup" in out.stderr

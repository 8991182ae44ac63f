"""Fixtures shared by the test modules, and the suite's two lanes.

The lanes: a test module may define ``start_background(work: Path, threads: int)``, which starts its
minutes-long training (the overfit check, ``tests/test_learning.py``) and returns a job with
``results()`` and ``stop()``. Once collection is done, the selected modules' jobs start at once and
train on their share of the cores while the other tests run on the rest; the module's fixture then
waits for ``results()`` (``background_job``), and its tests run last. Each process of the suite runs with its lane's OpenMP
threads (half the cores each; the whole machine for a job whose module is all that is selected): two
processes that each take every core are many times slower (docs/fork.md "CPU threads"). A test that
compares thread counts sets them in its own subprocesses.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gpsnet.threads import thread_env

CORES = os.cpu_count() or 1
LANE_THREADS = max(1, CORES // 2)
# before any test module imports caffe (libgomp reads it once per process); the caller's value wins
for _name, _value in thread_env(LANE_THREADS).items():
    os.environ.setdefault(_name, _value)

BACKGROUND = pytest.StashKey[dict[str, Any]]()   # module name -> its started job
BACKGROUND_DIRS = pytest.StashKey[list[Path]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of modules with a ``start_background`` job run last: they wait for it."""
    items.sort(key=lambda item: hasattr(getattr(item, "module", None), "start_background"))  # stable


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Starts the ``start_background`` jobs of the selected modules."""
    modules = {m for m in (getattr(item, "module", None) for item in session.items) if m is not None}
    starters = [m for m in modules if hasattr(m, "start_background")]
    jobs: dict[str, Any] = {}
    dirs: list[Path] = []
    session.config.stash[BACKGROUND] = jobs
    session.config.stash[BACKGROUND_DIRS] = dirs
    if not starters or session.config.option.collectonly:
        return
    threads = CORES if len(starters) == len(modules) else max(1, (CORES - LANE_THREADS) // len(starters))
    signal.signal(signal.SIGTERM, _interrupt)   # a killed run (a CI timeout) still stops its jobs
    for module in sorted(starters, key=lambda m: m.__name__):
        work = Path(tempfile.mkdtemp(prefix=f"gpsnet-{module.__name__.rsplit('.', 1)[-1]}-"))
        dirs.append(work)
        try:
            jobs[module.__name__] = module.start_background(work, threads)
        except Exception as err:   # raised by the module's fixture, in its tests
            jobs[module.__name__] = err


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: pytest then ends the session, and ``pytest_sessionfinish`` stops the jobs."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Ends the jobs no test waited for (a stopped or deselected run) and removes their folders."""
    for job in session.config.stash.get(BACKGROUND, {}).values():
        if not isinstance(job, Exception):
            job.stop()
    for work in session.config.stash.get(BACKGROUND_DIRS, []):
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def background_job(request: pytest.FixtureRequest) -> Any:
    """The job this module's ``start_background`` started after collection (None where none was
    started: call it yourself); raises what starting it raised. The job stays in the stash, so
    ``pytest_sessionfinish`` stops it even when its test is interrupted while it waits."""
    job = request.config.stash.get(BACKGROUND, {}).get(request.module.__name__)
    if isinstance(job, Exception):
        raise job
    return job


@pytest.fixture(scope="session", autouse=True)
def temp_files_under_basetemp(tmp_path_factory):
    """The temporary files of the tests and of their children (those that abort on purpose leave
    theirs) go under pytest's basetemp, which pytest prunes, not into /tmp."""
    tmp = tmp_path_factory.mktemp("tmp")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
    yield tmp
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A tiny generated GPS-layout data set (10 images of 64 px, split 3:1:1), read-only for the tests."""
    from gpsnet.data.synthetic import generate_dataset
    root = tmp_path_factory.mktemp("gps64")
    generate_dataset(root, 10, size=64, seed=3)
    return root


class NetScript:
    """Runs a pycaffe script in a fresh process (so that environment variables read once per process,
    OMP_NUM_THREADS, GPSNET_CPU_CONV, take effect): ``python -c SCRIPT NET.prototxt OUT.npz``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls = 0

    def run(self, net_text: str, script: str, env: dict[str, str | None]):
        """The finished process; ``env`` values are set, a None value removes the variable."""
        import os
        import subprocess
        import sys
        self.calls += 1
        net = self.folder / f"net{self.calls}.prototxt"
        net.write_text(net_text)
        self.out = self.folder / f"out{self.calls}.npz"
        full = dict(os.environ, GLOG_minloglevel="2")
        for key, value in env.items():
            full.pop(key, None)
            if value is not None:
                full[key] = value
        return subprocess.run([sys.executable, "-c", script, str(net), str(self.out)], env=full,
                              capture_output=True, text=True, timeout=300)

    def arrays(self, net_text: str, script: str, env: dict[str, str | None]) -> dict:
        """What the script saved to OUT.npz; fails with its stderr where it failed."""
        import numpy as np
        proc = self.run(net_text, script, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return dict(np.load(self.out))


@pytest.fixture
def net_script(tmp_path) -> NetScript:
    return NetScript(tmp_path)


@pytest.fixture(scope="session")
def pycaffe_libraries() -> str:
    """``ldd`` of pycaffe's _caffe.so: the libraries the built fork loads."""
    import subprocess

    import caffe
    lib = Path(caffe.__file__).resolve().parent / "_caffe.so"
    return subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout

"""Fixtures shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import pytest


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

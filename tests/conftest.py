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

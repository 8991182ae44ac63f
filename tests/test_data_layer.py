"""GPSDataLayer through pycaffe: a tiny net whose only layer is the Python data layer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import caffe  # built and linked into the venv by scripts/setup

from gpsnet.data.batch import TOP_NAMES
from gpsnet.data.synthetic import generate_dataset


def _net(tmp_path: Path, params: dict) -> caffe.Net:
    tops = "".join(f'  top: "{t}"\n' for t in TOP_NAMES)
    proto = tmp_path / "data.prototxt"
    proto.write_text(
        'name: "gps_data"\n'
        'layer {\n  name: "data"\n  type: "Python"\n' + tops
        + '  python_param {\n    module: "gpsnet.layers.data_layer"\n    layer: "GPSDataLayer"\n'
        + f"    param_str: '{json.dumps(params)}'\n  }}\n}}\n")
    caffe.set_mode_cpu()
    return caffe.Net(str(proto), caffe.TRAIN)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("layer_data")
    generate_dataset(r, 5, 96, seed=4, scene="indoor", ratios=(3, 1, 1))
    return r


def test_layer_forward(root: Path, tmp_path: Path) -> None:
    net = _net(tmp_path, {"root": str(root), "split": "train", "batch_size": 2, "size": 97,
                          "scales": [0.75, 1.25], "prefetch": 2, "seed": 1})
    assert list(net.blobs) == list(TOP_NAMES)
    assert net.blobs["data"].data.shape == (2, 3, 97, 97)
    for _ in range(3):
        out = net.forward()
        G = out["gt_persons"].shape[0]
        assert G >= 4 and out["gt_masks"].shape == (G, 1, 97, 97)
        assert out["data"].shape == (2, 3, 97, 97) and out["im_info"].shape == (2, 3)
        assert out["label_s8"].shape == (2, 1, 13, 13)
        np.testing.assert_array_equal(out["label_s8"], out["label"][:, :, ::8, ::8])
        assert out["gt_faces"].ndim == 2 and out["gt_faces"].shape[1] == 5
        assert set(np.unique(out["gt_persons"][:, 0]).tolist()) == {0.0, 1.0}
        labels = set(np.unique(out["label"]).tolist())
        assert labels <= set(range(20)) | {255} and len(labels) > 4


def test_layer_bad_params(root: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception):  # pycaffe turns the layer's ValueError into a failed net construction
        _net(tmp_path, {"root": str(root), "size": 96})


def test_layer_zero_faces(tmp_path: Path) -> None:
    from gpsnet.data.layout import write_sample, write_split

    data = tmp_path / "noface"
    lab = np.zeros((40, 40), np.uint8)
    lab[5:30, 5:20] = 4
    write_sample(data, "a", np.full((40, 40, 3), 90, np.uint8), [lab])
    write_split(data, "train", ["a"])
    net = _net(tmp_path, {"root": str(data), "batch_size": 1, "size": 41, "scales": [1, 1]})
    out = net.forward()
    assert out["gt_faces"].shape == (0, 5) and out["gt_persons"].shape == (1, 5)
    assert out["gt_masks"].shape == (1, 1, 41, 41)

"""The sha1 of every loaded model (gpsnet.weights.model_sha1): printed by --weights loaders and
init-weights, recognised from the model cards under models/, a wrong sum of a known file named."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet import weights  # noqa: E402
from gpsnet.weights import MODELS_DIR, known_models, load_weights, model_sha1  # noqa: E402

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }
"""


def _card(folder: Path, stem: str, caffemodel: str, sha1: str) -> Path:
    card = folder / f"{stem}.md"
    card.write_text(f"---\nname: {stem} model\ncaffemodel: {caffemodel}\nsha1: {sha1}\n---\n\nabout it\n")
    return card


@pytest.fixture
def model(tmp_path) -> tuple[caffe.Net, Path]:
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    net = caffe.Net(str(proto), caffe.TEST)
    net.params["conv"][0].data[...] = np.arange(18).reshape(2, 1, 3, 3)
    path = tmp_path / "mine.caffemodel"
    net.save(str(path))
    return net, path


def test_the_committed_cards_parse():
    cards = known_models()
    assert {m.caffemodel for m in cards} >= {"VGG_ILSVRC_16_layers.caffemodel", "vgg16_20M.caffemodel",
                                             "deeplab_v2_vgg16_init.caffemodel", "deeplab_small.caffemodel"}
    # cards beside the models' folder (models/*.md) or in a model's own folder (models/<model>/readme.md)
    assert all(m.card.parent == MODELS_DIR or (m.card.parent.parent == MODELS_DIR and m.card.name == "readme.md")
               for m in cards)
    own = next(m for m in cards if m.caffemodel == "deeplab_small.caffemodel")
    assert own.sha1 is not None and own.card == MODELS_DIR / "deeplab_small" / "readme.md"


def test_sha1_printed_and_recognised(model, tmp_path, capsys, monkeypatch):
    net, path = model
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    cards = tmp_path / "cards"
    cards.mkdir()
    monkeypatch.setattr(weights, "MODELS_DIR", cards)   # the loaders read the default folder
    load_weights(net, path)
    out = capsys.readouterr()
    assert f"model {path}: sha1 {sha1} (not in the model cards)" in out.out and "warning" not in out.err

    _card(cards, "ours", "ours.caffemodel", sha1)          # a card with this sum: named, whatever the file name
    assert model_sha1(path, cards) == sha1
    assert f"sha1 {sha1} (the known model ours model (ours.md))" in capsys.readouterr().out

    (cards / "ours.md").unlink()
    card = _card(cards, "mine", "mine.caffemodel", "0" * 40)   # this file name, another sum
    load_weights(net, path)
    err = capsys.readouterr().err
    assert (f"warning: {path}: sha1 {sha1} is not the sha1 {'0' * 40} of mine.caffemodel (mine model, {card}): "
            "a corrupt or different download") in err

    card.write_text(card.read_text().replace("0" * 40, ""))   # a card without its sum yet
    model_sha1(path, cards)
    assert "records no sha1 for mine.caffemodel yet" in capsys.readouterr().out

    card.write_text(card.read_text().replace("sha1: ", "sha1: 12345"))
    with pytest.raises(ValueError, match="mine.md: sha1 '12345' is not 40 hex digits"):
        known_models(cards)

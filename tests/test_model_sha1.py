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


# ---------------------------------------------------------------------- the best small GPSNet (issue 19)
GPSNET_SMALL = MODELS_DIR / "gpsnet_small" / "gpsnet_small.caffemodel"


def _front_matter(card: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in card.read_text().split("---")[1].strip().splitlines())


def test_the_committed_gpsnet_small_matches_its_card():
    front = _front_matter(GPSNET_SMALL.parent / "readme.md")
    assert front["caffemodel"] == GPSNET_SMALL.name
    assert front["sha1"] == model_sha1(GPSNET_SMALL), "the committed model is not the one its card describes"
    assert any(m.caffemodel == GPSNET_SMALL.name and m.sha1 == front["sha1"] for m in known_models())


@pytest.mark.slow
def test_gpsnet_eval_reproduces_the_card(tmp_path):
    """gpsnet eval of the committed model on the demo's test split gives the card's table."""
    import json
    import re
    import subprocess
    import sys

    from gpsnet.train import ensure_synthetic

    root = ensure_synthetic(None, 192, 600, 0)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "gpsnet.cli", "eval", "--variant", "ad_fuse", "--small",
                           "--weights", str(GPSNET_SMALL), "--data", str(root), "--split", "test", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    card = (GPSNET_SMALL.parent / "readme.md").read_text()
    row = re.search(r"\n\| AP0\.1 \|.*\n\|[-| ]+\n\| (.+) \|\n", card).group(1).split(" | ")
    expected = dict(zip(["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "avg"], map(float, row)))
    assert result["num_images"] == 120
    for t in ("0.3", "0.5", "0.6"):
        assert abs(100 * result["AP"][t] - expected[t]) < 0.5, (t, result["AP"][t])
    assert abs(100 * result["avg_AP"] - expected["avg"]) < 0.5, result["avg_AP"]

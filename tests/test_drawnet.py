"""gpsnet draw-net (Caffe's caffe.draw with pydot and graphviz) on every committed net prototxt."""
from __future__ import annotations

import pytest

caffe = pytest.importorskip("caffe")
pytest.importorskip("pydot")

from gpsnet import drawnet  # noqa: E402


def test_draw_net_draws_every_committed_prototxt(tmp_path, capsys):
    nets = drawnet.committed_nets()
    assert len(nets) >= 28 and not any(p.name.startswith("solver") for p in nets)
    assert drawnet.main(["--committed", "--out", str(tmp_path)]) == 0
    for net in nets:
        svg = tmp_path / net.relative_to(drawnet.ROOT / "prototxt").with_suffix(".svg")
        text = svg.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text, svg
        # every layer is drawn, a Python layer under its class name
        layers = [layer.name for layer in drawnet.net_param(net).layer]
        assert all(name in text for name in layers), (net, [n for n in layers if n not in text][:5])
        assert "(Python)" not in text
    ad_fuse = (tmp_path / "ad_fuse" / "test.svg").read_text()
    assert "FaceMajoritySelect" in ad_fuse and "AdjustedRoIAlign" in ad_fuse
    assert f"-> {tmp_path}" in capsys.readouterr().out


def test_draw_net_one_file_and_errors(tmp_path, capsys):
    net = drawnet.ROOT / "prototxt" / "small" / "loc" / "test.prototxt"
    for suffix, start in ((".png", b"\x89PNG"), (".dot", b"digraph")):
        out = tmp_path / f"loc{suffix}"
        assert drawnet.main([str(net), "--out", str(out), "--phase", "TEST", "--rankdir", "LR"]) == 0
        assert out.read_bytes().startswith(start)
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { this is not a net")
    assert drawnet.main([str(bad), "--out", str(tmp_path / "bad.svg")]) == 1
    assert "not a Caffe net prototxt" in capsys.readouterr().err and not (tmp_path / "bad.svg").exists()
    with pytest.raises(SystemExit):
        drawnet.main(["--committed"])   # needs --out

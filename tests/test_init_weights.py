"""`gpsnet init-weights` (issue 10, item 3) on source models written by pycaffe with VGG-16 /
DeepLab-v2 layer names and random values: the reduction rule against NumPy indexing, every
backbone-like layer of a variant filled from its source, shapes checked, V1 files read, and
`gpsnet train --weights` starting from the written weights. Nothing is downloaded: the sources have
the tiny setting's channel multiplier (1/16), so an ImageNet fc6 is 256 x (32 x 7 x 7), not 4096 x 25088.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpsnet.nets import init_weights as iw
from gpsnet.nets.config import NetConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = NetConfig.tiny()
SOURCE_WIDTH = TINY.width                     # the sources' channel multiplier
VGG_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))   # VGG-16 (block, ch, convs)


def _ch(n: int) -> int:
    return int(n * SOURCE_WIDTH)


def _write_source(path: Path, kind: str) -> Path:
    """A VGG-16 (``imagenet``: fc6 an inner product over pool5's 7x7 grid, fc7, fc8 x 1000) or a
    DeepLab model (``deeplab-largefov``: fc6 3x3 dilation 12; ``deeplab-aspp``: fc6_i / fc7_i /
    fc8_voc12_i, i = 1..4) at the sources' width, random values, saved by pycaffe."""
    import caffe
    from caffe import layers as L, params as P  # noqa: N812
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 224, 224]))
    x = n.data
    gauss = dict(type="gaussian", std=1.0)
    for block, ch, reps in VGG_BLOCKS:
        for r in range(1, reps + 1):
            x = L.Convolution(x, num_output=_ch(ch), kernel_size=3, pad=1, weight_filler=gauss, bias_filler=gauss)
            setattr(n, f"conv{block}_{r}", x)
        x = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(n, f"pool{block}", x)
    if kind == "imagenet":
        n.fc6 = L.InnerProduct(x, num_output=_ch(4096), weight_filler=gauss, bias_filler=gauss)
        n.fc7 = L.InnerProduct(n.fc6, num_output=_ch(4096), weight_filler=gauss, bias_filler=gauss)
        n.fc8 = L.InnerProduct(n.fc7, num_output=1000, weight_filler=gauss, bias_filler=gauss)
    else:
        branches = [""] if kind == "deeplab-largefov" else ["_1", "_2", "_3", "_4"]
        for b in branches:
            fc6 = L.Convolution(x, num_output=_ch(1024), kernel_size=3, pad=12, dilation=12,
                                weight_filler=gauss, bias_filler=gauss)
            setattr(n, f"fc6{b}", fc6)
            fc7 = L.Convolution(fc6, num_output=_ch(1024), kernel_size=1, weight_filler=gauss, bias_filler=gauss)
            setattr(n, f"fc7{b}", fc7)
            setattr(n, f"fc8_voc12{b}", L.Convolution(fc7, num_output=21, kernel_size=1, weight_filler=gauss))
    proto = path.with_suffix(".prototxt")
    proto.write_text(str(n.to_proto()))
    caffe.set_mode_cpu()
    net = caffe.Net(str(proto), caffe.TEST)
    net.save(str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    return {k: _write_source(d / f"{k}.caffemodel", k) for k in ("imagenet", "deeplab-largefov", "deeplab-aspp")}


def _source_arrays(path: Path) -> dict[str, list[np.ndarray]]:
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {layer.name: [np.asarray(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in layer.blobs]
            for layer in net.layer if layer.blobs}


def _written(path: Path, variant: str, cfg: NetConfig = TINY) -> dict[str, list[np.ndarray]]:
    net = iw.target_net(variant, cfg)
    net.copy_from(str(path))
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


# ------------------------------------------------------------------------------------ the rule
def test_the_largefov_reduction_is_numpy_indexing():
    """ImageNet fc6 (4096, 512, 7, 7) -> (1024, 512, 3, 3): filters 0, 4, ..., taps 0, 3, 6 (here at
    1/16 of the filters); fc7 every 4th filter and input; a width reduction on top."""
    rng = np.random.default_rng(0)
    fc6 = rng.standard_normal((64, 32, 7, 7)).astype(np.float32)
    out, rule = iw.subsample(fc6, (16, 32, 3, 3))
    np.testing.assert_array_equal(out, fc6[::4][:, :, [0, 3, 6]][:, :, :, [0, 3, 6]])
    assert (rule.filter_step, rule.channel_step, rule.taps) == (4, 1, (0, 3, 6))
    assert "filters ::4" in rule.describe(fc6.shape, out.shape) and "taps 0, 3, 6" in rule.describe(
        fc6.shape, out.shape)
    fc7 = rng.standard_normal((64, 64, 1, 1)).astype(np.float32)
    np.testing.assert_array_equal(iw.subsample(fc7, (16, 16, 1, 1))[0], fc7[::4, ::4])
    narrow, _ = iw.subsample(fc6, (2, 4, 3, 3))     # the small setting: channels too
    np.testing.assert_array_equal(narrow, fc6[::32, ::8][:, :, ::3, ::3])
    np.testing.assert_array_equal(iw.subsample(fc6, (8, 16, 4, 4))[0], fc6[::8, ::2, ::2, ::2])
    same, rule = iw.subsample(fc7, fc7.shape)
    np.testing.assert_array_equal(same, fc7)
    assert rule.describe(fc7.shape, fc7.shape).endswith("as is")


@pytest.mark.parametrize("src, dst, words", [
    ((64, 32, 7, 7), (24, 32, 3, 3), "24 filters do not divide"),
    ((64, 32, 7, 7), (16, 64, 3, 3), "64 input channels do not divide"),
    ((64, 32, 7, 7), (16, 32, 5, 5), "no evenly spaced 5x5 taps"),
    ((64, 32, 3, 3), (16, 32, 7, 7), "no evenly spaced 7x7 taps"),
    ((64, 32, 3, 3), (16, 32, 1, 1), "no evenly spaced 1x1 taps"),
])
def test_shapes_that_do_not_map_are_refused_with_both_shapes(src, dst, words):
    with pytest.raises(iw.WeightsError, match=words) as err:
        iw.subsample(np.zeros(src, np.float32), dst)
    assert "x".join(map(str, src)) in str(err.value) and "x".join(map(str, dst)) in str(err.value)


# ------------------------------------------------------------------------------------ the command
def test_imagenet_source_fills_every_backbone_like_layer_of_det_par(sources, tmp_path, capsys):
    out = tmp_path / "init.caffemodel"
    assert iw.main(["--source", str(sources["imagenet"]), "--variant", "det_par", "--setting", "tiny",
                    "--out", str(out)]) == 0
    report = capsys.readouterr().out
    import hashlib
    assert f"sha1 {hashlib.sha1(sources['imagenet'].read_bytes()).hexdigest()} (" in report   # issue 20
    src = _source_arrays(sources["imagenet"])
    got = _written(out, "det_par")
    fc6 = src["fc6"][0].reshape(_ch(4096), _ch(512), 7, 7)
    taps = [0, 3, 6]
    step = _ch(4096) // TINY.ch(TINY.fc_channels)                # 256 -> 32 filters: every 8th
    for prefix in ("", "par_"):
        for block, _, reps in VGG_BLOCKS:
            for r in range(1, reps + 1):
                name = f"conv{block}_{r}"
                np.testing.assert_array_equal(got[prefix + name][0], src[name][0])
                assert f"filled {prefix + name} " in report
    for i in range(1, len(TINY.dilations) + 1):
        np.testing.assert_array_equal(got[f"par_fc6_{i}"][0], fc6[::step][:, :, taps][:, :, :, taps])
        np.testing.assert_array_equal(got[f"par_fc7_{i}"][0][:, :, 0, 0], src["fc7"][0][::step, ::step])
        assert f"left   par_fc8_{i} " in report
    # the box head: Faster R-CNN's fc6 / fc7 on the 7x7 RoI grid, every (256 / 64)th filter
    box = TINY.ch(TINY.box_fc)
    np.testing.assert_array_equal(got["fc6_box"][0], fc6[::_ch(4096) // box].reshape(box, -1))
    np.testing.assert_array_equal(got["fc6_box"][1], src["fc6"][1][::_ch(4096) // box])
    np.testing.assert_array_equal(got["fc7_box"][0], src["fc7"][0][::_ch(4096) // box, ::_ch(4096) // box])
    assert "filters ::8, input channels ::8" in report and "kernel taps 0, 3, 6" in report
    assert "bias dropped (BatchNorm follows)" in report
    for name in ("rpn_conv_3x3", "rpn_cls_score", "cls_score", "bbox_pred"):
        assert f"left   {name} " in report
    norms = sum(name.endswith(iw.NORM_SUFFIXES) for name in got)
    assert f"left   {norms} BatchNorm / Scale layers (conv1_1_bn, ...)" in report


def test_ins_glo_gets_vgg_in_both_of_its_nets(sources, tmp_path):
    """Ins.+Glo. is two nets (docs/nets.md "The baselines"): the instance net's backbone and the
    global parser net's own backbone and ASPP (prefix glo_) are both filled."""
    out = tmp_path / "init.caffemodel"
    filled, _ = iw.init_weights(sources["deeplab-aspp"], "ins_glo", TINY, out, log=lambda *_: None)
    src = _source_arrays(sources["deeplab-aspp"])
    got = _written(out, "ins_glo")
    step = _ch(1024) // TINY.ch(TINY.fc_channels)
    for prefix in ("", "glo_"):
        np.testing.assert_array_equal(got[prefix + "conv5_3"][0], src["conv5_3"][0])
    for i in range(1, len(TINY.dilations) + 1):
        np.testing.assert_array_equal(got[f"glo_fc6_{i}"][0], src[f"fc6_{i}"][0][::step])
    assert {"glo_conv1_1", "conv1_1", "glo_fc7_1"} <= {f.target for f in filled}


@pytest.mark.parametrize("kind", ["deeplab-largefov", "deeplab-aspp"])
def test_deeplab_sources_fill_global_and_local_aspp(sources, tmp_path, kind):
    out = tmp_path / "init.caffemodel"
    filled, left = iw.init_weights(sources[kind], "ad_fuse", TINY, out, log=lambda *_: None)
    src = _source_arrays(sources[kind])
    got = _written(out, "ad_fuse")
    step = _ch(1024) // TINY.ch(TINY.fc_channels)                # 64 -> 32 filters
    for prefix in ("", "loc_"):
        for i in range(1, len(TINY.dilations) + 1):
            name = f"fc6_{i}" if kind == "deeplab-aspp" else "fc6"
            fc7 = f"fc7_{i}" if kind == "deeplab-aspp" else "fc7"
            np.testing.assert_array_equal(got[f"{prefix}fc6_{i}"][0], src[name][0][::step])
            np.testing.assert_array_equal(got[f"{prefix}fc7_{i}"][0], src[fc7][0][::step, ::step])
    names = {f.target for f in filled}
    assert {"fc6_box", "fc7_box", "fuse_conv1", "fc8_1", "loc_fc8_1"}.isdisjoint(names)
    assert {"fc6_box", "fuse_conv2", "loc_fc8_4"} <= {name for name, _ in left}


def test_v1_files_like_the_2014_vgg16_are_read(sources, tmp_path):
    """VGG_ILSVRC_16_layers.caffemodel uses the V1 ``layers`` field and 4-D legacy blob dims."""
    from caffe.proto import caffe_pb2
    new = caffe_pb2.NetParameter()
    new.ParseFromString(sources["imagenet"].read_bytes())
    old = caffe_pb2.NetParameter()
    for layer in new.layer:
        if not layer.blobs:
            continue
        v1 = old.layers.add()
        v1.name = layer.name
        v1.type = caffe_pb2.V1LayerParameter.INNER_PRODUCT if layer.type == "InnerProduct" \
            else caffe_pb2.V1LayerParameter.CONVOLUTION
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            b = v1.blobs.add()
            b.num, b.channels, b.height, b.width = dims
            b.data.extend(blob.data)
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(old.SerializeToString())
    a, b = iw.read_source(path), iw.read_source(sources["imagenet"])
    assert iw.source_kind(a) == "imagenet" and a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name].weight, b[name].weight)
        np.testing.assert_array_equal(a[name].bias, b[name].bias)


def test_a_wider_target_than_the_source_is_refused_clearly(sources, tmp_path, capsys):
    """The small setting (1/8) cannot be cut from a 1/16 source: the message names layer and shapes."""
    rc = iw.main(["--source", str(sources["imagenet"]), "--variant", "loc", "--small",
                  "--out", str(tmp_path / "x.caffemodel")])
    err = capsys.readouterr().err
    assert rc == 1 and "conv1_1 <- conv1_1" in err and "8 filters do not divide the source's 4" in err
    assert not (tmp_path / "x.caffemodel").exists()
    assert iw.main(["--source", str(tmp_path / "missing.caffemodel"), "--variant", "loc", "--setting", "tiny",
                    "--out", str(tmp_path / "x.caffemodel")]) == 1
    assert "not found" in capsys.readouterr().err


def test_train_starts_from_the_written_weights(sources, tmp_path, data_root):
    """`gpsnet train --weights <result>`: one iteration at learning rate 0 leaves the filled layers as
    written, so the solver's net started from them (the snapshot is taken after the step)."""
    from gpsnet import train
    out = tmp_path / "init.caffemodel"
    iw.init_weights(sources["imagenet"], "loc", TINY, out, log=lambda *_: None)
    written = _written(out, "loc")
    res = train.train(train.parse_args(["--variant", "loc", "--setting", "tiny", "--data", str(data_root),
                                        "--iters", "1", "--lr", "0", "--weights", str(out),
                                        "--out", str(tmp_path / "run"), "--display", "0"]))
    trained = _written(res["snapshot"], "loc")
    for name in ("conv1_1", "conv5_3", "loc_fc6_2", "loc_fc7_4", "fc6_box", "fc7_box"):
        for a, b in zip(written[name], trained[name]):
            np.testing.assert_array_equal(a, b)
    assert np.isfinite(res["losses"]["total"])


# ------------------------------------------------------------------------------------ bad input (issue 22)
# Defects 6, 11 and 13: the error cases run the command in a subprocess (one aborted the interpreter).
def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpsnet.cli", "init-weights", "--setting", "tiny",
                           "--variant", "loc", *argv], capture_output=True, text=True, timeout=300)


def _no_temporaries(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.iterdir())


def test_an_existing_out_is_replaced_only_with_overwrite(sources, tmp_path):
    """(6) --out naming the --source, or any existing file: refused, untouched; --overwrite replaces
    it complete (the source is read first)."""
    src = tmp_path / "vgg.caffemodel"
    shutil.copy(sources["imagenet"], src)
    before = src.read_bytes()
    done = _cli("--source", str(src), "--out", str(src))
    assert done.returncode == 1 and "the file exists (it is the --source model)" in done.stderr, done.stderr
    assert "--overwrite" in done.stderr and "Traceback" not in done.stderr and src.read_bytes() == before
    mine = tmp_path / "mine.caffemodel"
    mine.write_bytes(b"my model")
    done = _cli("--source", str(src), "--out", str(mine))
    assert done.returncode == 1 and f"--out {mine}: the file exists;" in done.stderr
    assert mine.read_bytes() == b"my model"
    done = _cli("--source", str(src), "--out", str(mine), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "conv1_1" in _written(mine, "loc") and _no_temporaries(tmp_path)
    done = _cli("--source", str(src), "--out", str(src), "--overwrite")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(_written(src, "loc")["conv1_1"][0], _source_arrays(sources["imagenet"])["conv1_1"][0])


def test_a_full_disk_leaves_no_model_and_names_the_folder(sources, tmp_path, monkeypatch, capsys):
    """(11) No room for the model anywhere: an error naming the folder and ENOSPC before Caffe writes
    (Caffe aborted on the failed write, leaving a truncated model under the final name)."""
    from gpsnet import safeio
    monkeypatch.setattr(safeio, "free_bytes", lambda folder: 0)
    out = tmp_path / "models" / "init.caffemodel"
    assert iw.main(["--source", str(sources["imagenet"]), "--variant", "loc", "--setting", "tiny",
                    "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out.parent}: [Errno {errno.ENOSPC} ENOSPC]" in err, err
    assert not out.exists() and _no_temporaries(out.parent)


def test_a_copy_failing_mid_way_keeps_the_old_model(sources, tmp_path, monkeypatch, capsys):
    """(11) The staged model is copied in under a temporary name: a failure (ENOSPC) leaves the old
    file as it was and no partial one."""
    from gpsnet import safeio
    out = tmp_path / "init.caffemodel"
    out.write_bytes(b"old")

    def half_then_full(src, dst):
        dst.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # as when the staging folder is on another file system than --out: copied in, not renamed
    monkeypatch.setattr(safeio, "publish", lambda staged, final: safeio.atomic_copy(staged, final))
    monkeypatch.setattr(safeio.shutil, "copyfileobj", half_then_full)
    assert iw.main(["--source", str(sources["imagenet"]), "--variant", "loc", "--setting", "tiny",
                    "--out", str(out), "--overwrite"]) == 1
    assert f"cannot write {out}: [Errno {errno.ENOSPC} ENOSPC]" in capsys.readouterr().err
    assert out.read_bytes() == b"old" and _no_temporaries(tmp_path)


@pytest.mark.parametrize("kind", ["empty", "garbage", "text prototxt", "solverstate"])
def test_a_source_that_is_no_caffemodel_is_named(kind, tmp_path):
    """(13) DecodeError tracebacks before: now `X: not a Caffe .caffemodel ...`, rc 1."""
    from caffe.proto import caffe_pb2
    src = tmp_path / "source.caffemodel"
    src.write_bytes({"empty": b"", "garbage": b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 64,
                     "text prototxt": (ROOT / "prototxt/small/loc/test.prototxt").read_bytes(),
                     "solverstate": caffe_pb2.SolverState(iter=8, learned_net="x.caffemodel").SerializeToString(),
                     }[kind])
    done = _cli("--source", str(src), "--out", str(tmp_path / "out.caffemodel"))
    assert done.returncode == 1 and f"gpsnet init-weights: {src}: " in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.caffemodel").exists()


def test_blobs_double_data_is_read_and_a_short_blob_is_named(sources, tmp_path):
    """(13) A blob stored in double_data is read as Caffe reads it; one whose values do not fill its
    shape is an error naming the file and the layer (ValueError tracebacks before)."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.ParseFromString(sources["imagenet"].read_bytes())
    blob = next(layer for layer in net.layer if layer.name == "conv1_1").blobs[0]
    values = np.array(blob.data, np.float64) + 1e-9   # not float32 numbers: read, then rounded
    blob.ClearField("data")
    blob.double_data.extend(values)
    doubled = tmp_path / "double.caffemodel"
    doubled.write_bytes(net.SerializeToString())
    done = _cli("--source", str(doubled), "--out", str(tmp_path / "a.caffemodel"))
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(_written(tmp_path / "a.caffemodel", "loc")["conv1_1"][0],
                                  values.astype(np.float32).reshape(tuple(blob.shape.dim)))
    del blob.double_data[-1]
    short = tmp_path / "short.caffemodel"
    short.write_bytes(net.SerializeToString())
    done = _cli("--source", str(short), "--out", str(tmp_path / "b.caffemodel"))
    assert done.returncode == 1 and f"{short}: layer conv1_1 weights: {values.size - 1} values for the shape" \
        in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_out_a_folder_or_under_a_file_is_refused_first(sources, tmp_path):
    """(13) --out a folder (a Caffe abort naming no path before) or under a file (FileExistsError)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out, words in ((tmp_path, "a folder; give the .caffemodel file to write"),
                       (blocker / "sub" / "m.caffemodel", f"{blocker} is a file, not a folder")):
        done = _cli("--source", str(sources["imagenet"]), "--out", str(out))
        assert done.returncode == 1 and f"--out {out}: {words}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert blocker.read_text() == "x"

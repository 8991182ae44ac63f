"""The C++ detection layers AnchorTarget and SmoothL1Loss through pycaffe, against their Python
layers (gpsnet.layers.anchor_target, gpsnet.layers.smooth_l1_loss: the NumPy reference, numeric
core gpsnet.detection.targets.anchor_targets) on random inputs and on the synthetic generator's
images: labels, targets and weights exactly where nothing is sampled, the sampled sets' counts and
frequencies where something is, and the seed rule (docs/layers.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.data.batch import BatchParams, make_batch  # noqa: E402
from gpsnet.data.layout import GPSDataset  # noqa: E402
from gpsnet.reference.nets import input_layer, text_net  # noqa: E402

TOPS = ("labels", "targets", "inside", "outside")
BOTTOMS = ("score", "gt_persons", "gt_faces", "im_info")
SIZES, RATIOS = [8.0, 16.0, 32.0], [1.0, 2.0]
A = len(SIZES) * len(RATIOS)


def _set(net, name: str, arr) -> None:
    arr = np.asarray(arr, np.float32)
    net.blobs[name].reshape(*arr.shape)
    if arr.size:
        net.blobs[name].data[...] = arr


def _get(net, name: str) -> np.ndarray:
    blob = net.blobs[name]
    return np.array(blob.data) if blob.count else np.zeros(blob.shape, np.float32)


# --------------------------------------------------------------------------- AnchorTarget
def test_layer_types_and_proto_fields():
    """Registered, with LayerParameter fields 153 / 154 whose defaults are the Python layers'."""
    from dataclasses import asdict

    from caffe.proto import caffe_pb2

    from gpsnet.detection.targets import AnchorTargetConfig
    from gpsnet.nets.config import DEFAULT_CONFIG

    assert {"SmoothL1Loss", "AnchorTarget"} <= set(caffe.layer_type_list())
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields["smooth_l1_loss_param"].number == 153
    assert fields["anchor_target_param"].number == 154
    assert caffe_pb2.SmoothL1LossParameter().sigma == 1.0
    p = caffe_pb2.AnchorTargetParameter()
    for name, value in asdict(AnchorTargetConfig()).items():
        assert getattr(p, name) == value, name
    assert p.feat_stride == 8 and not p.HasField("seed")
    assert not p.anchor_size and not p.anchor_ratio   # empty: the defaults below
    net = anchor_target_net((1, 2 * len(DEFAULT_CONFIG.anchor_sizes) * len(DEFAULT_CONFIG.anchor_ratios), 4, 4),
                            dict(feat_stride=8, anchor_sizes=[], anchor_ratios=[]), python=False)
    assert net.blobs["c_labels"].data.shape == (1, 1, 18 * 4, 4)


def _cpp_anchor_target(prefix: str, cfg: dict, seed: int | None) -> str:
    fields = [f"feat_stride: {cfg['feat_stride']}"]
    fields += [f"anchor_size: {s!r}" for s in cfg["anchor_sizes"]]
    fields += [f"anchor_ratio: {r!r}" for r in cfg["anchor_ratios"]]
    fields += [f"{k}: {cfg[k]!r}" for k in ("positive_overlap", "negative_overlap", "batch_size",
                                            "fg_fraction", "allowed_border") if k in cfg]
    if seed is not None:
        fields.append(f"seed: {seed}")
    bottoms = " ".join(f'bottom: "{b}"' for b in BOTTOMS)
    tops = " ".join(f'top: "{prefix}{t}"' for t in TOPS)
    return (f'layer {{ name: "{prefix}at" type: "AnchorTarget" {bottoms} {tops} '
            f'anchor_target_param {{ {" ".join(fields)} }} }}\n')


def _py_anchor_target(prefix: str, cfg: dict) -> str:
    bottoms = " ".join(f'bottom: "{b}"' for b in BOTTOMS)
    tops = " ".join(f'top: "{prefix}{t}"' for t in TOPS)
    return (f'layer {{ name: "{prefix}at" type: "Python" {bottoms} {tops} python_param {{ '
            f'module: "gpsnet.layers.anchor_target" layer: "AnchorTargetLayer" '
            f"param_str: '{json.dumps(cfg)}' }} }}\n")


def anchor_target_net(shape, cfg: dict, seed: int | None = 0, python: bool = True):
    """Inputs score (shape), gt_persons, gt_faces, im_info; the C++ layer (tops c_labels, ...)
    and, with python, the Python layer (tops py_labels, ...) on the same bottoms."""
    text = (input_layer("score", shape) + input_layer("gt_persons", (1, 5)) + input_layer("gt_faces", (1, 5))
            + input_layer("im_info", (shape[0], 3)) + _cpp_anchor_target("c_", cfg, seed))
    if python:
        text += _py_anchor_target("py_", cfg)
    return text_net(text)


def forward(net, persons, faces, info) -> dict[str, np.ndarray]:
    _set(net, "gt_persons", np.asarray(persons, np.float32).reshape(-1, 5))
    _set(net, "gt_faces", np.asarray(faces, np.float32).reshape(-1, 5))
    _set(net, "im_info", info)
    net.forward()
    return {name: _get(net, name) for name in net.blobs if name.startswith(("c_", "py_"))}


def random_gt(rng, num_images: int, width: float, height: float, n: int) -> np.ndarray:
    """n random gt rows (b, x1, y1, x2, y2) in net coordinates, some of them tiny or of zero size,
    some partly outside the image."""
    b = rng.integers(0, num_images, n)
    w = rng.uniform(2, 0.8 * width, n)
    h = rng.uniform(2, 0.8 * height, n)
    x1 = rng.uniform(-0.1 * width, width - w)
    y1 = rng.uniform(-0.1 * height, height - h)
    rows = np.stack([b, x1, y1, x1 + w, y1 + h], axis=1)
    if n > 2:
        rows[0, 3] = rows[0, 1]      # zero width: overlaps nothing
    return rows.astype(np.float32)


def config(**kw) -> dict:
    cfg = dict(feat_stride=8, anchor_sizes=SIZES, anchor_ratios=RATIOS, batch_size=100000)
    cfg.update(kw)
    return cfg


def expect_same_targets(out: dict[str, np.ndarray]) -> None:
    """C++ and Python tops agree: labels, inside and outside weights exactly, targets to float
    rounding (the logs of the box transform)."""
    for t in ("labels", "inside", "outside"):
        np.testing.assert_array_equal(out["c_" + t], out["py_" + t], err_msg=t)
    np.testing.assert_allclose(out["c_targets"], out["py_targets"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", range(6))
def test_anchor_target_matches_reference_without_sampling(case):
    """Random gt (persons and faces, images without any, boxes of zero size and partly outside),
    random image sizes below the feature map: with batch_size above the anchor count nothing is
    sub-sampled and every top equals the Python layer's."""
    rng = np.random.default_rng(100 + case)
    num, h, w = 2, 9, 11
    extra = [{}, dict(allowed_border=8.0), dict(positive_overlap=0.5, negative_overlap=0.4),
             dict(fg_fraction=1.0), {}, dict(anchor_ratios=[0.5, 1.0, 2.0])][case]
    cfg = config(**extra)
    a = len(cfg["anchor_sizes"]) * len(cfg["anchor_ratios"])
    net = anchor_target_net((num, 2 * a, h, w), cfg)
    info = np.array([[rng.uniform(40, 8 * h), rng.uniform(40, 8 * w), 1.0] for _ in range(num)],
                    np.float32)
    info = np.round(info)
    persons = random_gt(rng, 1 if case == 4 else num, 8 * w, 8 * h, int(rng.integers(3, 9)))  # 4: image 1 none
    faces = random_gt(rng, num, 8 * w, 8 * h, int(rng.integers(0, 4)))
    out = forward(net, persons, faces, info)
    assert out["c_labels"].shape == (num, 1, a * h, w)
    assert out["c_targets"].shape == (num, 4 * a, h, w)
    expect_same_targets(out)
    labels = out["c_labels"]
    assert (labels == 1).any() and (labels == 0).any() and (labels == -1).any()
    # A second pass (another forward count) gives the same tops: nothing is drawn.
    again = forward(net, persons, faces, info)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])


def test_anchor_target_without_any_gt_matches_reference():
    net = anchor_target_net((2, 2 * A, 6, 7), config())
    out = forward(net, np.zeros((0, 5)), np.zeros((0, 5)), [[48, 56, 1], [30, 40, 1]])
    expect_same_targets(out)
    assert not (out["c_labels"] == 1).any() and (out["c_labels"] == 0).any()
    assert not out["c_targets"].any()


def _synthetic_batch(data_root: Path, first: int) -> tuple[dict[str, np.ndarray], int]:
    """Two generated images as the data layer makes them (65 px canvas), and the cells of the
    stride-4 feature map."""
    ds = GPSDataset(data_root, "train")
    params = BatchParams.from_dict({"root": str(data_root), "size": 65, "feat_stride": 4})
    return make_batch([ds[first], ds[first + 1]], params, np.random.default_rng(first)), params.label_cells


SMALL = dict(feat_stride=4, anchor_sizes=[8.0, 16.0, 32.0, 64.0, 128.0], anchor_ratios=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("first", [0, 2, 4])
def test_anchor_target_on_synthetic_images(data_root, first):
    """The generator's images through the data layer's batch maker (net-coordinate gt boxes,
    im_info), the small setting's anchors: without sampling the tops equal the reference's;
    with the nets' batch_size (64) the sampled sets have the reference's sizes and lie inside the
    candidates of the unsampled labels."""
    batch, cells = _synthetic_batch(data_root, first)
    a = 15
    shape = (2, 2 * a, cells, cells)
    full = forward(anchor_target_net(shape, dict(SMALL, batch_size=100000)),
                   batch["gt_persons"], batch["gt_faces"], batch["im_info"])
    expect_same_targets(full)
    assert (full["c_labels"] == 1).any() and len(batch["gt_persons"])
    sampled = forward(anchor_target_net(shape, dict(SMALL, batch_size=64), seed=3),
                      batch["gt_persons"], batch["gt_faces"], batch["im_info"])
    for i in range(2):
        cand, c, p = full["c_labels"][i], sampled["c_labels"][i], sampled["py_labels"][i]
        for label in (1, 0):
            assert (c == label).sum() == (p == label).sum(), (i, label)
            assert np.all(cand[c == label] == label)
        n_fg = min(32, (cand == 1).sum())
        assert (c == 1).sum() == n_fg
        assert (c == 0).sum() == min(64 - n_fg, (cand == 0).sum())
        fg = np.repeat(c.reshape(a, 1, cells, cells) == 1, 4, axis=1).reshape(4 * a, cells, cells)
        # targets on the kept fg anchors only: there the unsampled run's, elsewhere 0
        np.testing.assert_allclose(sampled["c_targets"][i], np.where(fg, full["c_targets"][i], 0))
        np.testing.assert_array_equal(sampled["c_inside"][i], fg.astype(np.float32))
        outside = sampled["c_outside"][i]
        np.testing.assert_array_equal(np.unique(outside[outside > 0]),
                                      np.float32(1.0 / max((c >= 0).sum(), 1)))


def _many_fg_case(num_gt: int = 30):
    """One 10 x 10 map, one anchor (size 8) per cell, 81 of them inside the 80 x 80 image; num_gt
    gt boxes equal to anchors: num_gt fg candidates, 81 - num_gt bg candidates (IoU 0). Returns
    (gt, cfg, im_info, the flat indices of the fg candidates, of the inside anchors)."""
    cells = [(1 + k // 8, 1 + k % 8) for k in range(num_gt)]
    gt = np.array([[0, 8 * x - 4, 8 * y - 4, 8 * x + 4, 8 * y + 4] for y, x in cells], np.float32)
    cfg = dict(feat_stride=8, anchor_sizes=[8.0], anchor_ratios=[1.0], batch_size=20)
    inside = [10 * y + x for y in range(1, 10) for x in range(1, 10)]
    return gt, cfg, [[80, 80, 1]], [10 * y + x for y, x in cells], inside


def test_anchor_target_sampling_statistics_match_reference():
    """Sub-sampling 10 of 30 fg and 10 of 51 bg candidates, 300 passes: both layers keep exactly
    those counts, and every candidate's frequency is within 5 sd of 10 / 30 (fg) and 10 / 51 (bg)
    in both (a uniform draw without replacement)."""
    gt, cfg, info, fg_cells, inside_cells = _many_fg_case()
    net = anchor_target_net((1, 2, 10, 10), cfg, seed=11)
    passes = 300
    freq = {"c_": np.zeros(100), "py_": np.zeros(100)}
    for _ in range(passes):
        out = forward(net, gt, np.zeros((0, 5)), info)
        for side in freq:
            lab = out[side + "labels"].reshape(-1)
            assert (lab == 1).sum() == 10 and (lab == 0).sum() == 10
            freq[side] += lab >= 0
    fg = np.zeros(100, bool)
    fg[fg_cells] = True
    bg = np.zeros(100, bool)
    bg[inside_cells] = True
    bg &= ~fg
    for side, f in freq.items():
        f = f / passes
        assert not f[~(fg | bg)].any(), side     # anchors outside the image: never sampled
        for mask, p in ((fg, 10 / 30), (bg, 10 / 51)):
            sd = np.sqrt(p * (1 - p) / passes)
            assert np.all(np.abs(f[mask] - p) < 5 * sd), (side, f[mask])


def test_anchor_target_seed_rule():
    """The same seed: the same draws, pass by pass, in a fresh net; another seed: other draws;
    passes differ from each other. Without a seed in the parameters the seed comes from
    caffe.set_random_seed (the solver's random_seed)."""
    gt, cfg, info, _, _ = _many_fg_case()
    no_faces = np.zeros((0, 5))

    def labels(net, passes: int = 3) -> list[np.ndarray]:
        return [forward(net, gt, no_faces, info)["c_labels"] for _ in range(passes)]

    shape = (1, 2, 10, 10)
    first = labels(anchor_target_net(shape, cfg, seed=5, python=False))
    second = labels(anchor_target_net(shape, cfg, seed=5, python=False))
    other = labels(anchor_target_net(shape, cfg, seed=6, python=False))
    for x, y, z in zip(first, second, other):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    assert not np.array_equal(first[0], first[1])
    runs = []
    for solver_seed in (1701, 1701, 1702):
        caffe.set_random_seed(solver_seed)
        runs.append(labels(anchor_target_net(shape, cfg, seed=None, python=False), 2))
    for x, y, z in zip(*runs):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


# --------------------------------------------------------------------------- SmoothL1Loss
def smooth_l1_net(shape, sigma: float, outside: bool, python: bool):
    names = ["pred", "target", "inside"] + (["outside"] if outside else [])
    text = "force_backward: true\n" + "".join(input_layer(n, shape) for n in names)
    bottoms = " ".join(f'bottom: "{n}"' for n in names)
    prop = " ".join("propagate_down: " + ("true" if i == 0 else "false") for i in range(len(names)))
    if python:
        text += (f'layer {{ name: "loss" type: "Python" {bottoms} top: "loss" loss_weight: 1 {prop} '
                 f'python_param {{ module: "gpsnet.layers.smooth_l1_loss" layer: "SmoothL1LossLayer" '
                 f"param_str: '{json.dumps(dict(sigma=sigma))}' }} }}\n")
    else:
        text += (f'layer {{ name: "loss" type: "SmoothL1Loss" {bottoms} top: "loss" {prop} '
                 f"smooth_l1_loss_param {{ sigma: {sigma!r} }} }}\n")
    return text_net(text), names


def smooth_l1(shape, sigma: float, arrays: list[np.ndarray], python: bool) -> tuple[float, np.ndarray]:
    """The loss and the predictions' gradient of one layer."""
    net, names = smooth_l1_net(shape, sigma, len(arrays) == 4, python)
    for name, arr in zip(names, arrays):
        _set(net, name, arr)
    net.forward()
    net._backward(len(net.layers) - 1, 0)   # (net.backward() reads the diffs of empty inputs: abort)
    pred = net.blobs["pred"]
    grad = np.array(pred.diff) if pred.count else np.zeros(pred.shape)
    return float(np.asarray(net.blobs["loss"].data).reshape(-1)[0]), grad


@pytest.mark.parametrize("sigma", [1.0, 3.0])
@pytest.mark.parametrize("outside", [False, True])
def test_smooth_l1_matches_reference_on_random_inputs(sigma, outside):
    rng = np.random.default_rng(int(10 * sigma) + outside)
    shape = (3, 8, 5, 4)
    arrays = [rng.normal(0, 1, shape), rng.normal(0, 1, shape), rng.integers(0, 3, shape).astype(float)]
    if outside:
        arrays.append(rng.uniform(0, 1, shape))
    loss_c, grad_c = smooth_l1(shape, sigma, arrays, python=False)
    loss_py, grad_py = smooth_l1(shape, sigma, arrays, python=True)
    assert loss_c == pytest.approx(loss_py, rel=1e-5)
    np.testing.assert_allclose(grad_c, grad_py, rtol=1e-5, atol=1e-8)


def test_smooth_l1_matches_reference_on_rpn_targets(data_root):
    """The RPN's loss on the synthetic images: the anchor targets and weights of the C++
    AnchorTarget, random predictions; sigma 3 as in the nets."""
    batch, cells = _synthetic_batch(data_root, 0)
    shape = (2, 30, cells, cells)
    out = forward(anchor_target_net(shape, dict(SMALL, batch_size=64), python=False),
                  batch["gt_persons"], batch["gt_faces"], batch["im_info"])
    bshape = out["c_targets"].shape
    pred = out["c_targets"] + np.random.default_rng(0).normal(0, 0.3, bshape)
    arrays = [pred, out["c_targets"], out["c_inside"], out["c_outside"]]
    loss_c, grad_c = smooth_l1(bshape, 3.0, arrays, python=False)
    loss_py, grad_py = smooth_l1(bshape, 3.0, arrays, python=True)
    assert loss_c > 0
    assert loss_c == pytest.approx(loss_py, rel=1e-5)
    np.testing.assert_allclose(grad_c, grad_py, rtol=1e-5, atol=1e-9)


def test_smooth_l1_without_rows():
    loss, grad = smooth_l1((0, 4), 1.0, [np.zeros((0, 4))] * 3, python=False)
    assert loss == 0.0 and grad.shape == (0, 4)


BAD = [
    ("SmoothL1Loss", [(2, 4), (2, 4), (2, 5)], "smooth_l1_loss_param { sigma: 1 }",
     "bottom shapes differ: inside weights 2 5 (10) vs predictions 2 4 (8)"),
    ("SmoothL1Loss", [(2, 4)] * 3, "smooth_l1_loss_param { sigma: -1 }",
     "smooth_l1_loss_param.sigma must be finite and > 0, got -1"),
    ("AnchorTarget", [(1, 4, 3, 3), (1, 5), (0, 5), (1, 3)], "anchor_target_param { anchor_size: 8 }",
     "rpn_cls_score has 4 channels, expected 2 x 3 anchors"),
    ("AnchorTarget", [(2, 36, 3, 3), (1, 5), (0, 5), (1, 3)], "",
     "im_info must be B x 3 (height, width, scale) for B = 2 images"),
    ("AnchorTarget", [(1, 36, 3, 3), (1, 4), (0, 5), (1, 3)], "",
     "gt_persons must be R x 5"),
    ("AnchorTarget", [(1, 36, 3, 3), (1, 5), (0, 5), (1, 3)], "anchor_target_param { fg_fraction: 2 }",
     "fg_fraction must lie in [0, 1], got 2"),
]


@pytest.mark.parametrize("layer,shapes,params,message", BAD)
def test_bad_inputs_stop_with_a_clear_message(layer, shapes, params, message):
    """A CHECK failure aborts the process: the net is made in a child, whose log names the fault."""
    bottoms = "".join(input_layer(f"b{i}", s) for i, s in enumerate(shapes))
    tops = 1 if layer == "SmoothL1Loss" else 4
    text = (bottoms + f'layer {{ name: "bad" type: "{layer}" '
            + " ".join(f'bottom: "b{i}"' for i in range(len(shapes)))
            + " " + " ".join(f'top: "t{i}"' for i in range(tops)) + f" {params} }}\n")
    script = ("import os, sys, tempfile\nimport caffe\n"
              "f = tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False)\n"
              f"f.write({text!r}); f.close()\ncaffe.Net(f.name, caffe.TEST)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"layer bad: {message}" in proc.stderr, proc.stderr[-2000:]

"""The C++ ``Proposal`` and ``DetectionOutput`` layers (caffe_layers/, issue 17) against the NumPy
reference: the Python layers they replace (``gpsnet.layers.proposal``) run in the same pycaffe net
on the same bottoms, on random inputs and on boxes of the synthetic generator's images; and the
proposals against an independent implementation of the rule (a plain O(n^2) NMS written here) on
degenerate inputs: no boxes, all boxes equal, boxes outside the image, NaN / inf deltas and
scores, huge boxes.

Thresholds are given as float32 values (what the C++ layers' float parameters hold), so that both
layers compare against the same numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.data.layout import person_and_face_boxes  # noqa: E402
from gpsnet.data.synthetic import generate_image  # noqa: E402
from gpsnet.detection.anchors import base_anchors, shifted_anchors  # noqa: E402
from gpsnet.detection.boxes import bbox_overlaps, bbox_transform, bbox_transform_inv, clip_boxes  # noqa: E402
from gpsnet.detection.targets import BBOX_STDS, DetectConfig, ProposalConfig, propose  # noqa: E402
from gpsnet.nets.config import DEFAULT_CONFIG  # noqa: E402
from gpsnet.reference.nets import input_layer, param_fields  # noqa: E402


def f32(v: float) -> float:
    """v as a float32 parameter holds it."""
    return float(np.float32(v))


def _layers_net(cpp_type: str, param_field: str, py_layer: str, shapes, tops: int, params: dict,
                python: bool = True):
    """Inputs b0.. of `shapes`; the C++ layer (tops c0..) and, with `python`, the Python layer
    (tops p0..) on them with the same parameters."""
    text = "".join(input_layer(f"b{i}", s) for i, s in enumerate(shapes))
    bottoms = "".join(f' bottom: "b{i}"' for i in range(len(shapes)))
    text += (f'layer {{ name: "cpp" type: "{cpp_type}"{bottoms}'
             + "".join(f' top: "c{i}"' for i in range(tops))
             + f" {param_field} {{ {param_fields(params)} }} }}\n")
    if python:
        text += (f'layer {{ name: "py" type: "Python"{bottoms}' + "".join(f' top: "p{i}"' for i in range(tops))
                 + f' python_param {{ module: "gpsnet.layers.proposal" layer: "{py_layer}" '
                 + f"param_str: '{json.dumps(params)}' }} }}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    try:
        return caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)


def _run(net, bottoms, prefixes=("c", "p")) -> list[list[np.ndarray]]:
    for i, arr in enumerate(bottoms):
        blob = net.blobs[f"b{i}"]
        blob.reshape(*arr.shape)
        if arr.size:
            blob.data[...] = arr
    net.forward()
    out = []
    for p in prefixes:
        names = sorted((n for n in net.blobs if n[0] == p and n[1:].isdigit()), key=lambda n: int(n[1:]))
        out.append([np.array(net.blobs[n].data, np.float64) if net.blobs[n].count
                    else np.zeros(net.blobs[n].shape) for n in names])
    return out


def assert_same_tops(cpp: list[np.ndarray], ref: list[np.ndarray]) -> None:
    """Same rows, batch indices and scores (NaN where the reference has NaN); boxes to float
    rounding (the layers both compute in double and round to float32)."""
    assert len(cpp) == len(ref)
    for c, r in zip(cpp, ref):
        assert c.shape == r.shape, (c.shape, r.shape)
        if c.ndim == 2:
            np.testing.assert_array_equal(c[:, 0], r[:, 0])
            np.testing.assert_allclose(c[:, 1:], r[:, 1:], rtol=1e-6, atol=1e-4)
        else:
            np.testing.assert_array_equal(c, r)


# ----------------------------------------------------------------------------- registration

def test_types_fields_and_defaults():
    from caffe.proto import caffe_pb2
    assert {"Proposal", "DetectionOutput"} <= set(caffe.layer_type_list())
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields["proposal_param"].number == 155
    assert fields["detection_output_param"].number == 156
    p, cfg = caffe_pb2.ProposalParameter(), ProposalConfig()
    assert (p.feat_stride, list(p.anchor_sizes), list(p.anchor_ratios)) == (8, [], [])
    assert (p.pre_nms_top_n, p.post_nms_top_n, p.nms_thresh, p.min_size) == (
        cfg.pre_nms_top_n, cfg.post_nms_top_n, f32(cfg.nms_thresh), cfg.min_size)
    d, dcfg = caffe_pb2.DetectionOutputParameter(), DetectConfig()
    assert (d.score_thresh, d.nms_thresh, d.max_persons, d.max_faces, list(d.bbox_stds)) == (
        f32(dcfg.score_thresh), f32(dcfg.nms_thresh), dcfg.max_persons, dcfg.max_faces, [])


# ----------------------------------------------------------------------------- proposals

def proposal_bottoms(rng, a: int, h: int, w: int, infos, delta_std: float = 0.5, ties: bool = False):
    b = len(infos)
    prob = rng.uniform(0, 1, (b, 2 * a, h, w))
    if ties:   # many equal scores: the order of equal scores is the anchors' (y, x, a)
        prob = np.round(prob * 8) / 8
    deltas = rng.normal(0, delta_std, (b, 4 * a, h, w))
    return [prob.astype(np.float32), deltas.astype(np.float32), np.asarray(infos, np.float32)]


def run_proposals(params: dict, bottoms, python: bool = True):
    net = _layers_net("Proposal", "proposal_param", "ProposalLayer", [x.shape for x in bottoms], 2, params, python)
    return _run(net, bottoms, ("c", "p") if python else ("c",))


PROPOSAL_CASES = [
    dict(feat_stride=8, anchor_sizes=[8, 16, 32], anchor_ratios=[0.5, 1.0, 2.0], pre_nms_top_n=300,
         post_nms_top_n=50, nms_thresh=f32(0.7), min_size=2.0),
    dict(feat_stride=4, anchor_sizes=[8, 16], anchor_ratios=[1.0, 3.0], pre_nms_top_n=0, post_nms_top_n=0,
         nms_thresh=f32(0.3), min_size=4.0),
    dict(feat_stride=8, anchor_sizes=[16], anchor_ratios=[1.0], pre_nms_top_n=40, post_nms_top_n=10,
         nms_thresh=0.5, min_size=0.0),
    # most boxes under min_size: the layer decodes the best-scored anchors first and must look
    # further down the order (its candidates grow) to find pre_nms_top_n valid ones
    dict(feat_stride=8, anchor_sizes=[4, 8, 24], anchor_ratios=[1.0, 2.0], pre_nms_top_n=30, post_nms_top_n=0,
         nms_thresh=f32(0.6), min_size=18.0),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", range(len(PROPOSAL_CASES)))
def test_proposal_matches_python_layer_on_random_inputs(seed, case):
    params = PROPOSAL_CASES[case]
    rng = np.random.default_rng(seed)
    a = len(params["anchor_sizes"]) * len(params["anchor_ratios"])
    bottoms = proposal_bottoms(rng, a, 9, 11, [[70, 85, 1], [61, 90, 1.5]], ties=seed == 2)
    cpp, ref = run_proposals(params, bottoms)
    assert_same_tops(cpp, ref)
    assert set(cpp[0][:, 0]) == {0, 1}


def test_proposal_defaults_match_python_layer():
    """No parameters at all: both layers' defaults (stride 8, 18 anchors, 6000 / 300, 0.7, 4)."""
    a = len(DEFAULT_CONFIG.anchor_sizes) * len(DEFAULT_CONFIG.anchor_ratios)
    bottoms = proposal_bottoms(np.random.default_rng(7), a, 20, 24, [[160, 190, 1]], delta_std=0.3)
    cpp, ref = run_proposals({}, bottoms)
    assert_same_tops(cpp, ref)
    assert cpp[0].shape[0] == 300


def rpn_outputs_of_boxes(rng, gt: np.ndarray, anchors: np.ndarray, a: int, h: int, w: int, noise: float):
    """RPN outputs that a trained RPN could give for gt boxes: object score = best IoU of the
    anchor with a gt box (plus noise), deltas = the regression onto that box (plus noise), in the
    B=1 x 2A x H x W and 1 x 4A x H x W layouts."""
    ov = bbox_overlaps(anchors, gt)
    best = ov.argmax(axis=1)
    fg = np.clip(ov.max(axis=1) + rng.normal(0, noise, anchors.shape[0]), 0, 1)
    deltas = bbox_transform(anchors, gt[best]) + rng.normal(0, noise, (anchors.shape[0], 4))
    prob = np.zeros((1, 2 * a, h, w))
    prob[0, a:] = fg.reshape(h, w, a).transpose(2, 0, 1)
    prob[0, :a] = 1 - prob[0, a:]
    d = deltas.reshape(h, w, a, 4).transpose(2, 3, 0, 1).reshape(1, 4 * a, h, w)
    return prob.astype(np.float32), d.astype(np.float32)


def synthetic_boxes(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The person boxes and face boxes (n x 4, image coordinates) of one generated image."""
    rng = np.random.default_rng(seed)
    _, labels, _ = generate_image(rng, size, "indoor" if seed % 2 else "outdoor")
    persons, faces, has_face = person_and_face_boxes(np.stack(labels))
    return persons.astype(np.float64), faces[has_face].astype(np.float64)


@pytest.mark.parametrize("seed", range(3))
def test_proposal_matches_python_layer_on_generated_images(seed):
    size, stride = 96, 4
    sizes, ratios = [8, 16, 32, 64], [1.0, 2.0, 3.0]
    a, h = len(sizes) * len(ratios), size // stride
    anchors = shifted_anchors(base_anchors(sizes, ratios), h, h, stride)
    persons, faces = synthetic_boxes(seed, size)
    gt = np.concatenate([persons, faces])
    prob, deltas = rpn_outputs_of_boxes(np.random.default_rng(seed), gt, anchors, a, h, h, 0.05)
    params = dict(feat_stride=stride, anchor_sizes=sizes, anchor_ratios=ratios, pre_nms_top_n=300,
                  post_nms_top_n=32, nms_thresh=f32(0.7), min_size=2.0)
    cpp, ref = run_proposals(params, [prob, deltas, np.array([[size, size, 1]], np.float32)])
    assert_same_tops(cpp, ref)
    # the proposals find the generated persons (small faces may score below the 32 kept)
    assert bbox_overlaps(persons, cpp[0][:, 1:]).max(axis=1).min() > 0.5


# --- the rule written out independently: decode with the reference's box math, then plain loops

def plain_iou(p: np.ndarray, q: np.ndarray) -> float:
    """IoU of two boxes; 0 for an empty or not-a-number union (boxes.nms)."""
    if np.isnan(p).any() or np.isnan(q).any():
        return 0.0
    iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0.0)
    ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0.0)
    inter = iw * ih
    union = max(p[2] - p[0], 0.0) * max(p[3] - p[1], 0.0) + max(q[2] - q[0], 0.0) * max(q[3] - q[1], 0.0) - inter
    return inter / union if union > 0 else 0.0


def plain_order(scores: np.ndarray) -> list[int]:
    """Indices by decreasing score, ties in index order, NaN last."""
    def key(i: int) -> tuple:
        return (1, 0.0, i) if np.isnan(scores[i]) else (0, -scores[i], i)
    return sorted(range(len(scores)), key=key)


def plain_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, max_keep: int) -> list[int]:
    """Visit by plain_order; keep a box that no kept box overlaps with IoU > thresh; stop at
    max_keep (<= 0: no limit)."""
    keep: list[int] = []
    for i in plain_order(scores):
        if all(plain_iou(boxes[k], boxes[i]) <= thresh for k in keep):
            keep.append(i)
            if 0 < max_keep <= len(keep):
                break
    return keep


def plain_proposals(params: dict, prob: np.ndarray, deltas: np.ndarray, info: np.ndarray) -> list[np.ndarray]:
    sizes, ratios = params.get("anchor_sizes", DEFAULT_CONFIG.anchor_sizes), params.get("anchor_ratios", DEFAULT_CONFIG.anchor_ratios)
    b, _, h, w = prob.shape
    a = len(sizes) * len(ratios)
    anchors = shifted_anchors(base_anchors(sizes, ratios), h, w, params["feat_stride"])
    rows, scores = [], []
    for i in range(b):
        fg = prob[i, a:].transpose(1, 2, 0).reshape(-1).astype(np.float64)
        d = deltas[i].reshape(a, 4, h, w).transpose(2, 3, 0, 1).reshape(-1, 4)
        with np.errstate(invalid="ignore", over="ignore"):
            boxes = clip_boxes(bbox_transform_inv(anchors, d), info[i, 0], info[i, 1])
        ok = [j for j in range(len(fg)) if boxes[j, 2] - boxes[j, 0] >= params["min_size"]
              and boxes[j, 3] - boxes[j, 1] >= params["min_size"]]
        pre = params["pre_nms_top_n"]
        top = [ok[j] for j in plain_order(fg[ok])][:pre if pre > 0 else None]
        keep = [top[j] for j in plain_nms(boxes[top], fg[top], params["nms_thresh"], params["post_nms_top_n"])]
        if not keep:
            rows.append([i, 0, 0, info[i, 1], info[i, 0]])
            scores.append(0.0)
        for j in keep:
            rows.append([i, *boxes[j]])
            scores.append(fg[j])
    return [np.asarray(rows, np.float32).astype(np.float64).reshape(-1, 5),
            np.asarray(scores, np.float32).astype(np.float64)]


DEGENERATE = ["no_boxes", "all_equal", "outside", "nonfinite", "huge"]


def degenerate_proposal_case(kind: str, rng):
    params = dict(feat_stride=8, anchor_sizes=[8, 16], anchor_ratios=[1.0, 2.0], pre_nms_top_n=60,
                  post_nms_top_n=12, nms_thresh=f32(0.7), min_size=2.0)
    infos = [[50, 60, 1], [40, 33, 1]]
    prob, deltas, info = proposal_bottoms(rng, 4, 6, 7, infos)
    anchors = shifted_anchors(base_anchors(params["anchor_sizes"], params["anchor_ratios"]), 6, 7, 8)
    if kind == "no_boxes":
        params["min_size"] = 100.0
    elif kind == "all_equal":   # every anchor decodes to the same box, every score equal
        d = bbox_transform(anchors, np.array([[10.0, 12.0, 30.0, 35.0]]).repeat(len(anchors), 0))
        deltas[:] = d.reshape(6, 7, 4, 4).transpose(2, 3, 0, 1).reshape(1, 16, 6, 7)
        prob[:] = 0.5
    elif kind == "outside":     # a third of the boxes far outside: they clip to nothing
        far = rng.uniform(size=deltas.shape) < 1 / 3
        deltas[:, 0::4][far[:, 0::4]] = 40.0
        deltas[:, 1::4][far[:, 1::4]] = -40.0
    elif kind == "nonfinite":   # NaN / inf / -inf deltas and scores; every box kept: NaN scores show
        params.update(pre_nms_top_n=0, post_nms_top_n=0)
        for v in (np.nan, np.inf, -np.inf):
            deltas[rng.uniform(size=deltas.shape) < 0.1] = v
            prob[rng.uniform(size=prob.shape) < 0.05] = v
    elif kind == "huge":        # anchors far larger than the image: many boxes clip to the whole image
        params.update(anchor_sizes=[8, 1e6])
        deltas *= 4
    return params, [prob, deltas, info]


@pytest.mark.parametrize("kind", DEGENERATE)
@pytest.mark.parametrize("seed", range(2))
def test_proposal_degenerate_inputs(kind, seed):
    params, bottoms = degenerate_proposal_case(kind, np.random.default_rng(seed))
    cpp, ref = run_proposals(params, bottoms)
    assert_same_tops(cpp, ref)
    plain = plain_proposals(params, *bottoms)
    assert_same_tops(cpp, plain)
    rois = cpp[0]
    for i in range(2):
        n = (rois[:, 0] == i).sum()
        if kind == "no_boxes":
            np.testing.assert_array_equal(rois[rois[:, 0] == i, 1:], [[0, 0, *bottoms[2][i, 1::-1]]])
        elif kind == "all_equal":
            assert n == 1 and cpp[1][rois[:, 0] == i] == 0.5
        elif kind == "nonfinite":   # NaN scores last
            nan = np.isnan(cpp[1][rois[:, 0] == i])
            assert not nan.any() or nan[np.argmax(nan):].all()
        else:
            assert 1 <= n <= 12
    assert not np.isnan(rois).any()
    assert np.isnan(cpp[1]).any() == (kind == "nonfinite")


def test_proposal_zero_size_map():
    """Feature maps of no cell (the Python layer cannot read such a blob: pycaffe aborts):
    each image gets the whole image, as propose() without anchors."""
    params = dict(feat_stride=8, anchor_sizes=[8], anchor_ratios=[1.0])
    bottoms = [np.zeros((2, 2, 0, 5), np.float32), np.zeros((2, 4, 0, 5), np.float32),
               np.array([[20, 30, 1], [25, 35, 1]], np.float32)]
    (cpp,) = run_proposals(params, bottoms, python=False)
    for i in range(2):
        boxes, scores = propose(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)), *bottoms[2][i, :2],
                                ProposalConfig())
        np.testing.assert_array_equal(cpp[0][i], [i, *boxes[0]])
        assert cpp[1][i] == scores[0] == 0


# ----------------------------------------------------------------------------- detections

def run_detections(params: dict, bottoms, tops: int = 4):
    net = _layers_net("DetectionOutput", "detection_output_param", "DetectionLayer", [x.shape for x in bottoms],
                      tops, params)
    return _run(net, bottoms)


DETECT_CASES = [
    {},
    dict(score_thresh=f32(0.3), nms_thresh=0.5, max_persons=5, max_faces=3),
    dict(score_thresh=0.0, nms_thresh=f32(0.7), max_persons=0, max_faces=1,
         bbox_stds=[f32(0.2), f32(0.2), f32(0.1), 0.5]),
]


def detection_bottoms(rng, rois_per_image, infos, extra_rois: int = 0):
    rows = []
    for b, (n, info) in enumerate(zip(rois_per_image, infos)):
        xy = rng.uniform(0, 0.8, (n, 2)) * [info[1], info[0]]
        wh = rng.uniform(4, 0.5 * min(info[:2]), (n, 2))
        rows.append(np.column_stack([np.full(n, b), xy, xy + wh]))
    for _ in range(extra_rois):   # rois of an image that im_info does not hold: ignored
        rows.append([[len(infos) + 3, 1, 1, 9, 9]])
    rois = np.concatenate(rows)
    logits = rng.normal(0, 2, (len(rois), 3))
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = rng.normal(0, 1, (len(rois), 12))
    return [x.astype(np.float32) for x in (rois, prob, pred, np.asarray(infos))]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", range(len(DETECT_CASES)))
def test_detection_matches_python_layer_on_random_inputs(seed, case):
    rng = np.random.default_rng(seed)
    bottoms = detection_bottoms(rng, [40, 25, 0], [[60, 80, 1], [50, 45, 1], [30, 30, 1]], extra_rois=2)
    cpp, ref = run_detections(DETECT_CASES[case], bottoms)
    assert_same_tops(cpp, ref)
    assert set(cpp[0][:, 0]) == {0, 1, 2}   # at least one person per image


def test_detection_three_tops_and_degenerate_inputs():
    """Three tops (no face scores); NaN / inf deltas (NaN boxes, which overlap nothing), NaN
    scores, equal rois, huge rois."""
    rng = np.random.default_rng(5)
    rois, prob, pred, info = detection_bottoms(rng, [30, 20], [[60, 80, 1], [50, 45, 1]])
    rois[5:10] = rois[4]               # equal rois
    rois[10:12, 1:] = [-1e7, -1e7, 1e7, 1e7]   # huge rois
    for v in (np.nan, np.inf, -np.inf):
        pred[rng.uniform(size=pred.shape) < 0.05] = v
    prob[rng.uniform(size=prob.shape) < 0.05] = np.nan
    for tops in (3, 4):
        cpp, ref = run_detections(dict(score_thresh=0.1), [rois, prob, pred, info], tops)
        assert_same_tops(cpp, ref)


@pytest.mark.parametrize("seed", range(3))
def test_detection_matches_python_layer_on_generated_images(seed):
    """Rois jittered around the generated persons and faces, scores from their overlaps, deltas
    that regress onto them: the NMS has many overlapping candidates."""
    size = 96
    rng = np.random.default_rng(seed)
    persons, faces = synthetic_boxes(seed, size)
    gt = np.concatenate([persons, faces])
    jitter = rng.normal(0, 3, (len(gt) * 8, 4))
    rois = np.clip(np.repeat(gt, 8, axis=0) + jitter, 0, size)
    rois[:, 2:] = np.maximum(rois[:, 2:], rois[:, :2] + 1)
    ov = bbox_overlaps(rois, gt)
    best = ov.argmax(axis=1)
    is_face = best >= len(persons)
    prob = np.zeros((len(rois), 3))
    prob[:, 1] = np.where(is_face, 0.1, ov.max(axis=1))
    prob[:, 2] = np.where(is_face, ov.max(axis=1), 0.05)
    prob[:, 0] = 1 - prob[:, 1] - prob[:, 2]
    t = bbox_transform(rois, gt[best]) / np.asarray(BBOX_STDS)
    pred = np.tile(t, 3) + rng.normal(0, 0.1, (len(rois), 12))
    bottoms = [np.column_stack([np.zeros(len(rois)), rois]), prob, pred, np.array([[size, size, 1]])]
    bottoms = [x.astype(np.float32) for x in bottoms]
    cpp, ref = run_detections(dict(score_thresh=f32(0.05), nms_thresh=f32(0.4), max_persons=10, max_faces=10),
                              bottoms)
    assert_same_tops(cpp, ref)
    assert cpp[0].shape[0] >= 1


# ----------------------------------------------------------------------------- bad input

BAD_NET = """
import os, sys, tempfile
os.environ["GLOG_minloglevel"] = "2"
import caffe
text = sys.argv[1]
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(text)
net = caffe.Net(f.name, caffe.TEST)
for item in sys.argv[2:]:   # BLOB=VALUE: an input filled with VALUE (the others stay 0)
    blob, value = item.split("=")
    net.blobs[blob].data[...] = float(value)
net.forward()
"""


@pytest.mark.parametrize("layer, shapes, param, message, fill", [
    ("Proposal", [(1, 4, 3, 3), (1, 8, 3, 3), (1, 3)],
     "proposal_param { anchor_sizes: 8 anchor_ratios: 1 }", "object probabilities must have 2A = 2 channels", ""),
    ("Proposal", [(1, 2, 3, 3), (1, 4, 3, 3), (1, 3)],
     "proposal_param { anchor_sizes: 8 anchor_ratios: 1 nms_thresh: 1.5 }", "nms_thresh must lie in [0, 1]", ""),
    ("Proposal", [(1, 2, 3, 3), (1, 4, 3, 3), (1, 3)],
     "proposal_param { anchor_sizes: 8 anchor_ratios: 1 }", "im_info of image 0 must hold a finite height", "b2=-1"),
    ("DetectionOutput", [(4, 5), (4, 3), (4, 8), (1, 3)], "", "deltas must be 4 x 12", ""),
    ("DetectionOutput", [(4, 5), (4, 3), (4, 12), (1, 3)],
     "detection_output_param { bbox_stds: 1 }", "bbox_stds must hold 4 values", ""),
])
def test_bad_input_names_what_is_wrong(layer, shapes, param, message, fill):
    """Bad shapes, parameters or image sizes stop with a message naming the layer and the fault
    (the Input blobs are zero, but those that ``fill`` names: im_info of height -1)."""
    text = "".join(input_layer(f"b{i}", s) for i, s in enumerate(shapes))
    text += (f'layer {{ name: "bad" type: "{layer}"' + "".join(f' bottom: "b{i}"' for i in range(len(shapes)))
             + "".join(f' top: "t{i}"' for i in range(2 if layer == "Proposal" else 3)) + f" {param} }}\n")
    out = subprocess.run([sys.executable, "-c", BAD_NET, text, *fill.split()], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert "layer bad: " + message in out.stderr, out.stderr[-2000:]

"""The detector's C++ layers beside their NumPy reference (the Python layers), timed in one run.

    scripts/bench_detection [--setting small] [--iters 30] [--data ROOT] [--json FILE]

One pycaffe net holds, on the same bottoms, the C++ layer and the Python layer of each of the
train net's detection steps: anchor targets (``AnchorTarget`` / ``gpsnet.layers.anchor_target``),
proposals (``Proposal`` / ``gpsnet.layers.proposal``) and the RPN's box loss (``SmoothL1Loss`` /
``gpsnet.layers.smooth_l1_loss``), with the setting's parameters as ``gpsnet.nets.parts`` writes them
into the nets. The bottoms are the setting's shapes: the data layer's batch of generated images
(ground-truth persons and faces, ``im_info``) and RPN outputs that score each anchor by its best
overlap with a ground-truth box plus noise (as a trained RPN would). Each layer's forward (and the
loss's backward) is timed alone (``net._forward(i, i)``): the median and the best of ``--iters``
passes after one warm-up, with one thread. The C++ tops are checked against the Python ones: the anchors' fg and bg
counts per image (the two draw different samples of the same sizes) and the proposals; exit status 1
where they differ.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpsnet.argtypes import int_at_least
from gpsnet.reference.nets import input_layer, param_fields

LAYERS: tuple[tuple[str, str, str], ...] = (
    # (what, C++ layer name, Python layer name) in the net below
    ("anchor targets", "c_at", "py_at"),
    ("proposals", "c_prop", "py_prop"),
    ("RPN box loss", "c_l1", "py_l1"),
)


def _python(name: str, module: str, layer: str, bottoms, tops, params: dict[str, Any], loss: bool = False) -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    weight = " loss_weight: 1" if loss else ""
    return (f'layer {{ name: "{name}" type: "Python" {b} {t}{weight} python_param {{ module: "{module}" '
            f"layer: \"{layer}\" param_str: '{json.dumps(params)}' }} }}\n")


def bench_net_text(cfg, shape: tuple[int, int, int, int]) -> str:
    """The net: inputs, then each C++ layer and its Python twin on the same bottoms."""
    from gpsnet.nets.parts import RPN_SMOOTH_L1_SIGMA, anchor_target_param, proposal_param

    num, a2, h, w = shape
    at, prop = anchor_target_param(cfg), proposal_param(cfg, train=True)
    py_at = dict(feat_stride=at["feat_stride"], anchor_sizes=at["anchor_size"], anchor_ratios=at["anchor_ratio"],
                 batch_size=at["batch_size"], seed=at["seed"])
    text = (input_layer("score", shape) + input_layer("prob", shape) + input_layer("deltas", (num, 2 * a2, h, w))
            + input_layer("gt_persons", (1, 5)) + input_layer("gt_faces", (1, 5)) + input_layer("im_info", (num, 3)))
    bottoms = ("score", "gt_persons", "gt_faces", "im_info")
    for prefix in ("c_", "py_"):
        tops = [prefix + t for t in ("labels", "targets", "inside", "outside")]
        if prefix == "c_":
            text += ('layer { name: "c_at" type: "AnchorTarget" ' + " ".join(f'bottom: "{x}"' for x in bottoms)
                     + " " + " ".join(f'top: "{x}"' for x in tops)
                     + f" anchor_target_param {{ {param_fields(at)} }} }}\n")
        else:
            text += _python("py_at", "gpsnet.layers.anchor_target", "AnchorTargetLayer", bottoms, tops, py_at)
    text += ('layer { name: "c_prop" type: "Proposal" bottom: "prob" bottom: "deltas" bottom: "im_info" '
             f'top: "c_rois" top: "c_scores" proposal_param {{ {param_fields(prop)} }} }}\n')
    text += _python("py_prop", "gpsnet.layers.proposal", "ProposalLayer", ("prob", "deltas", "im_info"),
                    ("py_rois", "py_scores"), prop)
    loss_bottoms = ("deltas", "c_targets", "c_inside", "c_outside")
    text += ('layer { name: "c_l1" type: "SmoothL1Loss" ' + " ".join(f'bottom: "{x}"' for x in loss_bottoms)
             + f' top: "c_loss" loss_weight: 1 smooth_l1_loss_param {{ sigma: {RPN_SMOOTH_L1_SIGMA} }} '
             + "propagate_down: true propagate_down: false propagate_down: false propagate_down: false }\n")
    text += _python("py_l1", "gpsnet.layers.smooth_l1_loss", "SmoothL1LossLayer", loss_bottoms, ("py_loss",),
                    dict(sigma=RPN_SMOOTH_L1_SIGMA), loss=True)
    return text


def rpn_outputs(rng: np.random.Generator, gt: np.ndarray, anchors: np.ndarray, shape, noise: float = 0.1):
    """RPN probabilities and deltas of one image that a trained RPN could give: score = the anchor's
    best IoU with a ground-truth box plus noise, deltas = the regression onto it plus noise."""
    from gpsnet.detection.boxes import bbox_overlaps, bbox_transform

    a, h, w = shape
    if gt.shape[0]:
        ov = bbox_overlaps(anchors, gt)
        fg = ov.max(axis=1)
        deltas = bbox_transform(anchors, gt[ov.argmax(axis=1)])
    else:
        fg, deltas = np.zeros(anchors.shape[0]), np.zeros((anchors.shape[0], 4))
    fg = np.clip(fg + rng.normal(0, noise, fg.shape), 0, 1)
    deltas = deltas + rng.normal(0, noise, deltas.shape)
    prob = np.concatenate([1 - fg.reshape(h, w, a).transpose(2, 0, 1), fg.reshape(h, w, a).transpose(2, 0, 1)])
    return prob, deltas.reshape(h, w, a, 4).transpose(2, 3, 0, 1).reshape(4 * a, h, w)


def bottoms_of_batch(batch: dict[str, np.ndarray], cfg, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The net's inputs for one data-layer batch."""
    from gpsnet.detection.anchors import base_anchors, shifted_anchors
    from gpsnet.geometry import feature_cells

    num = batch["data"].shape[0]
    h = w = feature_cells(cfg.size, cfg.feat_stride)
    a = len(cfg.anchor_sizes) * len(cfg.anchor_ratios)
    anchors = shifted_anchors(base_anchors(list(cfg.anchor_sizes), list(cfg.anchor_ratios)), h, w, cfg.feat_stride)
    probs, deltas = [], []
    for i in range(num):
        gt = np.concatenate([r[r[:, 0] == i, 1:] for r in (batch["gt_persons"], batch["gt_faces"])])
        p, d = rpn_outputs(rng, gt.astype(np.float64), anchors, (a, h, w))
        probs.append(p)
        deltas.append(d)
    prob = np.stack(probs).astype(np.float32)
    return {"score": prob, "prob": prob, "deltas": np.stack(deltas).astype(np.float32),
            "gt_persons": batch["gt_persons"], "gt_faces": batch["gt_faces"], "im_info": batch["im_info"]}


def _feed(net, arrays: dict[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        arr = np.asarray(arr, np.float32)
        net.blobs[name].reshape(*arr.shape)
        if arr.size:
            net.blobs[name].data[...] = arr
    net.reshape()


def _times_ms(fn, iters: int) -> list[float]:
    fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return times


def time_layers(net, inputs: dict[str, np.ndarray], iters: int) -> dict[str, dict[str, float]]:
    """Forward ms of each C++ / Python layer (plus the loss's backward): the median and the best
    (``<side>_min``: the code's own cost on a shared machine, as ``timeit`` reports) of ``iters``."""
    names = list(net._layer_names)
    _feed(net, inputs)
    net.forward()
    out: dict[str, dict[str, float]] = {}
    for what, c_name, py_name in LAYERS:
        row = {}
        for side, name in (("cpp", c_name), ("python", py_name)):
            i = names.index(name)
            times = _times_ms(lambda: net._forward(i, i), iters)
            if what == "RPN box loss":
                times = [f + b for f, b in zip(times, _times_ms(lambda: net._backward(i, i), iters))]
            row[side] = statistics.median(times)
            row[f"{side}_min"] = min(times)
        out[what] = row
    return out


def check_tops(net) -> list[str]:
    """Where the C++ tops differ from the Python ones beyond what sampling explains."""
    b = {n: np.array(net.blobs[n].data) for n in net.blobs}
    problems = []
    for i in range(b["c_labels"].shape[0]):
        c, p = b["c_labels"][i], b["py_labels"][i]
        for value in (0, 1):
            if (c == value).sum() != (p == value).sum():
                problems.append(f"image {i}: {(c == value).sum()} C++ vs {(p == value).sum()} Python labels {value}")
    if b["c_rois"].shape != b["py_rois"].shape or not np.allclose(b["c_rois"], b["py_rois"], rtol=1e-6, atol=1e-4):
        problems.append(f"proposals differ: {b['c_rois'].shape} vs {b['py_rois'].shape}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_detection", description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="small", choices=("small", "full", "tiny"))
    ap.add_argument("--iters", type=int_at_least(1), default=30, help="timed passes of each layer (median)")
    ap.add_argument("--data", type=Path, help="GPS-layout root (default: a synthetic one of 40 images)")
    ap.add_argument("--json", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    from gpsnet.data.batch import BatchParams, make_batch
    from gpsnet.data.layout import GPSDataset
    from gpsnet.nets.config import setting
    from gpsnet.reference.nets import text_net
    from gpsnet.train import ensure_synthetic

    caffe.set_mode_cpu()
    cfg = setting(args.setting)
    root = ensure_synthetic(args.data, cfg.size - 1, 40, 0)
    ds = GPSDataset(root, "train")
    params = BatchParams.from_dict({"root": str(root), "size": cfg.size, "feat_stride": cfg.feat_stride})
    rng = np.random.default_rng(0)
    batch = make_batch([ds[i] for i in range(cfg.batch_size)], params, rng)
    inputs = bottoms_of_batch(batch, cfg, rng)
    net = text_net(bench_net_text(cfg, inputs["score"].shape))
    table = time_layers(net, inputs, args.iters)
    problems = check_tops(net)
    shape = "x".join(str(d) for d in inputs["score"].shape)
    gts = batch["gt_persons"].shape[0] + batch["gt_faces"].shape[0]
    print(f"GPSNet detection layers, setting {args.setting}: rpn_cls_score {shape}, {gts} gt boxes, "
          f"{net.blobs['c_rois'].shape[0]} proposals; one thread; ms, median (best) of {args.iters} passes")
    print("| layer | C++ | Python (NumPy reference) | Python / C++ (medians) |")
    print("|---|---|---|---|")
    total = {k: sum(r[k] for r in table.values()) for k in ("cpp", "python", "cpp_min", "python_min")}
    for what, row in list(table.items()) + [("all", total)]:
        print(f"| {what} | {row['cpp']:.2f} ({row['cpp_min']:.2f}) | {row['python']:.2f} ({row['python_min']:.2f}) "
              f"| {row['python'] / max(row['cpp'], 1e-9):.1f}x |")
    for p in problems:
        print(f"bench_detection: the C++ and Python tops differ: {p}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, delete=False, suffix=".tmp") as f:
            json.dump(dict(setting=args.setting, shape=list(inputs["score"].shape), gt_boxes=gts, iters=args.iters,
                           ms=table, total_ms=total, problems=problems), f, indent=1)
        os.replace(f.name, args.json)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

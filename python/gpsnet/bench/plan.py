"""The PyTorch twin's plan: the GPSNet (Ad. Fuse) train net's layers and shapes as plain data (JSON),
made from the setting's ``NetConfig`` in the project's environment and read by ``gpsnet.bench.twin``
in an interpreter with torch (which may lack pycaffe and NumPy 2). The parts and their layers:

- ``backbone``: VGG-16 DeepLab-v2 at the setting's output stride (``parts.backbone_strides``), up to conv5_3;
- ``global_aspp``: pool5 and the ASPP branches (fc6 3x3 dilated, fc7 1x1, fc8 1x1 to K classes), summed;
- ``rpn``: rpn_conv_3x3, rpn_cls_score (2A), rpn_bbox_pred (4A);
- ``box_head``: RoIAlign 7x7 of conv5_3, fc6_box, fc7_box, cls_score, bbox_pred (also run, without
  gradient, on the RPN proposals: the detected faces' branch of the train net);
- ``local_aspp``: AdjustedRoIAlign P x P of conv5_3, loc_pool5, the ASPP branches of ``LOCAL_PREFIX``;
- ``fusion``: AdjustBack, the global map's RoIAlign crop, fuse_conv1 3x3, fuse_conv2 1x1.

Convolutions carry BatchNorm + Scale (torch: ``BatchNorm2d``) and no bias where the setting has
``batch_norm``. ``param_shapes`` gives the parameter shapes the twin makes, keyed as
``caffe_profile.param_shapes`` keys the Caffe net's: the two are compared (tests/test_bench_train.py)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gpsnet.classes import NUM_CLASSES
from gpsnet.nets.config import NetConfig
from gpsnet.nets.parts import BOX_CLASSES, BOX_HEAD_FCS, BOX_POOLED, VGG16_BLOCKS, backbone_strides
from gpsnet.nets.solver import Schedule
from gpsnet.nets.variants import LOCAL_PREFIX

PARTS: tuple[str, ...] = ("backbone", "global_aspp", "rpn", "box_head", "local_aspp", "fusion")


def _conv(name: str, cin: int, cout: int, k: int, cfg: NetConfig, dilation: int = 1, relu: bool = True,
          bn: bool | None = None) -> dict[str, Any]:
    bn = cfg.batch_norm if bn is None else bn
    return {"op": "conv", "name": name, "cin": cin, "cout": cout, "k": k, "dilation": dilation,
            "bn": bn, "relu": relu}


def _aspp(prefix: str, cin: int, cfg: NetConfig) -> list[list[dict[str, Any]]]:
    mid = cfg.ch(cfg.fc_channels)
    return [[_conv(f"{prefix}fc6_{i}", cin, mid, 3, cfg, dilation=d),
             _conv(f"{prefix}fc7_{i}", mid, mid, 1, cfg),
             _conv(f"{prefix}fc8_{i}", mid, NUM_CLASSES, 1, cfg, relu=False, bn=False)]
            for i, d in enumerate(cfg.dilations, start=1)]


def twin_plan(cfg: NetConfig, schedule: Schedule, counts: dict[str, int]) -> dict[str, Any]:
    """The twin of the Ad. Fuse train net of ``cfg``; ``counts``: the RoIs per step (``rois``: the
    box head's, ``rpn_rois``: the proposals, ``mask_rois``: the person RoIs of the local parser),
    as the Caffe net had them (its Python target layers pick them per step)."""
    backbone: list[dict[str, Any]] = []
    cin = 3
    for (block, ch, reps), (pool_stride, dilation) in zip(VGG16_BLOCKS, backbone_strides(cfg.feat_stride)):
        for r in range(1, reps + 1):
            backbone.append(_conv(f"conv{block}_{r}", cin, cfg.ch(ch), 3, cfg, dilation=dilation))
            cin = cfg.ch(ch)
        if block < 5:
            backbone.append({"op": "pool", "name": f"pool{block}", "stride": pool_stride})
    c5 = cin
    a = len(cfg.anchor_sizes) * len(cfg.anchor_ratios)
    rpn_mid = cfg.ch(512)
    fc6, fc7, cls, bbox = BOX_HEAD_FCS
    box_fc = cfg.ch(cfg.box_fc)
    fuse_mid = max(cfg.ch(cfg.fuse_channels), NUM_CLASSES)
    return {
        "config": asdict(cfg), "num_classes": NUM_CLASSES, "num_anchors": a,
        "solver": {"type": schedule.solver, "base_lr": schedule.base_lr},
        "counts": dict(counts),
        "parts": {
            "backbone": backbone,
            "global_aspp": {"pool": {"op": "pool", "name": "pool5", "stride": 1}, "branches": _aspp("", c5, cfg)},
            "rpn": [_conv("rpn_conv_3x3", c5, rpn_mid, 3, cfg),
                    _conv("rpn_cls_score", rpn_mid, 2 * a, 1, cfg, relu=False, bn=False),
                    _conv("rpn_bbox_pred", rpn_mid, 4 * a, 1, cfg, relu=False, bn=False)],
            "box_head": {"pooled": BOX_POOLED,
                         "fcs": [{"op": "fc", "name": fc6, "cin": c5 * BOX_POOLED ** 2, "cout": box_fc},
                                 {"op": "fc", "name": fc7, "cin": box_fc, "cout": box_fc}],
                         "cls": {"op": "fc", "name": cls, "cin": box_fc, "cout": BOX_CLASSES},
                         "bbox": {"op": "fc", "name": bbox, "cin": box_fc, "cout": 4 * BOX_CLASSES}},
            "local_aspp": {"pooled": cfg.pooled, "pool": {"op": "pool", "name": f"{LOCAL_PREFIX}pool5", "stride": 1},
                           "branches": _aspp(LOCAL_PREFIX, c5, cfg)},
            "fusion": [_conv("fuse_conv1", 2 * NUM_CLASSES, fuse_mid, 3, cfg),
                       _conv("fuse_conv2", fuse_mid, NUM_CLASSES, 1, cfg, relu=False, bn=False)],
        },
    }


def plan_layers(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The plan's conv / fc layers by part (pools left out), in order."""
    p = plan["parts"]
    box = p["box_head"]
    return {"backbone": [op for op in p["backbone"] if op["op"] == "conv"],
            "global_aspp": [op for br in p["global_aspp"]["branches"] for op in br],
            "rpn": list(p["rpn"]),
            "box_head": [*box["fcs"], box["cls"], box["bbox"]],
            "local_aspp": [op for br in p["local_aspp"]["branches"] for op in br],
            "fusion": list(p["fusion"])}


def part_of_layers(plan: dict[str, Any]) -> dict[str, str]:
    """Layer name -> its part."""
    return {op["name"]: part for part, ops in plan_layers(plan).items() for op in ops}


def param_shapes(plan: dict[str, Any]) -> dict[str, list[list[int]]]:
    """The parameter shapes the twin makes, per layer: a conv's weight (out, in, k, k), then its
    bias (no BatchNorm) or BatchNorm's weight and bias; an fc's weight (out, in) and bias."""
    out: dict[str, list[list[int]]] = {}
    for ops in plan_layers(plan).values():
        for op in ops:
            if op["op"] == "fc":
                out[op["name"]] = [[op["cout"], op["cin"]], [op["cout"]]]
            else:
                w = [op["cout"], op["cin"], op["k"], op["k"]]
                out[op["name"]] = [w, [op["cout"]], [op["cout"]]] if op["bn"] else [w, [op["cout"]]]
    return out


def geometry(plan: dict[str, Any]) -> dict[str, list[int]]:
    """Each conv's [out channels, kernel, dilation, pad, stride] and pool's [kernel, stride, pad] of
    the plan (pools: Caffe's 3x3 pad 1), keyed as ``caffe_profile.geometry`` keys the Caffe net's."""
    p = plan["parts"]
    pools = [op for op in p["backbone"] if op["op"] == "pool"] + [p["global_aspp"]["pool"], p["local_aspp"]["pool"]]
    out = {op["name"]: [3, op["stride"], 1] for op in pools}
    for ops in plan_layers(plan).values():
        for op in ops:
            if op["op"] == "conv":
                out[op["name"]] = [op["cout"], op["k"], op["dilation"], (op["k"] // 2) * op["dilation"], 1]
    return out


def by_part(plan: dict[str, Any], per_layer: dict[str, float]) -> dict[str, float]:
    """Per-layer numbers summed by part; a layer outside the plan's parts under ``other``."""
    parts = part_of_layers(plan)
    out = dict.fromkeys((*PARTS, "other"), 0.0)
    for name, v in per_layer.items():
        out[parts.get(name, "other")] += v
    return out

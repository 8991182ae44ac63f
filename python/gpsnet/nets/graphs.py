"""The variants' nets: ``build`` assembles one train net (of a stage) or test net from the layer pieces
(``gpsnet.nets.parts``) with the graph function its ``VariantSpec.graph`` names (``GRAPHS``): ``joint``
(backbone, detector, local parser, + global parser and fusion), ``det_par`` and ``ins_glo`` (the
baselines, in stages). A new kind of graph is one more ``@graph("name")`` function."""
from __future__ import annotations

from typing import Any, Callable

import caffe
from caffe import layers as L  # noqa: N812 (Caffe's own spelling)

from gpsnet.classes import NUM_CLASSES
from gpsnet.geometry import roi_align_param
from gpsnet.nets.config import NetConfig
from gpsnet.nets.parts import (aspp, bn_spec, conv, data_inputs, detector, major_faces, mask_head, max_pool, parse_loss,
                               python_layer, roi_align, roi_params, train_major_faces, vgg16_deeplab)
from gpsnet.nets.variants import GLOBAL_NET_PREFIX, LOCAL_PREFIX, PARSER_PREFIX, VariantSpec, spec_of

# A graph function adds a variant's layers after the data inputs: (n, spec, cfg, train, stage) -> the
# names of the layers to freeze (a stage starting from an earlier one keeps that one's layers).
Graph = Callable[[Any, VariantSpec, NetConfig, bool, "str | None"], list[str]]
GRAPHS: dict[str, Graph] = {}


def graph(name: str) -> Callable[[Graph], Graph]:
    """Register a graph function under ``name`` (what ``VariantSpec.graph`` names)."""
    def register(fn: Graph) -> Graph:
        if name in GRAPHS:
            raise ValueError(f"graph {name!r} is registered already")
        GRAPHS[name] = fn
        return fn
    return register


def build(variant: str, cfg: NetConfig, train: bool, stage: str | None = None):
    """The NetParameter of one variant's train net (of ``stage`` for a variant trained in stages)
    or its test net (every stage's layers)."""
    spec = spec_of(variant)
    if stage is not None:
        spec.stage(stage)   # (an unknown stage, or one of a variant trained as one net: named)
        if not train:
            raise ValueError(f"variant {variant}: stage {stage!r} names a train net; the test net holds every stage")
    elif train and spec.stages:
        raise ValueError(f"variant {variant} trains in stages ({', '.join(spec.train_stages)}): name the stage")
    if spec.graph not in GRAPHS:
        raise ValueError(f"variant {variant}: unknown graph {spec.graph!r}; registered: {', '.join(GRAPHS)}")
    n = caffe.NetSpec()
    data_inputs(n, cfg, train)
    frozen = GRAPHS[spec.graph](n, spec, cfg, train, stage)
    proto = n.to_proto()
    freeze(proto, frozen)
    return proto


def layer_names(n) -> list[str]:
    """The names of the layers a NetSpec holds so far."""
    return [layer.name for layer in n.to_proto().layer]


FROZEN_PARAM_TYPES = ("Convolution", "InnerProduct", "Scale", "BatchNorm")


def freeze(proto, names: list[str]) -> None:
    """The layers ``names`` of ``proto`` keep the weights they start from: lr 0 on every parameter,
    BatchNorm on its stored statistics (``use_global_stats``)."""
    wanted = set(names)
    for layer in proto.layer:
        if layer.name not in wanted:
            continue
        if layer.type in FROZEN_PARAM_TYPES and not layer.param:
            raise ValueError(f"layer {layer.name}: no param specs to freeze")
        for param in layer.param:
            param.lr_mult = 0
            param.decay_mult = 0
        if layer.type == "BatchNorm":
            layer.batch_norm_param.use_global_stats = True


def silence(n, *tops: str) -> None:
    """The tops a train net does not read (the data layer's, a target only another variant uses):
    silenced, not left as net outputs (Caffe would print every value of those at each display).
    One call per net (a second would replace the first)."""
    assert "silence_unused" not in n.tops, "silence() is called once per net, with every unused top"
    n.silence_unused = L.Silence(*[n.tops[t] for t in tops], ntop=0)


@graph("joint")
def joint_graph(n, spec: VariantSpec, cfg: NetConfig, train: bool, stage: str | None) -> list[str]:
    """The variants trained as one net: backbone, detector and local parser (+ global parser, fusion)."""
    # pool5 feeds only the global parser: a net without one leaves it out (no dangling top: Caffe
    # would compute it and print every value of it as a net output)
    conv5_3, pool5 = vgg16_deeplab(n, n.data, cfg, pool5=spec.global_parser)
    glob = None
    unused = ["label_s8"] if train and not spec.global_parser else []
    if spec.global_parser:
        glob = aspp(n, "", pool5, cfg, train)
        if train:
            n.loss_global = parse_loss(n, glob, n.label_s8, cfg)
        else:
            n.global_prob = L.Softmax(glob)
    detector(n, conv5_3, cfg, train, shared_box_head=spec.adjusted and cfg.train_faces != "gt")
    rois = n.mask_rois if train else n.person_rois
    p = cfg.pooled
    adjusted = spec.adjusted
    if adjusted:
        if train:
            n.major_faces = train_major_faces(n, conv5_3, rois, cfg)
        else:
            n.major_faces = major_faces(rois, n.face_rois, cfg, n.face_scores)
        n.local_feat, n.adjusted_rois = L.AdjustedRoIAlign(
            conv5_3, rois, n.major_faces, ntop=2, propagate_down=[True, False, False],
            adjusted_roi_align_param=dict(roi_params(p, cfg), face_x=cfg.face_x,
                                          face_y=cfg.face_y))
    else:
        n.local_feat = roi_align(conv5_3, rois, p, cfg)
    n.loc_pool5 = max_pool(n, "loc_pool5", n.local_feat, stride=1)
    local = aspp(n, LOCAL_PREFIX, n.loc_pool5, cfg, train)
    if train:
        if adjusted:
            n.mask_label, n.mask_label_adj = python_layer(
                "mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks, n.adjusted_rois,
                ntop=2, params=dict(pooled=p))
            n.loss_local = parse_loss(n, local, n.mask_label_adj, cfg)
            if not spec.fused:   # the labels by the unadjusted rois are the fusion's
                unused.append("mask_label")
        else:
            n.mask_label = python_layer("mask_target", "MaskTargetLayer", rois, n.mask_gt_index,
                                        n.gt_masks, params=dict(pooled=p))
            n.loss_local = parse_loss(n, local, n.mask_label, cfg)
    if adjusted and (spec.fused or not train):   # (a train net without fusion has no use for it)
        n.local_back = L.AdjustBack(local, n.adjusted_rois, rois, propagate_down=[True, False, False],
                                    adjust_back_param=dict(outside_value=0))
        local = n.local_back
    if spec.fused:
        n.global_crop = roi_align(glob, rois, p, cfg)
        n.fuse_concat = L.Concat(local, n.global_crop)
        x = conv(n, "fuse_conv1", n.fuse_concat, max(cfg.ch(cfg.fuse_channels), NUM_CLASSES), ks=3,
                 bn=bn_spec(cfg))
        final = conv(n, "fuse_conv2", x, NUM_CLASSES, ks=1, relu=False, std=0.01)
        if train:
            n.loss_fuse = parse_loss(n, final, n.mask_label, cfg)
    else:
        final = local
    if not train:
        n.parse_prob = L.Softmax(final)
    if unused:
        silence(n, *unused)
    return []


@graph("det_par")
def det_par_graph(n, spec: VariantSpec, cfg: NetConfig, train: bool, stage: str | None) -> list[str]:
    """Det.+Par. as the paper builds it: a Faster R-CNN (stage ``det``), then a single-person
    DeepLab-v2 parser with its own VGG-16 (prefix ``par_``) on image crops of 8 (P - 1) + 1 pixels
    (stride 8 gives P x P) around the *trained* detector's person boxes (stage ``par``: the
    detector runs as at test time, frozen; its boxes matched to a ground-truth person at IoU >= 0.5
    are the parser's RoIs, ``DetectionTargetLayer``). The test net (``stage`` None) is the same
    chain on every detected person. Returns the layers to freeze."""
    conv5_3, _ = vgg16_deeplab(n, n.data, cfg, pool5=False)
    if stage == "det":
        detector(n, conv5_3, cfg, True, mask_outputs=False)
        silence(n, "label_s8", "gt_masks")
        return []
    detector(n, conv5_3, cfg, False)
    frozen: list[str] = []
    rois = n.person_rois
    if stage == "par":
        frozen = layer_names(n)
        n.mask_rois, n.mask_gt_index = python_layer(
            "proposal_target", "DetectionTargetLayer", n.person_rois, n.gt_persons, n.im_info, ntop=2,
            params=dict(max_mask_rois=cfg.max_mask_rois, seed=cfg.seed))
        silence(n, "label_s8", "gt_faces", "person_scores", "face_rois", "face_scores", "iteration")
        rois = n.mask_rois
    crop = cfg.feat_stride * (cfg.pooled - 1) + 1
    n.person_crop = L.RoIAlign(n.data, rois, roi_align_param=roi_align_param(crop, 1, 1, cfg.roi_aligned),
                               propagate_down=[False, False])
    _, par_pool5 = vgg16_deeplab(n, n.person_crop, cfg, prefix=PARSER_PREFIX)
    score = aspp(n, PARSER_PREFIX, par_pool5, cfg, train)
    if train:
        n.mask_label = python_layer("mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks,
                                    params=dict(pooled=cfg.pooled))
        n.loss_parse = parse_loss(n, score, n.mask_label, cfg)
    else:
        n.parse_prob = L.Softmax(score)
    return frozen


@graph("ins_glo")
def ins_glo_graph(n, spec: VariantSpec, cfg: NetConfig, train: bool, stage: str | None) -> list[str]:
    """Ins.+Glo. as the paper builds it: a global DeepLab-v2 parser with its own VGG-16 (prefix
    ``glo_``, stage ``glo``) and a Mask R-CNN-style instance net (backbone, detector, binary mask
    head; stage ``ins``), trained separately; the test net (``stage`` None) runs both on the image
    and labels each instance mask by the global parsing."""
    if stage in (None, "glo"):
        _, glo_pool5 = vgg16_deeplab(n, n.data, cfg, prefix=GLOBAL_NET_PREFIX)
        glob = aspp(n, GLOBAL_NET_PREFIX, glo_pool5, cfg, train)
        if train:
            n.loss_global = parse_loss(n, glob, n.label_s8, cfg)
            silence(n, "im_info", "gt_persons", "gt_faces", "gt_masks", "iteration")
        else:
            n.global_prob = L.Softmax(glob)
    if stage in (None, "ins"):
        conv5_3, _ = vgg16_deeplab(n, n.data, cfg, pool5=False)
        detector(n, conv5_3, cfg, train)
        mask_head(n, conv5_3, n.mask_rois if train else n.person_rois, cfg, train)
        if train:
            silence(n, "label_s8")
    return []

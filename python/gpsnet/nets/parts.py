"""The nets' layer pieces (NetSpec builders): VGG-16 DeepLab-v2 backbone, ASPP, RPN, box head, detector,
the face choice, the parsing losses and the data inputs. Each adds its layers to a ``caffe.NetSpec``
``n`` and returns its top(s); ``gpsnet.nets.graphs`` assembles them into the variants' nets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from caffe import layers as L, params as P  # noqa: N812 (Caffe's own spelling)

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES
from gpsnet.geometry import roi_align_param
from gpsnet.nets.config import NetConfig

@dataclass(frozen=True)
class BatchNormSpec:
    momentum: float


def bn_spec(cfg: NetConfig) -> BatchNormSpec | None:
    return BatchNormSpec(cfg.bn_momentum) if cfg.batch_norm else None


def conv(n, name: str, bottom, nout: int, ks: int = 3, pad: int | None = None, dilation: int = 1,
         relu: bool = True, std: float | None = None, bn: BatchNormSpec | None = None):
    """Convolution (+ BatchNorm and Scale when ``bn``) (+ ReLU when ``relu``); returns the last top."""
    pad = (ks // 2) * dilation if pad is None else pad
    filler = dict(type="gaussian", std=std) if std is not None else dict(type="msra")
    kw: dict[str, Any] = dict(num_output=nout, kernel_size=ks, pad=pad, weight_filler=filler)
    if bn is None:
        kw["bias_filler"] = dict(type="constant", value=0)
        kw["param"] = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
    else:
        kw["bias_term"] = False
        kw["param"] = [dict(lr_mult=1, decay_mult=1)]
    if dilation > 1:
        kw["dilation"] = dilation
    layer = L.Convolution(bottom, **kw)
    setattr(n, name, layer)
    if bn is not None:
        # BatchNorm's mean / variance / count are not learned (lr_mult 0); the phase picks batch or
        # global statistics. In place, as in Caffe's ResNet models.
        setattr(n, f"{name}_bn", L.BatchNorm(layer, in_place=True,
                                             batch_norm_param=dict(moving_average_fraction=bn.momentum),
                                             param=[dict(lr_mult=0, decay_mult=0)] * 3))
        setattr(n, f"{name}_scale", L.Scale(layer, in_place=True, bias_term=True,
                                            param=[dict(lr_mult=1, decay_mult=0),
                                                   dict(lr_mult=1, decay_mult=0)]))
    if relu:
        setattr(n, name.replace("conv", "relu", 1) if "conv" in name else f"{name}_relu",
                L.ReLU(layer, in_place=True))
    return layer


def inner_product(n, name: str, bottom, nout: int, relu: bool, std: float | None = None, share: str | None = None,
        follow: bool = False):
    """InnerProduct (+ ReLU). ``share``: its weight and bias are the Caffe-shared params
    ``<share>_w`` / ``<share>_b``; ``follow``: this layer only reads them (no lr_mult or decay_mult
    of its own: the owner's apply; Caffe rejects a follower whose lr_mult differs)."""
    filler = dict(type="gaussian", std=std) if std is not None else dict(type="xavier")
    if follow:   # its weights are the owner's: a constant filler draws nothing from Caffe's RNG, so
        filler = dict(type="constant", value=0)   # every other layer starts as without this one
    param = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
    if share:
        param = [dict(name=f"{share}_w"), dict(name=f"{share}_b")] if follow else \
            [dict(p, name=f"{share}_{k}") for p, k in zip(param, "wb")]
    layer = L.InnerProduct(bottom, num_output=nout, weight_filler=filler,
                           bias_filler=dict(type="constant", value=0), param=param)
    setattr(n, name, layer)
    if relu:
        setattr(n, f"{name}_relu", L.ReLU(layer, in_place=True))
    return layer


def max_pool(n, name: str, bottom, stride: int):
    layer = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=stride, pad=1)
    setattr(n, name, layer)
    return layer


def backbone_strides(feat_stride: int) -> tuple[tuple[int, int], ...]:
    """(pool stride, conv dilation) of VGG-16's five blocks for an output stride of ``feat_stride``.

    VGG-16 halves the resolution at pool1..pool4; DeepLab-v2 keeps stride 8 by making pool4 and
    pool5 stride 1 and dilating conv5 by 2. Stride 4 also makes pool3 stride 1 (conv4 dilation 2,
    conv5 dilation 4): every removed stride doubles the dilation of the blocks after it."""
    out, dilation, stride = [], 1, 1
    for block in range(1, 6):
        pool = 2 if block <= 4 and stride < feat_stride else 1
        out.append((pool, dilation))
        stride *= pool
        if pool == 1 and block <= 4:
            dilation *= 2
    return tuple(out)


# VGG-16's five blocks: (block, channels at width 1, convolutions); the PyTorch twin reads it too.
VGG16_BLOCKS: tuple[tuple[int, int, int], ...] = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))
BOX_POOLED = 7     # the box head's RoIAlign output (7 x 7)
BOX_CLASSES = 3    # the box head's classes: background, person, face (bbox_pred: 4 per class)


def vgg16_deeplab(n, data, cfg: NetConfig, prefix: str = "", pool5: bool = True):
    """DeepLab-v2 VGG-16 at output stride ``cfg.feat_stride`` (8: pool4 / pool5 stride 1, conv5
    dilation 2). Returns (conv5_3, pool5); ``pool5=False``: no pool5 (a net that only reads conv5_3).

    Random init: MSRA, except conv1_1 (gaussian, std 0.003) whose input is mean-subtracted pixels
    (std ~60): its outputs start at unit scale, so training from scratch does not diverge."""
    x = data
    for (block, ch, reps), (pool_stride, dilation) in zip(VGG16_BLOCKS, backbone_strides(cfg.feat_stride)):
        for r in range(1, reps + 1):
            x = conv(n, f"{prefix}conv{block}_{r}", x, cfg.ch(ch), dilation=dilation,
                     std=0.003 if (block, r) == (1, 1) else None, bn=bn_spec(cfg))
        last_conv = x
        if block < 5 or pool5:
            x = max_pool(n, f"{prefix}pool{block}", x, stride=pool_stride)
    return last_conv, x if pool5 else None


def aspp(n, prefix: str, bottom, cfg: NetConfig, train: bool, nout: int = NUM_CLASSES):
    """DeepLab-v2 ASPP: per dilation fc6 (3x3 dilated), fc7 (1x1), fc8; the fc8s summed."""
    outs = []
    for i, d in enumerate(cfg.dilations, start=1):
        x = conv(n, f"{prefix}fc6_{i}", bottom, cfg.ch(cfg.fc_channels), ks=3, dilation=d, bn=bn_spec(cfg))
        if train and cfg.dropout:
            setattr(n, f"{prefix}drop6_{i}", L.Dropout(x, dropout_ratio=0.5, in_place=True))
        x = conv(n, f"{prefix}fc7_{i}", x, cfg.ch(cfg.fc_channels), ks=1, bn=bn_spec(cfg))
        if train and cfg.dropout:
            setattr(n, f"{prefix}drop7_{i}", L.Dropout(x, dropout_ratio=0.5, in_place=True))
        outs.append(conv(n, f"{prefix}fc8_{i}", x, nout, ks=1, relu=False, std=0.01))
    out = L.Eltwise(*outs, operation=P.Eltwise.SUM)
    setattr(n, f"{prefix}fc8", out)
    return out


def python_layer(module: str, layer: str, *bottoms, params: dict | None = None, ntop: int = 1, **kw):
    return L.Python(*bottoms, python_param=dict(module=f"gpsnet.layers.{module}", layer=layer,
                                                param_str=json.dumps(params or {}, sort_keys=True)),
                    ntop=ntop, **kw)


def softmax_loss(bottom, label, ignore: int = IGNORE_LABEL):
    return L.SoftmaxWithLoss(bottom, label, loss_param=dict(ignore_label=ignore, normalize=True),
                             propagate_down=[True, False])


def parse_loss(n, bottom, label, cfg: NetConfig):
    """The loss of a part-parsing output: softmax cross-entropy (the paper's), or with
    ``cfg.class_balance`` the class-balanced one (InfogainLoss with ``class_weights``)."""
    if not cfg.class_balance:
        return softmax_loss(bottom, label)
    if "class_weights" not in n.tops:
        n.class_weights = python_layer("class_weights", "ClassWeightsLayer",
                                       params=dict(root=cfg.data_root, split="train", power=cfg.class_balance))
    return L.InfogainLoss(bottom, label, n.class_weights,
                          loss_param=dict(ignore_label=IGNORE_LABEL, normalization=P.Loss.VALID),
                          propagate_down=[True, False, False])


def roi_params(pooled: int, cfg: NetConfig) -> dict[str, Any]:
    """The roi_align_param of a RoIAlign-family layer on the backbone's maps (gpsnet.geometry)."""
    return roi_align_param(pooled, cfg.feat_stride, cfg.sampling_ratio, cfg.roi_aligned)


def roi_align(features, rois, pooled: int, cfg: NetConfig):
    """RoIAlign of the nets' feature maps in the one pixel convention (gpsnet.geometry)."""
    return L.RoIAlign(features, rois, roi_align_param=roi_params(pooled, cfg), propagate_down=[True, False])


def anchor_target_param(cfg: NetConfig) -> dict[str, Any]:
    """``anchor_target_param`` of the C++ ``AnchorTarget`` layer (docs/layers.md)."""
    return dict(feat_stride=cfg.feat_stride, anchor_size=list(cfg.anchor_sizes),
                anchor_ratio=list(cfg.anchor_ratios), batch_size=cfg.rpn_batch, seed=cfg.seed)


def proposal_param(cfg: NetConfig, train: bool) -> dict[str, Any]:
    """``proposal_param`` of the C++ ``Proposal`` layer (train / test counts)."""
    pre, post = (cfg.train_pre_nms, cfg.train_post_nms) if train else (cfg.test_pre_nms, cfg.test_post_nms)
    return dict(feat_stride=cfg.feat_stride, anchor_sizes=list(cfg.anchor_sizes),
                anchor_ratios=list(cfg.anchor_ratios), pre_nms_top_n=pre, post_nms_top_n=post,
                nms_thresh=RPN_NMS, min_size=cfg.min_size)


RPN_NMS: float = 0.7           # the proposals' NMS threshold (py-faster-rcnn)
RPN_SMOOTH_L1_SIGMA: float = 3.0
BOX_SMOOTH_L1_SIGMA: float = 1.0


def smooth_l1_loss(pred, targets, inside, outside, sigma: float):
    """The C++ ``SmoothL1Loss`` of box regression (gradient to the predictions only)."""
    return L.SmoothL1Loss(pred, targets, inside, outside, smooth_l1_loss_param=dict(sigma=sigma), loss_weight=1,
                          propagate_down=[True, False, False, False])


def rpn(n, conv5_3, cfg: NetConfig, train: bool):
    """RPN on conv5_3; returns the proposals blob (train / test counts)."""
    a = len(cfg.anchor_sizes) * len(cfg.anchor_ratios)
    x = conv(n, "rpn_conv_3x3", conv5_3, cfg.ch(512), ks=3, bn=bn_spec(cfg))
    n.rpn_cls_score = conv(n, "rpn_cls_score", x, 2 * a, ks=1, relu=False, std=0.01)
    n.rpn_bbox_pred = conv(n, "rpn_bbox_pred", x, 4 * a, ks=1, relu=False, std=0.01)
    n.rpn_cls_score_reshape = L.Reshape(n.rpn_cls_score, shape=dict(dim=[0, 2, -1, 0]))
    if train:
        (n.rpn_labels, n.rpn_bbox_targets, n.rpn_bbox_inside_weights,
         n.rpn_bbox_outside_weights) = L.AnchorTarget(
            n.rpn_cls_score, n.gt_persons, n.gt_faces, n.im_info, n.iteration, ntop=4,
            anchor_target_param=anchor_target_param(cfg), propagate_down=[False] * 5)
        n.rpn_loss_cls = softmax_loss(n.rpn_cls_score_reshape, n.rpn_labels, ignore=-1)
        n.rpn_loss_bbox = smooth_l1_loss(n.rpn_bbox_pred, n.rpn_bbox_targets, n.rpn_bbox_inside_weights,
                                         n.rpn_bbox_outside_weights, RPN_SMOOTH_L1_SIGMA)
    n.rpn_cls_prob = L.Softmax(n.rpn_cls_score_reshape)
    n.rpn_cls_prob_reshape = L.Reshape(n.rpn_cls_prob, shape=dict(dim=[0, 2 * a, -1, 0]))
    n.rpn_rois = L.Proposal(n.rpn_cls_prob_reshape, n.rpn_bbox_pred, n.im_info,
                            proposal_param=proposal_param(cfg, train), propagate_down=[False] * 3)
    return n.rpn_rois


BOX_HEAD_FCS: tuple[str, ...] = ("fc6_box", "fc7_box", "cls_score", "bbox_pred")


def box_head(n, conv5_3, rois, cfg: NetConfig, shared: bool = False, suffix: str = ""):
    """RoIAlign 7x7 -> fc6_box -> fc7_box -> cls_score (3: bg, person, face), bbox_pred (12).
    ``shared``: the fcs' params are named (``<layer>_w``, ``<layer>_b``) so that a second head
    with ``suffix`` (its layers and blobs ``<name><suffix>``) reads the same weights."""
    follow = bool(suffix)
    named = shared or follow

    def fc(name: str, bottom, nout: int, relu: bool, std: float | None = None):
        return inner_product(n, name + suffix, bottom, nout, relu=relu, std=std, share=name if named else None,
                             follow=follow)

    roi_pool = roi_align(conv5_3, rois, BOX_POOLED, cfg)
    setattr(n, f"roi_pool{suffix}", roi_pool)
    fc6, fc7, cls, bbox = BOX_HEAD_FCS
    x = fc(fc6, roi_pool, cfg.ch(cfg.box_fc), relu=True)
    x = fc(fc7, x, cfg.ch(cfg.box_fc), relu=True)
    return fc(cls, x, BOX_CLASSES, relu=False, std=0.01), fc(bbox, x, 4 * BOX_CLASSES, relu=False, std=0.001)


def detector(n, conv5_3, cfg: NetConfig, train: bool, mask_outputs: bool = True, shared_box_head: bool = False):
    """RPN + box head. Train: losses, and the mask RoIs (``mask_rois``, ``mask_gt_index``).
    Test: ``person_rois``, ``person_scores``, ``face_rois``, ``face_scores``. ``shared_box_head``:
    the train box head's params are named, for ``detected_faces``."""
    rpn_rois = rpn(n, conv5_3, cfg, train)
    if train:
        tops = python_layer("proposal_target", "ProposalTargetLayer", rpn_rois, n.gt_persons, n.gt_faces,
                            n.im_info, ntop=7 if mask_outputs else 5,
                            params=dict(batch_size=cfg.roi_batch, max_mask_rois=cfg.max_mask_rois,
                            seed=cfg.seed))
        n.rois, n.labels, n.bbox_targets, n.bbox_inside_weights, n.bbox_outside_weights = tops[:5]
        if mask_outputs:
            n.mask_rois, n.mask_gt_index = tops[5:]
        cls_score, bbox_pred = box_head(n, conv5_3, n.rois, cfg, shared=shared_box_head)
        n.loss_cls = softmax_loss(cls_score, n.labels, ignore=-1)
        n.loss_bbox = smooth_l1_loss(bbox_pred, n.bbox_targets, n.bbox_inside_weights, n.bbox_outside_weights,
                                     BOX_SMOOTH_L1_SIGMA)
    else:
        cls_score, bbox_pred = box_head(n, conv5_3, rpn_rois, cfg)
        n.cls_prob = L.Softmax(cls_score)
        n.person_rois, n.person_scores, n.face_rois, n.face_scores = detections(
            n, rpn_rois, n.cls_prob, bbox_pred, cfg)


def detections(n, rois, cls_prob, bbox_pred, cfg: NetConfig, **kw):
    """The C++ ``DetectionOutput``: the box head's persons and faces (rois, scores of each), as at test."""
    return L.DetectionOutput(rois, cls_prob, bbox_pred, n.im_info, ntop=4,
                             detection_output_param=dict(score_thresh=cfg.det_score_thresh, nms_thresh=cfg.det_nms,
                                                         max_persons=cfg.max_persons, max_faces=cfg.max_persons),
                             **kw)


def major_faces(rois, faces, cfg: NetConfig, scores=None):
    """``FaceMajoritySelect`` of every RoI: among ground-truth ``faces`` (no scores: the largest
    inside wins, the paper's rule), or detected ones with ``scores`` (``face_score_thresh``: a face
    below it never beats one at or above it). No gradient."""
    if scores is None:
        return L.FaceMajoritySelect(rois, faces, propagate_down=[False, False])
    return L.FaceMajoritySelect(rois, faces, scores, propagate_down=[False, False, False],
                                face_majority_select_param=dict(score_threshold=cfg.face_score_thresh))


def detected_faces(n, conv5_3, cfg: NetConfig):
    """The detector's faces inside a train net, as the test nets get them: the box head re-run on
    the RPN proposals (``rpn_rois``: unlike the proposal target's ``rois`` they hold no ground-truth
    box) with the training box head's weights (Caffe-shared params: ``detector(shared_box_head=True)``),
    Softmax, ``DetectionLayer``. Returns (``det_face_rois``, ``det_face_scores``).

    No gradient flows through it: the DetectionLayer's propagate_down is false for every bottom
    and its person tops are silenced, so Caffe's Net::Init marks every layer of the second head
    as needing no backward (a layer whose every top needs no gradient is skipped, and its bottoms
    need none either) and never runs their Backward: the shared weights get only the gradient of
    the training head (tests/test_train_faces.py checks it with the branch's diffs filled)."""
    cls_score, bbox_pred = box_head(n, conv5_3, n.rpn_rois, cfg, suffix="_det")
    n.cls_prob_det = L.Softmax(cls_score)
    (n.det_person_rois, n.det_person_scores, n.det_face_rois, n.det_face_scores) = detections(
        n, n.rpn_rois, n.cls_prob_det, bbox_pred, cfg, propagate_down=[False] * 4)
    n.silence_det_persons = L.Silence(n.det_person_rois, n.det_person_scores, ntop=0)
    return n.det_face_rois, n.det_face_scores


def train_major_faces(n, conv5_3, rois, cfg: NetConfig):
    """The train net's major face of every person RoI by ``cfg.train_faces`` (R x 6)."""
    if cfg.train_faces == "gt":
        return major_faces(rois, n.gt_faces, cfg)
    face_rois, face_scores = detected_faces(n, conv5_3, cfg)
    detected = major_faces(rois, face_rois, cfg, face_scores)
    if cfg.train_faces == "detected":
        return detected
    n.major_faces_det = detected
    n.major_faces_gt = major_faces(rois, n.gt_faces, cfg)
    return python_layer("faces", "MixMajorFacesLayer", n.major_faces_gt, n.major_faces_det,
                        propagate_down=[False, False])


def data_inputs(n, cfg: NetConfig, train: bool) -> None:
    if train:
        params = dict(root=cfg.data_root, split="train", batch_size=cfg.batch_size, size=cfg.size,
                      scales=list(cfg.scales), mirror=True, mean_bgr=list(cfg.mean_bgr),
                      shuffle=True, seed=cfg.seed, prefetch=4, feat_stride=cfg.feat_stride)
        (n.data, n.im_info, n.label, n.label_s8, n.gt_persons, n.gt_faces,
         n.gt_masks, n.iteration) = L.Python(python_param=dict(module="gpsnet.layers.data_layer",
                                                               layer="GPSDataLayer",
                                                               param_str=json.dumps(params, sort_keys=True)),
                                             ntop=8)
        n.silence_label = L.Silence(n.label, ntop=0)
    else:
        n.data = L.Input(shape=dict(dim=[1, 3, cfg.size, cfg.size]))
        n.im_info = L.Input(shape=dict(dim=[1, 3]))


def mask_head(n, conv5_3, rois, cfg: NetConfig, train: bool):
    """Ins.+Glo.: Mask R-CNN-style binary instance masks at P x P in the RoI frame."""
    p = cfg.pooled
    n.mask_feat = roi_align(conv5_3, rois, p, cfg)
    x = conv(n, "mask_conv1", n.mask_feat, cfg.ch(cfg.mask_head_channels), ks=3, bn=bn_spec(cfg))
    x = conv(n, "mask_conv2", x, cfg.ch(cfg.mask_head_channels), ks=3, bn=bn_spec(cfg))
    score = conv(n, "mask_score", x, 2, ks=1, relu=False, std=0.01)
    if train:
        n.mask_label = python_layer("mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks,
                                    params=dict(pooled=p, binary=True))
        n.loss_mask = softmax_loss(score, n.mask_label)
    else:
        n.mask_prob = L.Softmax(score)
    return n

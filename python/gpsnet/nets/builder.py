"""Writes the train/test prototxts and solvers of every variant (``gpsnet build-nets``).

Variants (DESIGN.md section 4, docs/nets.md): ``ad_fuse`` (GPSNet), ``fuse``, ``ad_loc``, ``loc``
(ablations) and the baselines ``det_par`` (Faster R-CNN, then a single-person parser on crops of
its boxes) and ``ins_glo`` (a global parser and a Mask R-CNN-style instance net): the baselines are
separately trained nets (``Stage``), combined only in their test net. ``NetConfig.full()`` is the paper's
setting; ``NetConfig.small()`` a CPU setting (channel multiplier 1/8, 129-px canvas, P = 21).
"""
from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES
from gpsnet.data.batch import DEEPLAB_MEAN_BGR
from gpsnet.geometry import ROI_ALIGNED, ROI_SAMPLING_RATIO, roi_align_param

DEFAULT_DATA_ROOT = "data/synthetic"
REPO_ROOT = Path(__file__).resolve().parents[3]   # the committed prototxt/ lives here


# ------------------------------------------------------------------------------------ the registry
LOCAL_KINDS = ("none", "plain", "adjusted")
# Layer-name prefixes of the parts with their own weights (init-weights maps VGG-16 onto them).
LOCAL_PREFIX = "loc_"       # the local parser's ASPP
PARSER_PREFIX = "par_"      # Det.+Par.: the single-person parser's own VGG-16 and ASPP
GLOBAL_NET_PREFIX = "glo_"  # Ins.+Glo.: the global parser net's own VGG-16 and ASPP


@dataclass(frozen=True)
class Stage:
    """One separately trained net of a variant the paper builds from separate networks: its own
    train net and solver (``train_<name>.prototxt``, ``solver_<name>.prototxt``). ``start_from``:
    the stage whose trained weights it starts from; the layers it shares with that stage are
    frozen (lr 0, BatchNorm on its stored statistics). The test net holds every stage's layers."""
    name: str
    start_from: str | None = None


@dataclass(frozen=True)
class VariantSpec:
    """One variant: its branches, its row in the paper's Tables 2-3, and what its test net outputs.
    The builder, training, inference (decoding), evaluation, the ablation runner and the tests all
    read it; a variant that combines existing branches is one more entry (`register`)."""
    name: str
    label: str                        # its row label in the tables (and in every printed table)
    row: int                          # its place in the tables: `gpsnet ablate` orders rows by it
    global_parser: bool = False       # DeepLab-v2's global parser: loss_global, test output global_prob
    local: str = "none"               # person parser on RoI features: "plain" (RoIAlign) or "adjusted"
                                      # (FaceMajoritySelect + AdjustedRoIAlign, then AdjustBack)
    fused: bool = False               # the fusion branch: local parsing + the global parsing's RoI crop
    instance_masks: bool = False      # Ins.+Glo.: class-agnostic masks labelled by the global parsing
    separate_parser: bool = False     # Det.+Par.: a detector and its own single-person parser on crops
    stages: tuple[Stage, ...] = ()    # separately trained nets, in training order (empty: one net)

    def __post_init__(self) -> None:
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"variant {self.name}: stage names must differ, got {names}")
        for i, st in enumerate(self.stages):
            if st.start_from is not None and st.start_from not in names[:i]:
                raise ValueError(f"variant {self.name}: stage {st.name!r} starts from {st.start_from!r}, "
                                 f"which is not an earlier stage ({names[:i]})")
        if self.local not in LOCAL_KINDS:
            raise ValueError(f"variant {self.name}: local must be one of {LOCAL_KINDS}, got {self.local!r}")
        persons = (self.local != "none") + self.instance_masks + self.separate_parser
        if persons != 1:
            raise ValueError(f"variant {self.name}: exactly one person branch (local, instance_masks or "
                             f"separate_parser), got {persons}")
        if self.fused and not (self.global_parser and self.local != "none"):
            raise ValueError(f"variant {self.name}: fused needs the global parser and a local parser")
        if self.instance_masks and not self.global_parser:
            raise ValueError(f"variant {self.name}: instance masks are labelled by the global parser")
        if self.separate_parser and self.global_parser:
            raise ValueError(f"variant {self.name}: the separate parser has no global parser")

    @property
    def adjusted(self) -> bool:
        return self.local == "adjusted"

    @property
    def person_output(self) -> str:
        """The test net's per-person output: N x K x P x P part probabilities, or the instance masks."""
        return "mask_prob" if self.instance_masks else "parse_prob"

    @property
    def train_stages(self) -> tuple[str | None, ...]:
        """The names of its train nets: the stages, or (None,) for one jointly trained net."""
        return tuple(st.name for st in self.stages) or (None,)

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise ValueError(f"variant {self.name} has no stage {name!r}"
                         + (f"; its stages: {', '.join(self.train_stages)}" if self.stages else
                            " (it trains as one net)"))


REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    """Add a variant to the registry (its name must be new)."""
    if spec.name in REGISTRY:
        raise ValueError(f"variant {spec.name!r} is registered already")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def spec_of(variant: str) -> VariantSpec:
    try:
        return REGISTRY[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(REGISTRY)}") from None


def variants() -> tuple[str, ...]:
    """The registered variants' names (command-line choices are read at parse time)."""
    return tuple(REGISTRY)


def table_order() -> tuple[str, ...]:
    """The registered variants in the order of the paper's tables."""
    return tuple(sorted(REGISTRY, key=lambda v: REGISTRY[v].row))


for _spec in (   # the paper's Tables 2-3
    VariantSpec("ad_fuse", "Ad. Fuse (GPSNet)", 4, global_parser=True, local="adjusted", fused=True),
    VariantSpec("fuse", "Fuse", 3, global_parser=True, local="plain", fused=True),
    VariantSpec("ad_loc", "Ad. Loc.", 2, local="adjusted"),
    VariantSpec("loc", "Loc.", 1, local="plain"),
    VariantSpec("det_par", "Det.+Par.", 5, separate_parser=True,
                stages=(Stage("det"), Stage("par", start_from="det"))),
    VariantSpec("ins_glo", "Ins.+Glo.", 6, global_parser=True, instance_masks=True,
                stages=(Stage("glo"), Stage("ins"))),
):
    register(_spec)
del _spec
VARIANTS: tuple[str, ...] = variants()   # the built-in ones: the committed prototxt/ folders


TRAIN_FACES: tuple[str, ...] = ("gt", "detected", "mix")   # NetConfig.train_faces


@dataclass(frozen=True)
class NetConfig:
    """Everything that differs between the full and the small setting."""
    width: float = 1.0                        # channel multiplier
    feat_stride: int = 8                      # backbone output stride (DeepLab-v2: 8)
    batch_norm: bool = False                  # BatchNorm + Scale after each conv (CPU setting only)
    bn_momentum: float = 0.99                 # BatchNorm moving_average_fraction
    class_balance: float = 0.0                # > 0: class-balanced parsing losses (CPU setting only)
    size: int = 513                           # canvas (8k + 1) of the data layer / test input
    pooled: int = 41                          # P
    dilations: tuple[int, ...] = (6, 12, 18, 24)
    fc_channels: int = 1024                   # ASPP fc6 / fc7 (times width)
    box_fc: int = 1024                        # box head fc6 / fc7 (times width)
    fuse_channels: int = 128                  # first fusion conv (times width, at least K)
    mask_head_channels: int = 256             # ins_glo mask head convs (times width)
    dropout: bool = True                      # DeepLab's dropout after fc6 / fc7 (train nets)
    anchor_sizes: tuple[float, ...] = (16, 32, 64, 128, 256, 512)
    anchor_ratios: tuple[float, ...] = (1.0, 2.0, 3.0)
    rpn_batch: int = 256
    roi_batch: int = 128
    max_mask_rois: int = 16
    train_pre_nms: int = 6000
    train_post_nms: int = 300
    test_pre_nms: int = 3000
    test_post_nms: int = 100
    min_size: float = 4.0
    det_score_thresh: float = 0.05
    # Test nets: a detected face scoring below this never becomes a person's major face while one
    # at or above it lies in the person RoI (FaceMajoritySelect's score_threshold; docs/nets.md).
    face_score_thresh: float = 0.5
    # Train nets of the adjusted variants: the faces FaceMajoritySelect adjusts the person RoIs around
    # (docs/nets.md "The face choice at test"): "detected" (the default: measured best on the held-out
    # split, docs/ablation.md "The face source of training") the detector's own faces of the same step
    # (the box head re-run on the RPN proposals with the training weights, shared and without
    # gradient, then the test nets' rule with face_score_thresh), so training adjusts as the test nets
    # do; "gt" the ground-truth faces (the largest inside wins); "mix" the ground-truth major face
    # where the RoI holds one, else the detected one.
    train_faces: str = "detected"
    det_nms: float = 0.4
    max_persons: int = 30
    batch_size: int = 2
    scales: tuple[float, float] = (0.5, 1.5)
    face_x: float = 0.5                       # where AdjustedRoIAlign puts the major face in the
    face_y: float = 0.2                       # adjusted box: "a fixed relative position" (paper; DESIGN.md 4)
    sampling_ratio: int = ROI_SAMPLING_RATIO  # RoIAlign-family samples per bin and axis (0: adaptive)
    # RoIAlign-family `aligned`: False is the one pixel convention (gpsnet.geometry); True reads every
    # RoI half a feature cell before the pixel its labels and the paste-back use (the nets before the
    # convention was fixed), kept only to measure that offset (docs/ablation.md "The pixel convention").
    roi_aligned: bool = ROI_ALIGNED
    mean_bgr: tuple[float, float, float] = DEEPLAB_MEAN_BGR   # subtracted by the data layer and inference
    data_root: str = DEFAULT_DATA_ROOT
    seed: int = 0

    @staticmethod
    def full() -> "NetConfig":
        return NetConfig()

    @staticmethod
    def small() -> "NetConfig":
        """The CPU setting (docs/nets.md "Settings"): 1/8 width, 193-px canvas at output stride 4
        with BatchNorm and class-balanced parsing losses, P = 28, ASPP dilations scaled to the
        smaller maps as the paper's are to its 65-cell maps and 41-bin RoIs."""
        return NetConfig(width=0.125, size=193, feat_stride=4, batch_norm=True, class_balance=0.5,
                         pooled=28, dilations=(4, 8, 12, 16), fc_channels=512, dropout=False,
                         anchor_sizes=(8, 16, 32, 64, 128), rpn_batch=64, roi_batch=32,
                         max_mask_rois=4, train_pre_nms=600, train_post_nms=64, test_pre_nms=300,
                         test_post_nms=32, min_size=2.0, max_persons=10, scales=(0.75, 1.25))

    @staticmethod
    def tiny() -> "NetConfig":
        """The tests' setting: the small setting's structure (stride 4, BatchNorm) at a 65-px canvas,
        channel multiplier 1/16, P = 11."""
        return replace(NetConfig.small(), width=0.0625, size=65, pooled=11, dilations=(1, 2, 3, 4),
                       anchor_sizes=(8, 16, 32, 64), rpn_batch=32, roi_batch=16, max_mask_rois=3,
                       train_pre_nms=300, train_post_nms=32, test_pre_nms=200, test_post_nms=16,
                       max_persons=6)

    def ch(self, n: int) -> int:
        return max(1, int(round(n * self.width)))

    @property
    def spatial_scale(self) -> float:
        """Image coordinates -> feature coordinates (see gpsnet.geometry)."""
        return 1.0 / self.feat_stride

    def __post_init__(self) -> None:
        if self.feat_stride not in (2, 4, 8):
            raise ValueError(f"feat_stride must be 2, 4 or 8, got {self.feat_stride}")
        if (self.size - 1) % 8:
            raise ValueError(f"size must be 8k + 1, got {self.size}")
        if not (0 < self.face_x < 1 and 0 < self.face_y < 1):
            raise ValueError(f"face position must lie inside the box, got ({self.face_x}, {self.face_y})")
        if self.train_faces not in TRAIN_FACES:
            raise ValueError(f"train_faces must be one of {', '.join(TRAIN_FACES)}, got {self.train_faces!r}")


def _convert(key: str, kind: Any, text: str) -> Any:
    """``text`` as a value of the type ``kind`` (a NetConfig field's: bool, int, float, str or a
    tuple of them, written comma-separated)."""
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            types = [args[0]] * len(parts)
        elif len(parts) != len(args):
            raise ValueError(f"--set {key}={text}: expected {len(args)} comma-separated values")
        else:
            types = list(args)
        return tuple(_convert(key, t, p) for t, p in zip(types, parts))
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {key}={text}: expected a boolean (true/false)")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--set {key}={text}: expected {'an integer' if kind is int else 'a number'}") from None
    return text


def add_set_arg(ap: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a NetConfig field of the setting replaced (``builder.override``)."""
    ap.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                    help="replace a NetConfig field of the setting, e.g. --set train_faces=detected "
                         "(repeatable; the value converted by the field's type, tuples comma-separated; "
                         "the nets are then built, not read from prototxt/)")


def override(cfg: "NetConfig", items: list[str] | tuple[str, ...] | None) -> "NetConfig":
    """``cfg`` with the command line's ``--set KEY=VALUE`` items applied (each VALUE converted by the
    field's type, tuples comma-separated); ``ValueError`` naming an unknown key or a bad value."""
    if not items:
        return cfg
    hints = typing.get_type_hints(NetConfig)
    names = [f.name for f in fields(NetConfig)]
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item}: expected KEY=VALUE")
        if key not in hints or key not in names:
            raise ValueError(f"--set {item}: unknown key {key!r}; NetConfig's fields: {', '.join(names)}")
        changes[key] = _convert(key, hints[key], text)
    try:
        return replace(cfg, **changes)
    except ValueError as err:
        raise ValueError(f"--set {' '.join(items)}: {err}") from None


@dataclass(frozen=True)
class BatchNormSpec:
    momentum: float


def _bn(cfg: NetConfig) -> BatchNormSpec | None:
    return BatchNormSpec(cfg.bn_momentum) if cfg.batch_norm else None


def _caffe() -> tuple[Any, Any]:
    from caffe import layers as L, params as P  # noqa: N812 (Caffe's own spelling)
    return L, P


# ------------------------------------------------------------------------------------ pieces
def _conv(n, name: str, bottom, nout: int, ks: int = 3, pad: int | None = None, dilation: int = 1,
          relu: bool = True, std: float | None = None, bn: BatchNormSpec | None = None):
    """Convolution (+ BatchNorm and Scale when ``bn``) (+ ReLU when ``relu``); returns the last top."""
    L, _ = _caffe()
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


def _fc(n, name: str, bottom, nout: int, relu: bool, std: float | None = None, share: str | None = None,
        follow: bool = False):
    """InnerProduct (+ ReLU). ``share``: its weight and bias are the Caffe-shared params
    ``<share>_w`` / ``<share>_b``; ``follow``: this layer only reads them (no lr_mult or decay_mult
    of its own: the owner's apply; Caffe rejects a follower whose lr_mult differs)."""
    L, _ = _caffe()
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


def _pool(n, name: str, bottom, stride: int):
    L, P = _caffe()
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


def vgg16_deeplab(n, data, cfg: NetConfig, prefix: str = "", pool5: bool = True):
    """DeepLab-v2 VGG-16 at output stride ``cfg.feat_stride`` (8: pool4 / pool5 stride 1, conv5
    dilation 2). Returns (conv5_3, pool5); ``pool5=False``: no pool5 (a net that only reads conv5_3).

    Random init: MSRA, except conv1_1 (gaussian, std 0.003) whose input is mean-subtracted pixels
    (std ~60): its outputs start at unit scale, so training from scratch does not diverge."""
    x = data
    blocks = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))
    for (block, ch, reps), (pool_stride, dilation) in zip(blocks, backbone_strides(cfg.feat_stride)):
        for r in range(1, reps + 1):
            x = _conv(n, f"{prefix}conv{block}_{r}", x, cfg.ch(ch), dilation=dilation,
                      std=0.003 if (block, r) == (1, 1) else None, bn=_bn(cfg))
        conv = x
        if block < 5 or pool5:
            x = _pool(n, f"{prefix}pool{block}", x, stride=pool_stride)
    return conv, x if pool5 else None


def aspp(n, prefix: str, bottom, cfg: NetConfig, train: bool, nout: int = NUM_CLASSES):
    """DeepLab-v2 ASPP: per dilation fc6 (3x3 dilated), fc7 (1x1), fc8; the fc8s summed."""
    L, P = _caffe()
    outs = []
    for i, d in enumerate(cfg.dilations, start=1):
        x = _conv(n, f"{prefix}fc6_{i}", bottom, cfg.ch(cfg.fc_channels), ks=3, dilation=d, bn=_bn(cfg))
        if train and cfg.dropout:
            setattr(n, f"{prefix}drop6_{i}", L.Dropout(x, dropout_ratio=0.5, in_place=True))
        x = _conv(n, f"{prefix}fc7_{i}", x, cfg.ch(cfg.fc_channels), ks=1, bn=_bn(cfg))
        if train and cfg.dropout:
            setattr(n, f"{prefix}drop7_{i}", L.Dropout(x, dropout_ratio=0.5, in_place=True))
        outs.append(_conv(n, f"{prefix}fc8_{i}", x, nout, ks=1, relu=False, std=0.01))
    out = L.Eltwise(*outs, operation=P.Eltwise.SUM)
    setattr(n, f"{prefix}fc8", out)
    return out


def _python(module: str, layer: str, *bottoms, params: dict | None = None, ntop: int = 1, **kw):
    L, _ = _caffe()
    return L.Python(*bottoms, python_param=dict(module=f"gpsnet.layers.{module}", layer=layer,
                                                param_str=json.dumps(params or {}, sort_keys=True)),
                    ntop=ntop, **kw)


def _softmax_loss(bottom, label, ignore: int = IGNORE_LABEL):
    L, _ = _caffe()
    return L.SoftmaxWithLoss(bottom, label, loss_param=dict(ignore_label=ignore, normalize=True),
                             propagate_down=[True, False])


def _parse_loss(n, bottom, label, cfg: NetConfig):
    """The loss of a part-parsing output: softmax cross-entropy (the paper's), or with
    ``cfg.class_balance`` the class-balanced one (InfogainLoss with ``class_weights``)."""
    if not cfg.class_balance:
        return _softmax_loss(bottom, label)
    L, P = _caffe()
    if "class_weights" not in n.tops:
        n.class_weights = _python("class_weights", "ClassWeightsLayer",
                                  params=dict(root=cfg.data_root, split="train", power=cfg.class_balance))
    return L.InfogainLoss(bottom, label, n.class_weights,
                          loss_param=dict(ignore_label=IGNORE_LABEL, normalization=P.Loss.VALID),
                          propagate_down=[True, False, False])


def _roi_param(pooled: int, cfg: NetConfig) -> dict[str, Any]:
    """The roi_align_param of a RoIAlign-family layer on the backbone's maps (gpsnet.geometry)."""
    return roi_align_param(pooled, cfg.feat_stride, cfg.sampling_ratio, cfg.roi_aligned)


def _roi_align(features, rois, pooled: int, cfg: NetConfig):
    """RoIAlign of the nets' feature maps in the one pixel convention (gpsnet.geometry)."""
    L, _ = _caffe()
    return L.RoIAlign(features, rois, roi_align_param=_roi_param(pooled, cfg), propagate_down=[True, False])


def _anchor_params(cfg: NetConfig) -> dict[str, Any]:
    return dict(feat_stride=cfg.feat_stride, anchor_sizes=list(cfg.anchor_sizes),
                anchor_ratios=list(cfg.anchor_ratios))


def rpn(n, conv5_3, cfg: NetConfig, train: bool):
    """RPN on conv5_3; returns the proposals blob (train / test counts)."""
    L, _ = _caffe()
    a = len(cfg.anchor_sizes) * len(cfg.anchor_ratios)
    x = _conv(n, "rpn_conv_3x3", conv5_3, cfg.ch(512), ks=3, bn=_bn(cfg))
    n.rpn_cls_score = _conv(n, "rpn_cls_score", x, 2 * a, ks=1, relu=False, std=0.01)
    n.rpn_bbox_pred = _conv(n, "rpn_bbox_pred", x, 4 * a, ks=1, relu=False, std=0.01)
    n.rpn_cls_score_reshape = L.Reshape(n.rpn_cls_score, shape=dict(dim=[0, 2, -1, 0]))
    if train:
        (n.rpn_labels, n.rpn_bbox_targets, n.rpn_bbox_inside_weights,
         n.rpn_bbox_outside_weights) = _python(
            "anchor_target", "AnchorTargetLayer", n.rpn_cls_score, n.gt_persons, n.gt_faces,
            n.im_info, ntop=4,
            params=dict(_anchor_params(cfg), batch_size=cfg.rpn_batch, seed=cfg.seed))
        n.rpn_loss_cls = _softmax_loss(n.rpn_cls_score_reshape, n.rpn_labels, ignore=-1)
        n.rpn_loss_bbox = _python("smooth_l1_loss", "SmoothL1LossLayer", n.rpn_bbox_pred,
                                  n.rpn_bbox_targets, n.rpn_bbox_inside_weights,
                                  n.rpn_bbox_outside_weights, params=dict(sigma=3.0), loss_weight=1,
                                  propagate_down=[True, False, False, False])
    n.rpn_cls_prob = L.Softmax(n.rpn_cls_score_reshape)
    n.rpn_cls_prob_reshape = L.Reshape(n.rpn_cls_prob, shape=dict(dim=[0, 2 * a, -1, 0]))
    pre, post = (cfg.train_pre_nms, cfg.train_post_nms) if train else (cfg.test_pre_nms, cfg.test_post_nms)
    n.rpn_rois = _python("proposal", "ProposalLayer", n.rpn_cls_prob_reshape, n.rpn_bbox_pred,
                         n.im_info, params=dict(_anchor_params(cfg), pre_nms_top_n=pre,
                                                post_nms_top_n=post, nms_thresh=0.7,
                                                min_size=cfg.min_size))
    return n.rpn_rois


BOX_HEAD_FCS: tuple[str, ...] = ("fc6_box", "fc7_box", "cls_score", "bbox_pred")


def box_head(n, conv5_3, rois, cfg: NetConfig, shared: bool = False, suffix: str = ""):
    """RoIAlign 7x7 -> fc6_box -> fc7_box -> cls_score (3: bg, person, face), bbox_pred (12).
    ``shared``: the fcs' params are named (``<layer>_w``, ``<layer>_b``) so that a second head
    with ``suffix`` (its layers and blobs ``<name><suffix>``) reads the same weights."""
    follow = bool(suffix)
    named = shared or follow

    def fc(name: str, bottom, nout: int, relu: bool, std: float | None = None):
        return _fc(n, name + suffix, bottom, nout, relu=relu, std=std, share=name if named else None,
                   follow=follow)

    roi_pool = _roi_align(conv5_3, rois, 7, cfg)
    setattr(n, f"roi_pool{suffix}", roi_pool)
    fc6, fc7, cls, bbox = BOX_HEAD_FCS
    x = fc(fc6, roi_pool, cfg.ch(cfg.box_fc), relu=True)
    x = fc(fc7, x, cfg.ch(cfg.box_fc), relu=True)
    return fc(cls, x, 3, relu=False, std=0.01), fc(bbox, x, 12, relu=False, std=0.001)


def detector(n, conv5_3, cfg: NetConfig, train: bool, mask_outputs: bool = True, shared_box_head: bool = False):
    """RPN + box head. Train: losses, and the mask RoIs (``mask_rois``, ``mask_gt_index``).
    Test: ``person_rois``, ``person_scores``, ``face_rois``, ``face_scores``. ``shared_box_head``:
    the train box head's params are named, for ``detected_faces``."""
    L, _ = _caffe()
    rpn_rois = rpn(n, conv5_3, cfg, train)
    if train:
        tops = _python("proposal_target", "ProposalTargetLayer", rpn_rois, n.gt_persons, n.gt_faces,
                       n.im_info, ntop=7 if mask_outputs else 5,
                       params=dict(batch_size=cfg.roi_batch, max_mask_rois=cfg.max_mask_rois,
                                   seed=cfg.seed))
        n.rois, n.labels, n.bbox_targets, n.bbox_inside_weights, n.bbox_outside_weights = tops[:5]
        if mask_outputs:
            n.mask_rois, n.mask_gt_index = tops[5:]
        cls_score, bbox_pred = box_head(n, conv5_3, n.rois, cfg, shared=shared_box_head)
        n.loss_cls = _softmax_loss(cls_score, n.labels, ignore=-1)
        n.loss_bbox = _python("smooth_l1_loss", "SmoothL1LossLayer", bbox_pred, n.bbox_targets,
                              n.bbox_inside_weights, n.bbox_outside_weights, params=dict(sigma=1.0),
                              loss_weight=1, propagate_down=[True, False, False, False])
    else:
        cls_score, bbox_pred = box_head(n, conv5_3, rpn_rois, cfg)
        n.cls_prob = L.Softmax(cls_score)
        n.person_rois, n.person_scores, n.face_rois, n.face_scores = _detections(
            n, rpn_rois, n.cls_prob, bbox_pred, cfg)


def _detections(n, rois, cls_prob, bbox_pred, cfg: NetConfig, **kw):
    """``DetectionLayer``: the box head's persons and faces (rois, scores of each), as at test."""
    return _python("proposal", "DetectionLayer", rois, cls_prob, bbox_pred, n.im_info, ntop=4,
                   params=dict(score_thresh=cfg.det_score_thresh, nms_thresh=cfg.det_nms,
                               max_persons=cfg.max_persons, max_faces=cfg.max_persons), **kw)


def _major_faces(rois, faces, cfg: NetConfig, scores=None):
    """``FaceMajoritySelect`` of every RoI: among ground-truth ``faces`` (no scores: the largest
    inside wins, the paper's rule), or detected ones with ``scores`` (``face_score_thresh``: a face
    below it never beats one at or above it). No gradient."""
    L, _ = _caffe()
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
    L, _ = _caffe()
    cls_score, bbox_pred = box_head(n, conv5_3, n.rpn_rois, cfg, suffix="_det")
    n.cls_prob_det = L.Softmax(cls_score)
    (n.det_person_rois, n.det_person_scores, n.det_face_rois, n.det_face_scores) = _detections(
        n, n.rpn_rois, n.cls_prob_det, bbox_pred, cfg, propagate_down=[False] * 4)
    n.silence_det_persons = L.Silence(n.det_person_rois, n.det_person_scores, ntop=0)
    return n.det_face_rois, n.det_face_scores


def train_major_faces(n, conv5_3, rois, cfg: NetConfig):
    """The train net's major face of every person RoI by ``cfg.train_faces`` (R x 6)."""
    if cfg.train_faces == "gt":
        return _major_faces(rois, n.gt_faces, cfg)
    face_rois, face_scores = detected_faces(n, conv5_3, cfg)
    detected = _major_faces(rois, face_rois, cfg, face_scores)
    if cfg.train_faces == "detected":
        return detected
    n.major_faces_det = detected
    n.major_faces_gt = _major_faces(rois, n.gt_faces, cfg)
    return _python("faces", "MixMajorFacesLayer", n.major_faces_gt, n.major_faces_det,
                   propagate_down=[False, False])


def _inputs(n, cfg: NetConfig, train: bool) -> None:
    L, _ = _caffe()
    if train:
        params = dict(root=cfg.data_root, split="train", batch_size=cfg.batch_size, size=cfg.size,
                      scales=list(cfg.scales), mirror=True, mean_bgr=list(cfg.mean_bgr),
                      shuffle=True, seed=cfg.seed, prefetch=4, feat_stride=cfg.feat_stride)
        (n.data, n.im_info, n.label, n.label_s8, n.gt_persons, n.gt_faces,
         n.gt_masks) = L.Python(python_param=dict(module="gpsnet.layers.data_layer",
                                                  layer="GPSDataLayer",
                                                  param_str=json.dumps(params, sort_keys=True)),
                                ntop=7)
        n.silence_label = L.Silence(n.label, ntop=0)
    else:
        n.data = L.Input(shape=dict(dim=[1, 3, cfg.size, cfg.size]))
        n.im_info = L.Input(shape=dict(dim=[1, 3]))


# ------------------------------------------------------------------------------------ variants
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
    import caffe
    n = caffe.NetSpec()
    _inputs(n, cfg, train)
    frozen: list[str] = []
    if spec.separate_parser:
        frozen = _build_det_par(n, cfg, stage)
    elif spec.instance_masks:
        _build_ins_glo(n, cfg, stage)
    else:
        _build_joint(n, spec, cfg, train)
    proto = n.to_proto()
    _freeze(proto, frozen)
    return proto


def _layer_names(n) -> list[str]:
    """The names of the layers a NetSpec holds so far."""
    return [layer.name for layer in n.to_proto().layer]


FROZEN_PARAM_TYPES = ("Convolution", "InnerProduct", "Scale", "BatchNorm")


def _freeze(proto, names: list[str]) -> None:
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


def _silence(n, *tops: str) -> None:
    """The data layer's tops a stage's train net does not read (not left as outputs)."""
    L, _ = _caffe()
    n.silence_unused = L.Silence(*[n.tops[t] for t in tops], ntop=0)


def _build_joint(n, spec: VariantSpec, cfg: NetConfig, train: bool) -> None:
    """The variants trained as one net: backbone, detector and local parser (+ global parser, fusion)."""
    L, _ = _caffe()
    conv5_3, pool5 = vgg16_deeplab(n, n.data, cfg)
    glob = None
    if spec.global_parser:
        glob = aspp(n, "", pool5, cfg, train)
        if train:
            n.loss_global = _parse_loss(n, glob, n.label_s8, cfg)
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
            n.major_faces = _major_faces(rois, n.face_rois, cfg, n.face_scores)
        n.local_feat, n.adjusted_rois = L.AdjustedRoIAlign(
            conv5_3, rois, n.major_faces, ntop=2, propagate_down=[True, False, False],
            adjusted_roi_align_param=dict(_roi_param(p, cfg), face_x=cfg.face_x,
                                          face_y=cfg.face_y))
    else:
        n.local_feat = _roi_align(conv5_3, rois, p, cfg)
    n.loc_pool5 = _pool(n, "loc_pool5", n.local_feat, stride=1)
    local = aspp(n, LOCAL_PREFIX, n.loc_pool5, cfg, train)
    if train:
        if adjusted:
            n.mask_label, n.mask_label_adj = _python(
                "mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks, n.adjusted_rois,
                ntop=2, params=dict(pooled=p))
            n.loss_local = _parse_loss(n, local, n.mask_label_adj, cfg)
        else:
            n.mask_label = _python("mask_target", "MaskTargetLayer", rois, n.mask_gt_index,
                                   n.gt_masks, params=dict(pooled=p))
            n.loss_local = _parse_loss(n, local, n.mask_label, cfg)
    if adjusted:
        n.local_back = L.AdjustBack(local, n.adjusted_rois, rois, propagate_down=[True, False, False],
                                    adjust_back_param=dict(outside_value=0))
        local = n.local_back
    if spec.fused:
        n.global_crop = _roi_align(glob, rois, p, cfg)
        n.fuse_concat = L.Concat(local, n.global_crop)
        x = _conv(n, "fuse_conv1", n.fuse_concat, max(cfg.ch(cfg.fuse_channels), NUM_CLASSES), ks=3,
                  bn=_bn(cfg))
        final = _conv(n, "fuse_conv2", x, NUM_CLASSES, ks=1, relu=False, std=0.01)
        if train:
            n.loss_fuse = _parse_loss(n, final, n.mask_label, cfg)
    else:
        final = local
    if not train:
        n.parse_prob = L.Softmax(final)


def _mask_head(n, conv5_3, rois, cfg: NetConfig, train: bool):
    """Ins.+Glo.: Mask R-CNN-style binary instance masks at P x P in the RoI frame."""
    L, _ = _caffe()
    p = cfg.pooled
    n.mask_feat = _roi_align(conv5_3, rois, p, cfg)
    x = _conv(n, "mask_conv1", n.mask_feat, cfg.ch(cfg.mask_head_channels), ks=3, bn=_bn(cfg))
    x = _conv(n, "mask_conv2", x, cfg.ch(cfg.mask_head_channels), ks=3, bn=_bn(cfg))
    score = _conv(n, "mask_score", x, 2, ks=1, relu=False, std=0.01)
    if train:
        n.mask_label = _python("mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks,
                               params=dict(pooled=p, binary=True))
        n.loss_mask = _softmax_loss(score, n.mask_label)
    else:
        n.mask_prob = L.Softmax(score)
    return n


def _build_det_par(n, cfg: NetConfig, stage: str | None) -> list[str]:
    """Det.+Par. as the paper builds it: a Faster R-CNN (stage ``det``), then a single-person
    DeepLab-v2 parser with its own VGG-16 (prefix ``par_``) on image crops of 8 (P - 1) + 1 pixels
    (stride 8 gives P x P) around the *trained* detector's person boxes (stage ``par``: the
    detector runs as at test time, frozen; its boxes matched to a ground-truth person at IoU >= 0.5
    are the parser's RoIs, ``DetectionTargetLayer``). The test net (``stage`` None) is the same
    chain on every detected person. Returns the layers to freeze."""
    L, _ = _caffe()
    conv5_3, _ = vgg16_deeplab(n, n.data, cfg, pool5=False)
    if stage == "det":
        detector(n, conv5_3, cfg, True, mask_outputs=False)
        _silence(n, "label_s8", "gt_masks")
        return []
    detector(n, conv5_3, cfg, False)
    frozen: list[str] = []
    rois = n.person_rois
    if stage == "par":
        frozen = _layer_names(n)
        n.mask_rois, n.mask_gt_index = _python(
            "proposal_target", "DetectionTargetLayer", n.person_rois, n.gt_persons, n.im_info, ntop=2,
            params=dict(max_mask_rois=cfg.max_mask_rois, seed=cfg.seed))
        _silence(n, "label_s8", "gt_faces", "person_scores", "face_rois", "face_scores")
        rois = n.mask_rois
    crop = cfg.feat_stride * (cfg.pooled - 1) + 1
    n.person_crop = L.RoIAlign(n.data, rois, roi_align_param=roi_align_param(crop, 1, 1, cfg.roi_aligned),
                               propagate_down=[False, False])
    _, par_pool5 = vgg16_deeplab(n, n.person_crop, cfg, prefix=PARSER_PREFIX)
    score = aspp(n, PARSER_PREFIX, par_pool5, cfg, train=stage is not None)
    if stage is not None:
        n.mask_label = _python("mask_target", "MaskTargetLayer", rois, n.mask_gt_index, n.gt_masks,
                               params=dict(pooled=cfg.pooled))
        n.loss_parse = _parse_loss(n, score, n.mask_label, cfg)
    else:
        n.parse_prob = L.Softmax(score)
    return frozen


def _build_ins_glo(n, cfg: NetConfig, stage: str | None) -> None:
    """Ins.+Glo. as the paper builds it: a global DeepLab-v2 parser with its own VGG-16 (prefix
    ``glo_``, stage ``glo``) and a Mask R-CNN-style instance net (backbone, detector, binary mask
    head; stage ``ins``), trained separately; the test net (``stage`` None) runs both on the image
    and labels each instance mask by the global parsing."""
    L, _ = _caffe()
    train = stage is not None
    if stage in (None, "glo"):
        _, glo_pool5 = vgg16_deeplab(n, n.data, cfg, prefix=GLOBAL_NET_PREFIX)
        glob = aspp(n, GLOBAL_NET_PREFIX, glo_pool5, cfg, train)
        if train:
            n.loss_global = _parse_loss(n, glob, n.label_s8, cfg)
            _silence(n, "gt_persons", "gt_faces", "gt_masks")
        else:
            n.global_prob = L.Softmax(glob)
    if stage in (None, "ins"):
        conv5_3, _ = vgg16_deeplab(n, n.data, cfg, pool5=False)
        detector(n, conv5_3, cfg, train)
        _mask_head(n, conv5_3, n.mask_rois if train else n.person_rois, cfg, train)
        if train:
            _silence(n, "label_s8")


# ------------------------------------------------------------------------------------ files
SOLVER_HEADER = "# GPSNet solver"   # the first line of every solver the builder writes
NET_NAME_PREFIX = "gpsnet_"          # every net it writes begins `name: "gpsnet_<variant>_...`
SOLVER_TEMPLATE = SOLVER_HEADER + """ ({why}). `caffe train -solver` runs it from the repository root
# (docs/nets.md "The Caffe tool"); scripts/train writes its own with the run folder's paths.
train_net: "{train_net}"
base_lr: {base_lr:g}
{policy}momentum: 0.9
weight_decay: 0.0005
iter_size: 1
max_iter: {max_iter}
display: 20
average_loss: 20
snapshot: {snapshot}
snapshot_prefix: "{snapshot_prefix}"
random_seed: {seed}
{solver_type}"""


@dataclass(frozen=True)
class Schedule:
    """A solver schedule: what ``--solver``, ``--lr`` and ``--lr-policy`` select."""
    solver: str
    base_lr: float
    lr_policy: str

    def argv(self) -> list[str]:
        return ["--solver", self.solver, "--lr", f"{self.base_lr:g}", "--lr-policy", self.lr_policy]


# The paper's schedule (section 5.1), written once: every solver and the training log read it; and the
# CPU setting's, for short runs from random init (the demo, the ablation table, the overfit test, the
# committed small solvers; docs/nets.md "Schedules").
PAPER_SCHEDULE = Schedule("SGD", 0.001, "step")
PAPER_STEP = dict(stepsize=50000, gamma=0.1)
PAPER_MAX_ITER = 100000
CPU_SCHEDULE = Schedule("Adam", 0.002, "poly")
CPU_MAX_ITER = 1600   # the demo's run, and the committed small solvers' length
POLY_POWER = 0.9   # DeepLab-v2's "poly" policy: lr = base_lr (1 - iter / max_iter) ^ power


def learning_rate(it: int, base_lr: float, policy: str, max_iter: int) -> float:
    """The learning rate Caffe's solver uses at iteration ``it`` (policies "step" and "poly")."""
    if policy == "step":
        return base_lr * PAPER_STEP["gamma"] ** (it // PAPER_STEP["stepsize"])
    if policy == "poly":
        return base_lr * (1.0 - it / max_iter) ** POLY_POWER
    raise ValueError(f"lr policy {policy!r}: step or poly")


def solver_text(train_net: str, snapshot_prefix: str, schedule: Schedule = PAPER_SCHEDULE,
                max_iter: int = PAPER_MAX_ITER, snapshot: int | None = None, seed: int = 0) -> str:
    """A Caffe solver for ``schedule``: the paper's (SGD, step) or ``Adam`` (momentum2 0.999) and
    ``poly`` (DeepLab-v2's, power 0.9, down to 0 at ``max_iter``) for short runs from scratch.
    ``snapshot`` defaults to a tenth of the run (the paper's 10000 of 100000)."""
    if schedule.lr_policy == "step":
        policy = 'lr_policy: "step"\n' + "".join(f"{k}: {v:g}\n" for k, v in PAPER_STEP.items())
    elif schedule.lr_policy == "poly":
        policy = f'lr_policy: "poly"\npower: {POLY_POWER}\n'
    else:
        raise ValueError(f"lr policy {schedule.lr_policy!r}: step or poly")
    if schedule.solver not in ("SGD", "Adam"):
        raise ValueError(f"solver type {schedule.solver!r}: SGD or Adam")
    why = ("the paper's schedule, section 5.1" if schedule == PAPER_SCHEDULE else
           "the CPU schedule of the small setting" if schedule == CPU_SCHEDULE else "a custom schedule")
    return SOLVER_TEMPLATE.format(
        why=why, train_net=train_net, base_lr=schedule.base_lr, policy=policy, max_iter=max_iter,
        snapshot=max(1, max_iter // 10) if snapshot is None else snapshot, snapshot_prefix=snapshot_prefix,
        seed=seed, solver_type='type: "Adam"\nmomentum2: 0.999\n' if schedule.solver == "Adam" else "")


def net_text(variant: str, cfg: NetConfig, train: bool, stage: str | None = None) -> str:
    proto = build(variant, cfg, train, stage)
    proto.name = f"{NET_NAME_PREFIX}{variant}_{'train' if train else 'test'}" + (f"_{stage}" if stage else "")
    return str(proto)


def train_net_file(stage: str | None) -> str:
    """A variant's train prototxt's name in its folder (a stage's: ``train_<stage>.prototxt``)."""
    return f"train_{stage}.prototxt" if stage else "train.prototxt"


def solver_file(stage: str | None) -> str:
    return f"solver_{stage}.prototxt" if stage else "solver.prototxt"


def snapshot_name(variant: str, stage: str | None) -> str:
    """The snapshots' file-name prefix of a variant's (stage's) training."""
    return f"{variant}_{stage}" if stage else variant


def net_param_text(variant: str, cfg: NetConfig, train: bool, net: str | None = None,
                   stage: str | None = None) -> str:
    """The prototxt text: ``--net`` if given (checked: a NetParameter prototxt), the committed file
    when ``cfg`` is a setting with committed nets and the file exists, else the builder."""
    if net:
        return read_net_prototxt(Path(net))
    if stage is not None:
        spec_of(variant).stage(stage)   # (named when unknown)
    committed = committed_setting(cfg)
    if committed is not None:
        path = committed.variant_dir(REPO_ROOT / "prototxt", variant) / (train_net_file(stage) if train else "test.prototxt")
        if path.is_file():
            return path.read_text()
    return net_text(variant, cfg, train, stage)


def read_net_prototxt(path: Path) -> str:
    """A prototxt's text; ``ValueError`` naming the file when it is not a readable NetParameter."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    try:
        text = path.read_text()
        text_format.Merge(text, caffe_pb2.NetParameter())
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--net {path}: unreadable ({err})") from None
    except text_format.ParseError as err:
        raise ValueError(f"--net {path}: not a Caffe net prototxt (NetParameter): {err}") from None
    return text


@dataclass(frozen=True)
class Setting:
    """A named setting, the one thing every command's ``--setting`` / ``--small`` selects: its nets'
    ``NetConfig``, the solver schedule and length it trains with (``gpsnet train`` and its committed
    solvers alike), and ``folder``, where its committed nets lie under prototxt/ (None: none)."""
    name: str
    cfg: NetConfig
    schedule: Schedule
    max_iter: int
    folder: str | None

    def variant_dir(self, out: Path, variant: str) -> Path:
        """A variant's folder of this setting's nets under ``out`` (a prototxt/ or snapshots/ tree)."""
        if self.folder is None:
            raise ValueError(f"setting {self.name}: no committed nets")
        return out / self.folder / variant


# The paper's, the CPU one, the tests' (tiny: no committed nets; the tests name their schedule).
_SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("full", NetConfig.full(), PAPER_SCHEDULE, PAPER_MAX_ITER, ""),
    Setting("small", NetConfig.small(), CPU_SCHEDULE, CPU_MAX_ITER, "small"),
    Setting("tiny", NetConfig.tiny(), PAPER_SCHEDULE, PAPER_MAX_ITER, None),
)}
SETTINGS: tuple[str, ...] = tuple(_SETTINGS)


def named_setting(name: str) -> Setting:
    try:
        return _SETTINGS[name]
    except KeyError:
        raise ValueError(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}") from None


def chosen_setting(name: str | None, small: bool) -> Setting:
    """The setting a command runs: its ``--setting`` when given, else ``--small``'s or the full one."""
    return named_setting(name or ("small" if small else "full"))


def setting(name: str) -> NetConfig:
    """The ``NetConfig`` of the setting ``name``."""
    return named_setting(name).cfg


def committed_setting(cfg: NetConfig) -> Setting | None:
    """The setting with committed nets whose ``NetConfig`` is ``cfg`` (None: the nets are built)."""
    return next((s for s in _SETTINGS.values() if s.folder is not None and s.cfg == cfg), None)


def expected_files(out: Path = Path("prototxt")) -> dict[Path, str]:
    """Every committed file under ``out`` with its content."""
    files: dict[Path, str] = {}
    for st in (named_setting("full"), named_setting("small")):
        for variant in VARIANTS:
            d = st.variant_dir(out, variant)
            rel = st.variant_dir(Path("prototxt"), variant)   # paths from the repository root
            for stage in spec_of(variant).train_stages:
                files[d / train_net_file(stage)] = net_text(variant, st.cfg, True, stage)
                snap = st.variant_dir(Path("snapshots"), variant) / snapshot_name(variant, stage)
                files[d / solver_file(stage)] = solver_text(str(rel / train_net_file(stage)), str(snap),
                                                            st.schedule, st.max_iter)
            files[d / "test.prototxt"] = net_text(variant, st.cfg, False)
            files[d / "config.json"] = json.dumps(asdict(st.cfg), indent=1, sort_keys=True) + "\n"
    return files


def written_by_builder(path: Path) -> bool:
    """Whether a prototxt is one the builder wrote (its first line), not a user's own file."""
    try:
        with path.open() as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first.startswith((SOLVER_HEADER, f'name: "{NET_NAME_PREFIX}'))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet build-nets", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "prototxt",
                    help="output folder (default: the repository's prototxt/, wherever the command runs)")
    ap.add_argument("--check", action="store_true",
                    help="only compare the files under --out with the builder's output")
    args = ap.parse_args(argv)
    out = args.out
    if args.check and not out.is_dir():
        print(f"gpsnet build-nets: {out}: no such folder", file=sys.stderr)
        return 1
    stale = []
    expected = expected_files(out)
    for folder in {path.parent for path in expected}:   # files it wrote before and no longer writes
        for path in sorted(folder.glob("*.prototxt")) if folder.is_dir() else []:
            if path not in expected and written_by_builder(path):
                if args.check:
                    stale.append(f"{path} (the builder no longer writes it: remove it)")
                else:
                    path.unlink()
                    print(f"removed {path}")
    for path, text in expected.items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("out of date (run gpsnet build-nets):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

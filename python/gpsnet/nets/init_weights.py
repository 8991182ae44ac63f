"""Writes an initial ``.caffemodel`` for a variant from an ImageNet VGG-16 or a DeepLab-v2 VGG-16 model
(``gpsnet init-weights``; docs/nets.md "Pretrained start").

``--weights`` copies layers by name, so a VGG-16 or DeepLab model alone reaches only the backbone. This
command maps the source onto every layer of the variant that has a VGG counterpart:

- ``conv1_1 ... conv5_3`` -> the backbone, ``par_conv*`` (Det.+Par.'s own parser backbone) and
  ``glo_conv*`` (Ins.+Glo.'s global parser net's own backbone);
- ``fc6`` / ``fc7`` -> every ASPP branch ``{,loc_,par_,glo_}fc6_i`` / ``fc7_i`` (global, local,
  Det.+Par. parser, Ins.+Glo. global parser net); from an ImageNet model by DeepLab-LargeFOV's reduction (7x7x4096 -> 3x3x1024: every 4th
  filter, kernel taps 0, 3, 6), from a DeepLab-LargeFOV model as is, from a DeepLab-v2 ASPP model
  branch by branch (``fc6_i`` / ``fc7_i``);
- ImageNet ``fc6`` / ``fc7`` -> the box head ``fc6_box`` / ``fc7_box`` (Faster R-CNN's use of them on
  7x7 RoI features; every 4th filter);
- a BatchNorm / Scale layer (small and tiny settings) -> from the source's namesake of its convolution's
  source (``glo_conv1_1_bn`` <- ``conv1_1_bn``, ``loc_fc6_2_scale`` <- ``fc6_2_scale``) where the source has
  one, as the project's own pretrained start (``gpsnet pretrain``) has; else its filler;
- the ASPP class layers ``{,loc_,par_,glo_}fc8_i`` -> a DeepLab-v2 ASPP model's ``fc8_i`` of the same shape
  (the project's pretrained start has them for the same 20 classes; ``--no-class-layers`` leaves them);
- everything else (RPN, box scores, fusion, mask head) keeps its filler.

One rule does every reshaping (``subsample``): a source weight ``(O, I, KH, KW)`` becomes a target
``(o, i, kh, kw)`` by keeping every ``O/o``-th filter, every ``I/i``-th input channel and the kernel taps
``0, s, 2s, ...`` with ``s = (KH - 1) / (kh - 1)``; every other shape is refused with both shapes named.
In the small and tiny settings (channel multiplier 1/8, 1/16) the same rule subsamples the channels.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gpsnet.nets.config import SETTINGS, NetConfig, chosen_setting
from gpsnet.nets.prototxt import net_text
from gpsnet.nets.variants import GLOBAL_NET_PREFIX, LOCAL_PREFIX, PARSER_PREFIX, variants
from gpsnet.weights import WeightsError, read_net_param, save_weights

# Parameter shapes do not depend on the canvas: the target net is instantiated at this one (the
# full setting's 513-px canvas would allocate gigabytes of activations for nothing).
PARAM_CANVAS = 65
# The 7x7 pool5 grid the ImageNet fc6 reads (VGG-16 at 224 px); fc6 is stored as (4096, 512 * 7 * 7).
VGG_FC6_GRID = 7
# ASPP branches: global parser, local parser, Det.+Par.'s parser, Ins.+Glo.'s global parser net
PARSER_PREFIXES = ("", LOCAL_PREFIX, PARSER_PREFIX, GLOBAL_NET_PREFIX)
# VGG-16 backbones: the shared one, Det.+Par.'s parser's own, Ins.+Glo.'s global parser net's own
BACKBONE_PREFIXES = ("", PARSER_PREFIX, GLOBAL_NET_PREFIX)
BOX_HEAD = {"fc6_box": "fc6", "fc7_box": "fc7"}
CONV_RE = re.compile(r"^conv\d_\d$")
ASPP_RE = re.compile(r"^(fc[67])_(\d+)$")
CLASS_RE = re.compile(r"^fc8_\d+$")          # an ASPP branch's class layer (DeepLab-v2's fc8_<dataset>_i: other names)
NORM_SUFFIXES = ("_bn", "_scale")             # the BatchNorm / Scale layers after a convolution
NORM_TYPES = ("BatchNorm", "Scale")


@dataclass(frozen=True)
class Reduction:
    """How ``subsample`` turns a source weight into a target weight."""
    filter_step: int
    channel_step: int
    taps: tuple[int, ...]

    def describe(self, src: tuple[int, ...], dst: tuple[int, ...]) -> str:
        parts = [f"{_dims(src)} -> {_dims(dst)}"]
        if self.filter_step > 1:
            parts.append(f"filters ::{self.filter_step}")
        if self.channel_step > 1:
            parts.append(f"input channels ::{self.channel_step}")
        if len(self.taps) != src[2]:
            parts.append(f"kernel taps {', '.join(map(str, self.taps))}")
        return ", ".join(parts) if len(parts) > 1 else f"{_dims(src)}, as is"


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def reduction(src: tuple[int, ...], dst: tuple[int, ...], what: str = "weight") -> Reduction:
    """The subsampling that maps a 4-D source weight shape onto a 4-D target shape (see module doc)."""
    if len(src) != 4 or len(dst) != 4:
        raise WeightsError(f"{what}: need 4-D weights, got source {_dims(src)} and target {_dims(dst)}")
    (o_src, i_src, kh_src, kw_src), (o_dst, i_dst, kh_dst, kw_dst) = src, dst
    problems = []
    if o_dst > o_src or o_src % o_dst:
        problems.append(f"the target's {o_dst} filters do not divide the source's {o_src}")
    if i_dst > i_src or i_src % i_dst:
        problems.append(f"the target's {i_dst} input channels do not divide the source's {i_src}")
    if kh_src != kw_src or kh_dst != kw_dst:
        problems.append("kernels must be square")
    elif kh_dst > kh_src or (kh_dst == 1 and kh_src != 1) or (kh_dst > 1 and (kh_src - 1) % (kh_dst - 1)):
        problems.append(f"a {kh_src}x{kh_src} kernel has no evenly spaced {kh_dst}x{kh_dst} taps "
                        "that keep its corners")
    if problems:
        raise WeightsError(f"{what}: source {_dims(src)} cannot become target {_dims(dst)}: "
                           + "; ".join(problems))
    step = (kh_src - 1) // (kh_dst - 1) if kh_dst > 1 else 1
    return Reduction(o_src // o_dst, i_src // i_dst, tuple(range(0, kh_src, step)))


def subsample(weight: np.ndarray, dst: tuple[int, ...], what: str = "weight") -> tuple[np.ndarray, Reduction]:
    """``weight`` (O, I, KH, KW) reduced to ``dst`` by ``reduction``; returns it and the rule used."""
    rule = reduction(tuple(weight.shape), tuple(dst), what)
    taps = list(rule.taps)
    out = weight[::rule.filter_step, ::rule.channel_step][:, :, taps][:, :, :, taps]
    return np.ascontiguousarray(out, dtype=np.float32), rule


# ------------------------------------------------------------------------------------ the source
@dataclass(frozen=True)
class SourceLayer:
    weight: np.ndarray              # 4-D: (out, in, kh, kw); an ImageNet fc6 as (4096, 512, 7, 7)
    bias: np.ndarray | None
    norm: tuple[np.ndarray, ...] = ()   # a BatchNorm / Scale layer's blobs (then ``weight`` is unused)


def _blob_array(blob: Any, what: str) -> np.ndarray:
    """A BlobProto's values in its shape: ``double_data`` when it has any (as Caffe's
    ``Blob::FromProto`` reads it), else ``data``; a count that does not fill the shape is a
    ``WeightsError`` naming ``what``."""
    dims = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height,
                                                                 blob.width)
    values = blob.double_data if len(blob.double_data) else blob.data
    if len(values) != int(np.prod(dims, dtype=np.int64)):
        raise WeightsError(f"{what}: {len(values)} values for the shape {_dims(dims)} it declares")
    return np.asarray(values, dtype=np.float32).reshape(dims)


def read_source(path: Path) -> dict[str, SourceLayer]:
    """The convolution and inner-product layers of a ``.caffemodel`` (current or V1 ``layers`` format,
    as the 2014 VGG-16 file is) by name; inner products as 1x1 convolutions, an ``fc6`` whose input is
    ``C x 7 x 7`` (ImageNet VGG-16, C = conv5_3's filters) as a 7x7 convolution. A file that is not a
    ``.caffemodel`` (empty, a text prototxt, a solverstate, garbage: ``gpsnet.weights.read_net_param``)
    or a blob whose values do not fill its shape is a ``WeightsError`` naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"source model {path} not found (docs/nets.md 'Pretrained start' says "
                                "where to get one)")
    net = read_net_param(path)
    layers: dict[str, SourceLayer] = {}
    for layer in [*net.layer, *net.layers]:
        if not layer.blobs:
            continue
        if layer.type in NORM_TYPES:   # (DeepLab-v2 with BatchNorm: this project's pretrained start)
            blobs = tuple(_blob_array(b, f"{path}: layer {layer.name} blob {i}").reshape(-1)
                          for i, b in enumerate(layer.blobs))
            layers[layer.name] = SourceLayer(blobs[0], None, blobs)
            continue
        weight = _blob_array(layer.blobs[0], f"{path}: layer {layer.name} weights")
        if _is_inner_product(layer):   # (out, in), or V1's (1, 1, out, in)
            if weight.ndim < 2:
                raise WeightsError(f"{path}: inner product {layer.name} has {weight.ndim}-D weights")
            weight = weight.reshape(weight.shape[-2], weight.shape[-1], 1, 1)
        bias = _blob_array(layer.blobs[1], f"{path}: layer {layer.name} bias").reshape(-1) \
            if len(layer.blobs) > 1 else None
        layers[layer.name] = SourceLayer(weight, bias)
    if "fc6" in layers and "conv5_3" in layers and layers["fc6"].weight.shape[2] == 1:
        channels = layers["conv5_3"].weight.shape[0]
        fc6 = layers["fc6"].weight
        if fc6.shape[1] != channels * VGG_FC6_GRID ** 2:
            raise WeightsError(f"source fc6 is an inner product of {fc6.shape[1]} inputs; an ImageNet "
                               f"VGG-16 fc6 reads conv5_3's {channels} x {VGG_FC6_GRID} x {VGG_FC6_GRID} = "
                               f"{channels * VGG_FC6_GRID ** 2}")
        layers["fc6"] = replace(layers["fc6"], weight=fc6.reshape(fc6.shape[0], channels, VGG_FC6_GRID,
                                                                  VGG_FC6_GRID))
    return layers


def _is_inner_product(layer: Any) -> bool:
    from caffe.proto import caffe_pb2
    return layer.type in ("InnerProduct", caffe_pb2.V1LayerParameter.INNER_PRODUCT)


def source_kind(layers: dict[str, SourceLayer]) -> str:
    """``imagenet`` (fc6 7x7 x 4096), ``deeplab-largefov`` (fc6 3x3) or ``deeplab-aspp`` (fc6_i)."""
    if "fc6_1" in layers:
        return "deeplab-aspp"
    if "fc6" not in layers:
        raise WeightsError("the source has neither fc6 (ImageNet VGG-16, DeepLab-LargeFOV) nor fc6_1 "
                           "(DeepLab-v2 ASPP)")
    return "imagenet" if layers["fc6"].weight.shape[2] == VGG_FC6_GRID else "deeplab-largefov"


def source_name(target: str, kind: str, classes: bool = False) -> str | None:
    """The source layer a target layer is filled from, or None (it keeps its filler): a BatchNorm /
    Scale layer from the source's namesake of its convolution's source; with ``classes``, an ASPP
    class layer ``{prefix}fc8_i`` from a DeepLab-v2 ASPP model's ``fc8_i``."""
    if target.endswith(NORM_SUFFIXES):
        base, suffix = target.rsplit("_", 1)
        src = source_name(base, kind)
        return f"{src}_{suffix}" if src else None
    for prefix in BACKBONE_PREFIXES:
        rest = target[len(prefix):] if target.startswith(prefix) else None
        if rest is not None and CONV_RE.match(rest):
            return rest
    if target in BOX_HEAD:
        return BOX_HEAD[target] if kind == "imagenet" else None
    for prefix in PARSER_PREFIXES:
        m = ASPP_RE.match(target[len(prefix):]) if target.startswith(prefix) else None
        if m:
            return target[len(prefix):] if kind == "deeplab-aspp" else m.group(1)
        if classes and kind == "deeplab-aspp" and target.startswith(prefix) and CLASS_RE.match(target[len(prefix):]):
            return target[len(prefix):]
    return None


# ------------------------------------------------------------------------------------ the target
@dataclass(frozen=True)
class Filled:
    target: str
    source: str
    how: str


NORM_REASON = "BatchNorm / Scale: filler (statistics 0, scale 1, shift 0)"
CLASS_REASON = "class layer: filler (class layers are copied from a DeepLab-v2 ASPP model's fc8_i of the same shape)"


def _left_reason(name: str) -> str:
    if name.endswith(NORM_SUFFIXES):
        return NORM_REASON
    if any(name.startswith(p) and CLASS_RE.match(name[len(p):]) for p in PARSER_PREFIXES):
        return CLASS_REASON
    return "no VGG counterpart (class-specific or new): filler"


def _fill_norm(name: str, blobs: Any, source: SourceLayer) -> str:
    """A target BatchNorm / Scale layer from the source's: per-channel blobs subsampled as the
    convolution's filters (every ``C/c``-th), BatchNorm's scale factor as is."""
    if len(blobs) != len(source.norm):
        raise WeightsError(f"{name}: the source layer has {len(source.norm)} blobs, the target {len(blobs)}")
    step = 1
    for blob, src in zip(blobs, source.norm):
        n = blob.data.size
        if src.size % n:
            raise WeightsError(f"{name}: source blob of {src.size} values cannot become {n}")
        step = src.size // n
        blob.data[...] = src[::step].reshape(blob.data.shape)
    return "as is" if step == 1 else f"channels ::{step}"


def fill(net: Any, layers: dict[str, SourceLayer], classes: bool = True) -> tuple[list[Filled], list[tuple[str, str]]]:
    """Copies the mapped source layers into ``net``'s parameters; returns (filled, left with why).
    ``classes``: also the ASPP class layers (``fc8_i``) where the source has them with the same shape."""
    kind = source_kind(layers)
    filled: list[Filled] = []
    left: list[tuple[str, str]] = []
    for name, blobs in net.params.items():
        src = source_name(name, kind, classes)
        if src is None:
            left.append((name, _left_reason(name)))
            continue
        if name.endswith(NORM_SUFFIXES):
            if src not in layers or not layers[src].norm:   # (a model without BatchNorm: VGG, DeepLab)
                left.append((name, NORM_REASON))
            else:
                filled.append(Filled(name, src, _fill_norm(name, blobs, layers[src])))
            continue
        if CLASS_RE.match(src):
            if src not in layers or tuple(layers[src].weight.shape) != tuple(blobs[0].data.shape):
                left.append((name, CLASS_REASON))
                continue
        if src not in layers:
            raise WeightsError(f"target {name} needs source layer {src}, which the model lacks (is it a "
                               "VGG-16 / DeepLab-v2 VGG-16 model?)")
        target_shape = tuple(blobs[0].data.shape)
        dst = target_shape if len(target_shape) == 4 else _inner_product_as_conv(target_shape, layers[src].weight)
        weight, rule = subsample(layers[src].weight, dst, what=f"{name} <- {src}")
        blobs[0].data[...] = weight.reshape(target_shape)
        how = rule.describe(tuple(layers[src].weight.shape), tuple(dst))
        if len(blobs) > 1 and layers[src].bias is not None:
            blobs[1].data[...] = layers[src].bias[::rule.filter_step]
        elif len(blobs) == 1 and layers[src].bias is not None:
            how += "; bias dropped (BatchNorm follows)"
        filled.append(Filled(name, src, how))
    return filled, left


def _inner_product_as_conv(shape: tuple[int, ...], source: np.ndarray) -> tuple[int, int, int, int]:
    """A target inner product (out, C * k * k) seen as (out, C, k, k) with the source kernel's k."""
    k = source.shape[2]
    if shape[1] % (k * k):
        raise WeightsError(f"inner product of {shape[1]} inputs cannot read a {k}x{k} grid")
    return shape[0], shape[1] // (k * k), k, k


def target_net(variant: str, cfg: NetConfig) -> Any:
    """The variant's test net (every parameter layer of the train net, no data layer) with fillers."""
    import caffe
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(net_text(variant, replace(cfg, size=PARAM_CANVAS), train=False))
    try:
        return caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)


def check_out(out: Path, source: Path, overwrite: bool) -> None:
    """``--out`` names a ``.caffemodel`` to write: a folder, a path under a file, or an existing file
    without ``overwrite`` (the ``--source`` itself included) is a ValueError, before any work."""
    if out.is_dir():
        raise ValueError(f"--out {out}: a folder; give the .caffemodel file to write")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"--out {out}: {folder} is a file, not a folder")
            break
    if out.exists() and not overwrite:
        same = " (it is the --source model)" if source.exists() and out.resolve() == source.resolve() else ""
        raise ValueError(f"--out {out}: the file exists{same}; pass --overwrite to replace it, or another --out")


def init_weights(source: Path, variant: str, cfg: NetConfig, out: Path, seed: int = 0,
                 log: Any = print, overwrite: bool = False,
                 classes: bool = True) -> tuple[list[Filled], list[tuple[str, str]]]:
    """Writes ``out`` for ``variant`` in setting ``cfg`` from ``source``; prints and returns the report.
    ``out`` is checked first (``check_out``; an existing file is replaced only with ``overwrite``)
    and written complete or not at all (``gpsnet.weights.save_weights``). ``classes``: copy the ASPP
    class layers too where the source has them (``fill``)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    check_out(out, source, overwrite)
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    layers = read_source(source)
    from gpsnet.weights import model_sha1
    model_sha1(source)
    kind = source_kind(layers)
    net = target_net(variant, cfg)
    filled, left = fill(net, layers, classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(net, out)
    log(f"{source} ({kind}) -> {out} for {variant} (channel multiplier {cfg.width:g})")
    width = max(len(name) for name in net.params)
    filled_norms = [f for f in filled if f.target.endswith(NORM_SUFFIXES)]
    for f in filled:
        if f not in filled_norms:
            log(f"  filled {f.target:<{width}} <- {f.source:<7} {f.how}")
    if filled_norms:
        log(f"  filled {len(filled_norms)} BatchNorm / Scale layers ({filled_norms[0].target} <- "
            f"{filled_norms[0].source}, ...) from the source's, {filled_norms[0].how}")
    for name, why in left:
        if why != NORM_REASON:
            log(f"  left   {name:<{width}} {why}")
    norms = [name for name, why in left if why == NORM_REASON]
    if norms:
        log(f"  left   {len(norms)} BatchNorm / Scale layers ({norms[0]}, ...): {NORM_REASON.split(': ')[1]}")
    log(f"{len(filled)} layers filled, {len(left)} left to their fillers")
    return filled, left


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet init-weights", description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True,
                    help="VGG_ILSVRC_16_layers.caffemodel, or a DeepLab-v2 VGG-16 init model")
    ap.add_argument("--variant", choices=variants(), default="ad_fuse")
    ap.add_argument("--small", action="store_true", help="the small CPU setting (channels subsampled 1/8)")
    ap.add_argument("--setting", choices=SETTINGS, help="overrides --small (tiny: tests)")
    ap.add_argument("--out", type=Path, required=True, help="the .caffemodel to write")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fillers of the layers left")
    ap.add_argument("--no-class-layers", dest="classes", action="store_false",
                    help="leave the ASPP class layers (fc8_i) at their fillers even where the source has them "
                         "(docs/nets.md 'Pretrained start': copying them is the measured default)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out (atomically)")
    args = ap.parse_args(argv)
    try:
        init_weights(args.source, args.variant, chosen_setting(args.setting, args.small).cfg, args.out, args.seed,
                     overwrite=args.overwrite, classes=args.classes)
    except (OSError, ValueError) as err:   # bad files (named: WeightsError), a full disk (WriteFailed)
        print(f"gpsnet init-weights: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

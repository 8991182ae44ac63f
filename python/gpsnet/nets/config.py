"""The nets' configuration: ``NetConfig`` (everything that differs between settings), ``--set KEY=VALUE``
overrides of it, and the named settings (``Setting``: NetConfig, schedule, iterations, committed folder)
that every command's ``--setting`` / ``--small`` selects."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from gpsnet.geometry import ROI_ALIGNED, ROI_SAMPLING_RATIO
from gpsnet.nets.solver import CPU_MAX_ITER, CPU_SCHEDULE, PAPER_MAX_ITER, PAPER_SCHEDULE, Schedule
from gpsnet.typedconfig import convert, field_types

DEFAULT_DATA_ROOT = "data/synthetic"
DEEPLAB_MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)   # NetConfig.mean_bgr

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
        check_config(self)


class ConfigError(ValueError):
    """NetConfig fields outside their allowed values (``FIELD_RULES``): ``bad`` maps each to its message."""

    def __init__(self, bad: dict[str, str]) -> None:
        super().__init__("; ".join(bad.values()))
        self.bad = bad


@dataclass(frozen=True)
class Allowed:
    """A NetConfig field's allowed values: ``what`` says them (errors, docs/nets.md), ``ok`` tests one."""
    what: str
    ok: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(lo: int, hi: int | None = None) -> Allowed:
    return Allowed(f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]",
                   lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi))


def _number(lo: float, hi: float | None = None, open_ends: bool = False) -> Allowed:
    """A finite number >= lo (> lo with ``open_ends``), and <= hi (< hi) when given."""
    if hi is None:
        what = f"a finite number {'>' if open_ends else '>='} {lo:g}"
    else:
        what = f"a number in {'(' if open_ends else '['}{lo:g}, {hi:g}{')' if open_ends else ']'}"
    return Allowed(what, lambda v: _is_number(v) and (v > lo if open_ends else v >= lo)
                   and (hi is None or (v < hi if open_ends else v <= hi)))


def _some(each: Allowed) -> Allowed:
    return Allowed(f"one or more comma-separated values, each {each.what}",
                   lambda v: isinstance(v, tuple) and len(v) > 0 and all(map(each.ok, v)))


_BOOL = Allowed("true or false", lambda v: isinstance(v, bool))
_POSITIVE = _integer(1)
_FRACTION = _number(0, 1)
# The one table of every NetConfig field's allowed values (``check_config``): for the builder, the
# settings, ``--set`` and any caller alike; docs/nets.md ("--set") lists it.
FIELD_RULES: dict[str, Allowed] = {
    "width": _number(0, open_ends=True),
    "feat_stride": Allowed("2, 4 or 8", lambda v: _is_int(v) and v in (2, 4, 8)),
    "batch_norm": _BOOL,
    "bn_momentum": _FRACTION,
    "class_balance": _number(0),
    "size": Allowed("8k + 1 (an integer >= 9: 9, 17, ..., 513)", lambda v: _is_int(v) and v >= 9 and (v - 1) % 8 == 0),
    "pooled": _POSITIVE,
    "dilations": _some(_POSITIVE),
    "fc_channels": _POSITIVE,
    "box_fc": _POSITIVE,
    "fuse_channels": _POSITIVE,
    "mask_head_channels": _POSITIVE,
    "dropout": _BOOL,
    "anchor_sizes": _some(_number(0, open_ends=True)),
    "anchor_ratios": _some(_number(0, open_ends=True)),
    "rpn_batch": _POSITIVE,
    "roi_batch": _POSITIVE,
    "max_mask_rois": _POSITIVE,
    "train_pre_nms": _POSITIVE,
    "train_post_nms": _POSITIVE,
    "test_pre_nms": _POSITIVE,
    "test_post_nms": _POSITIVE,
    "min_size": _number(0),
    "det_score_thresh": _FRACTION,
    "face_score_thresh": _FRACTION,
    "train_faces": Allowed(f"one of {', '.join(TRAIN_FACES)}", lambda v: v in TRAIN_FACES),
    "det_nms": _FRACTION,
    "max_persons": _POSITIVE,
    "batch_size": _POSITIVE,
    "scales": Allowed("two numbers lo,hi with 0 < lo <= hi", lambda v: isinstance(v, tuple) and len(v) == 2
                      and all(_is_number(x) and x > 0 for x in v) and v[0] <= v[1]),
    "face_x": _number(0, 1, open_ends=True),
    "face_y": _number(0, 1, open_ends=True),
    "sampling_ratio": _integer(0),
    "roi_aligned": _BOOL,
    "mean_bgr": Allowed("three numbers B,G,R in [0, 255]", lambda v: isinstance(v, tuple) and len(v) == 3
                        and all(_is_number(x) and 0 <= x <= 255 for x in v)),
    "data_root": Allowed("a non-empty path", lambda v: isinstance(v, str) and bool(v.strip())),
    "seed": _integer(0, 2**31 - 1),
}


def check_config(cfg: NetConfig) -> None:
    """Every field of ``cfg`` against ``FIELD_RULES``; ``ConfigError`` naming each one outside its
    allowed values (``<field> must be <allowed>, got <value>``)."""
    bad = {f.name: f"{f.name} must be {FIELD_RULES[f.name].what}, got {getattr(cfg, f.name)!r}"
           for f in fields(cfg) if not FIELD_RULES[f.name].ok(getattr(cfg, f.name))}
    if bad:
        raise ConfigError(bad)


# The full (paper's) setting's values: the defaults of the Python layers' param_str keys that are
# NetConfig fields (a hand-written net may leave them out; the builder writes them all).
DEFAULT_CONFIG = NetConfig.full()


def add_set_arg(ap: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a NetConfig field of the setting replaced (``override``)."""
    ap.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                    help="replace a NetConfig field of the setting, e.g. --set train_faces=detected "
                         "(repeatable; the value converted by the field's type, tuples comma-separated; "
                         "the nets are then built, not read from prototxt/)")


def override(cfg: "NetConfig", items: list[str] | tuple[str, ...] | None) -> "NetConfig":
    """``cfg`` with the command line's ``--set KEY=VALUE`` items applied (each VALUE converted by the
    field's type, tuples comma-separated: ``gpsnet.typedconfig.convert``); ``ValueError`` naming an
    unknown key or a bad value."""
    if not items:
        return cfg
    kinds = field_types(NetConfig)
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item}: expected KEY=VALUE")
        if key not in kinds:
            raise ValueError(f"--set {item}: unknown key {key!r}; NetConfig's fields: {', '.join(kinds)}")
        try:
            changes[key] = convert(kinds[key], text)
        except ValueError as err:
            raise ValueError(f"--set {key}={text}: {err}") from None
    try:
        return replace(cfg, **changes)
    except ConfigError as err:   # each bad field named with the item that set it
        given = {item.partition("=")[0].strip(): item for item in items}
        raise ValueError("; ".join(f"--set {given[name]}: {why}" if name in given else why
                                   for name, why in err.bad.items())) from None


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

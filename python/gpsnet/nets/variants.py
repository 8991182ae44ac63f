"""The variant registry: one ``VariantSpec`` per variant (DESIGN.md section 4, docs/nets.md), read by the
graphs, training, inference (decoding), evaluation, the ablation runner and the tests.

Variants: ``ad_fuse`` (GPSNet), ``fuse``, ``ad_loc``, ``loc`` (ablations) and the baselines ``det_par``
(Faster R-CNN, then a single-person parser on crops of its boxes) and ``ins_glo`` (a global parser and a
Mask R-CNN-style instance net): the baselines are separately trained nets (``Stage``), combined only in
their test net. A variant that combines existing branches is one more ``register`` call; one that needs a
new kind of graph names it (``VariantSpec.graph``, registered in ``gpsnet.nets.graphs``).
"""
from __future__ import annotations

from dataclasses import dataclass

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
    """One variant: its branches, its row in the paper's Tables 2-3, its graph, and what its test net
    outputs. The builder, training, inference (decoding), evaluation, the ablation runner and the tests all
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
    graph: str = "joint"              # its graph function (gpsnet.nets.graphs.GRAPHS): joint, det_par,
                                      # ins_glo, or one registered with @graphs.graph(name)

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
                stages=(Stage("det"), Stage("par", start_from="det")), graph="det_par"),
    VariantSpec("ins_glo", "Ins.+Glo.", 6, global_parser=True, instance_masks=True,
                stages=(Stage("glo"), Stage("ins")), graph="ins_glo"),
):
    register(_spec)
del _spec
VARIANTS: tuple[str, ...] = variants()   # the built-in ones: the committed prototxt/ folders

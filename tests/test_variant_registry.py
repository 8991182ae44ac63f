"""The variant registry (nets/variants.py): one VariantSpec per variant, read by the builder, training,
inference, evaluation and the ablation runner. A variant that combines existing branches is one
`register` call: here a variant defined in the test (the adjusted local parser beside the global
parser, without the fusion) builds, trains, evaluates under its own label and joins the ablation table."""
from __future__ import annotations

import json

import pytest

caffe = pytest.importorskip("caffe")

from gpsnet import ablate, evaluate_net, train  # noqa: E402
from gpsnet.nets.config import NetConfig
from gpsnet.nets.prototxt import net_text
from gpsnet.nets.variants import REGISTRY, VARIANTS, VariantSpec, register, spec_of, table_order, unregister

EXTRA = VariantSpec("ad_loc_glo", "Ad. Loc. + Glo.", row=7, global_parser=True, local="adjusted")


@pytest.fixture
def extra_variant():
    register(EXTRA)
    yield EXTRA
    unregister(EXTRA.name)


def test_builtin_specs_are_the_papers_rows():
    assert VARIANTS == ("ad_fuse", "fuse", "ad_loc", "loc", "det_par", "ins_glo")
    assert table_order() == ("loc", "ad_loc", "fuse", "ad_fuse", "det_par", "ins_glo")
    assert spec_of("ad_fuse").label == "Ad. Fuse (GPSNet)" and spec_of("ad_fuse").adjusted
    assert spec_of("ins_glo").person_output == "mask_prob" and spec_of("loc").person_output == "parse_prob"
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        spec_of("nope")
    with pytest.raises(ValueError, match="registered already"):
        register(spec_of("loc"))


@pytest.mark.parametrize("bad, message", [
    (dict(local="sideways"), "local must be one of"),
    (dict(local="plain", instance_masks=True, global_parser=True), "exactly one person branch"),
    (dict(), "exactly one person branch"),
    (dict(local="plain", fused=True), "fused needs the global parser"),
    (dict(instance_masks=True), "labelled by the global parser"),
    (dict(separate_parser=True, global_parser=True), "no global parser"),
])
def test_inconsistent_specs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        VariantSpec("x", "X", 9, **bad)


def test_an_extra_variant_builds_trains_evaluates_and_ablates(extra_variant, data_root, tmp_path, capsys):
    cfg = NetConfig.tiny()
    train_text, test_text = net_text(EXTRA.name, cfg, True), net_text(EXTRA.name, cfg, False)
    for layer in ("AdjustedRoIAlign", "FaceMajoritySelect"):
        assert f'type: "{layer}"' in train_text and f'type: "{layer}"' in test_text
    # AdjustBack maps the parse back for the test output (a train net without fusion has no use for it)
    assert 'type: "AdjustBack"' in test_text and 'type: "AdjustBack"' not in train_text
    assert '"loss_global"' in train_text and '"loss_local"' in train_text and "fuse_conv" not in train_text
    assert '"global_prob"' in test_text and '"parse_prob"' in test_text

    res = train.train(train.parse_args(["--variant", EXTRA.name, "--setting", "tiny", "--data", str(data_root),
                                        "--iters", "2", "--out", str(tmp_path / "run"), "--display", "1"]))
    assert res["snapshot"].is_file()
    assert evaluate_net.main(["--variant", EXTRA.name, "--setting", "tiny", "--weights", str(res["snapshot"]),
                              "--data", str(data_root), "--split", "val", "--out", str(tmp_path / "eval")]) == 0
    assert "Ad. Loc. + Glo." in capsys.readouterr().out
    out = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert 0 <= out["box_recall"] <= 1 and out["oracle"] == []

    assert ablate.main(["--variants", "loc", EXTRA.name, "--seeds", "0", "--setting", "tiny", "--iters", "2", "--data",
                        str(data_root), "--split", "val", "--overlays", "0", "--out", str(tmp_path / "abl")]) == 0
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert table.index("| Loc. |") < table.index("| Ad. Loc. + Glo. |")   # rows in table order
    assert EXTRA.name in REGISTRY


def test_a_variant_names_its_graph_function():
    """The graph functions are a registry (nets/graphs.py): a spec names one; an unknown name is an error."""
    from gpsnet.nets.graphs import GRAPHS, build
    assert {spec_of(v).graph for v in VARIANTS} == set(GRAPHS) == {"joint", "det_par", "ins_glo"}
    register(VariantSpec("odd", "Odd", 9, local="plain", graph="nope"))
    try:
        with pytest.raises(ValueError, match="variant odd: unknown graph 'nope'; registered: joint, det_par, ins_glo"):
            build("odd", NetConfig.tiny(), False)
    finally:
        unregister("odd")

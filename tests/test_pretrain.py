"""`gpsnet pretrain` (issue 19): the project's DeepLab-v2 start, trained on generated data of its own
seeds, exported with DeepLab-v2's layer names, resumed by running the same command again, and mapped
by `init-weights` onto every variant (backbone, every ASPP branch, BatchNorm / Scale, class layers);
the committed model's sha1 against its card."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gpsnet import pretrain
from gpsnet.weights import file_sha1
from gpsnet.nets import init_weights as iw
from gpsnet.nets.config import NetConfig
from gpsnet.nets.variants import GLOBAL_NET_PREFIX, variants
from gpsnet.weights import WeightsError, read_net_param


def _blobs(path: Path) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(b.data) for b in layer.blobs] for layer in read_net_param(path).layer if layer.blobs}


def _pretrain(data_root: Path, out: Path, iters: int, *extra: str) -> int:
    return pretrain.main(["--setting", "tiny", "--data", str(data_root), "--iters", str(iters), "--out", str(out),
                          "--lr", "0.003", "--eval-every", "0", "--snapshot-every", "2", *extra])


@pytest.fixture(scope="module")
def tiny_start(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    assert _pretrain(data_root, out, 4) == 0
    return out


def test_pretrain_exports_the_global_parser_under_deeplab_names(tiny_start):
    model = tiny_start / pretrain.model_name("tiny")
    stage = _blobs(tiny_start / "run" / "snapshots" / "ins_glo_glo_iter_4.caffemodel")
    exported = _blobs(model)
    # every layer of the trained glo_ net, none other, its prefix removed, its values as trained
    assert set(exported) == {name[len(GLOBAL_NET_PREFIX):] for name in stage}
    assert {"conv1_1", "conv5_3", "conv1_1_bn", "conv1_1_scale", "fc6_1", "fc7_4", "fc8_1", "fc6_2_bn"} <= set(exported)
    for name, blobs in exported.items():
        for a, b in zip(blobs, stage[GLOBAL_NET_PREFIX + name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    summary = json.loads((tiny_start / "pretrain.json").read_text())
    assert summary["sha1"] == file_sha1(model) and summary["iters"] == 4 and summary["setting"] == "tiny"
    # the model zoo's card beside it: file, sha1, the exact command, the code's commit, seeds, steps
    card = (tiny_start / "readme.md").read_text()
    assert card.startswith("---\nname: ") and f"sha1: {summary['sha1']}" in card
    assert f"caffemodel: {model.name}" in card and "`gpsnet pretrain --setting tiny --data " in card
    assert summary["commit"] in card and "4 iterations" in card and summary["train_seconds"] >= 0
    assert iw.source_kind(iw.read_source(model)) == "deeplab-aspp"


@pytest.mark.parametrize("variant", variants())
def test_init_weights_maps_the_start_onto_every_branch_of_every_variant(tiny_start, variant, tmp_path):
    model = tiny_start / pretrain.model_name("tiny")
    source = _blobs(model)
    out = tmp_path / "init.caffemodel"
    filled, left = iw.init_weights(model, variant, NetConfig.tiny(), out, log=lambda line: None)
    target = _blobs(out)
    by_source = {f.target: f.source for f in filled}
    for name, blobs in target.items():
        base = re.sub(r"^(loc_|par_|glo_)", "", name)
        if base in source and not name.startswith(("fc6_box", "fc7_box")):
            # every layer with a namesake in the start (after its branch prefix) comes from it, blob by blob
            assert by_source.get(name) == base, name
            for a, b in zip(blobs, source[base]):
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert name not in by_source, name
    kinds = {re.sub(r"^(loc_|par_|glo_)", "", f.target).split("_")[0] for f in filled}
    assert {"conv1", "conv5", "fc6", "fc7", "fc8"} <= kinds
    assert any(f.target.endswith("_bn") for f in filled) and any(f.target.endswith("_scale") for f in filled)
    # the detector's and the fusion's own layers are new: fillers
    assert all(not name.startswith(("rpn_", "cls_score", "bbox_pred", "fuse_", "mask_")) for name in by_source)


def test_class_layers_can_be_left_to_their_fillers(tiny_start, tmp_path):
    model = tiny_start / pretrain.model_name("tiny")
    filled, left = iw.init_weights(model, "ad_fuse", NetConfig.tiny(), tmp_path / "a.caffemodel",
                                   log=lambda line: None, classes=False)
    assert not any(re.search(r"fc8_\d$", f.target) for f in filled)
    assert dict(left)["loc_fc8_1"] == iw.CLASS_REASON and dict(left)["fc8_1"] == iw.CLASS_REASON


def test_a_finished_pretraining_is_only_exported_again(tiny_start, data_root, capsys):
    log = tiny_start / "run" / "log.jsonl"
    before = log.stat().st_mtime_ns
    assert _pretrain(data_root, tiny_start, 4) == 0
    assert "trained before" in capsys.readouterr().out and log.stat().st_mtime_ns == before


def test_an_interrupted_pretraining_continues_from_its_snapshot(data_root, tmp_path, capsys):
    out = tmp_path / "p"
    assert _pretrain(data_root, out, 2) == 0          # as a stop at iteration 2 of 4 leaves it
    assert _pretrain(data_root, out, 4) == 0
    assert "continuing" in capsys.readouterr().out
    rows = [json.loads(r)["iter"] for r in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert rows == [0, 1, 2, 3]


def test_evaluated_seeds_are_refused_and_the_default_seed_is_the_pretrainings_own(capsys):
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--data-seed", "0"])
    assert "would leak test images" in capsys.readouterr().err
    assert pretrain.parse_args([]).data_seed == pretrain.PRETRAIN_DATA_SEED >= 100


def test_export_refuses_a_model_without_the_global_parser(tmp_path, tiny_start):
    # an init model of Loc. has no glo_ layer: nothing to export, said with the file's name
    src = tmp_path / "loc.caffemodel"
    iw.init_weights(tiny_start / pretrain.model_name("tiny"), "loc", NetConfig.tiny(), src, log=lambda line: None)
    with pytest.raises(WeightsError, match="loc.caffemodel: no layer named glo_"):
        pretrain.export_deeplab(src, tmp_path / "out.caffemodel")
    assert not (tmp_path / "out.caffemodel").exists()


# ------------------------------------------------------------------------------------ the committed start
COMMITTED = pretrain.committed_model("small")


def test_the_committed_start_matches_its_card():
    card = (COMMITTED.parent / "readme.md").read_text()
    front = dict(line.split(": ", 1) for line in card.split("---")[1].strip().splitlines())
    assert front["caffemodel"] == COMMITTED.name
    assert front["sha1"] == file_sha1(COMMITTED), "the committed model is not the one its card describes"
    assert "`gpsnet pretrain --setting small" in card


@pytest.mark.parametrize("variant", variants())
def test_the_committed_start_fills_every_variant(variant, tmp_path):
    filled, left = iw.init_weights(COMMITTED, variant, NetConfig.small(), tmp_path / "init.caffemodel",
                                   log=lambda line: None)
    names = {f.target for f in filled}
    prefixes = {"det_par": ("", "par_"), "ins_glo": ("", "glo_")}.get(variant, ("",))
    for p in prefixes:   # every backbone of the variant, with its BatchNorm / Scale
        assert {f"{p}conv1_1", f"{p}conv5_3", f"{p}conv3_2_bn", f"{p}conv5_3_scale"} <= names, p
    aspp = {"loc": "loc_", "ad_loc": "loc_", "det_par": "par_", "ins_glo": "glo_"}.get(variant, "")
    assert {f"{aspp}fc6_1", f"{aspp}fc7_4", f"{aspp}fc8_2", f"{aspp}fc6_3_bn"} <= names
    assert all(why != iw.NORM_REASON or not name.startswith(("conv", "fc6", "fc7", "loc_", "par_", "glo_"))
               for name, why in left)


def test_demo_and_ablate_name_a_missing_start(tmp_path, capsys):
    from gpsnet import ablate, demo
    missing = tmp_path / "none.caffemodel"
    for main in (demo.main, ablate.main):
        with pytest.raises(SystemExit) as err:
            main(["--pretrained", str(missing), "--out", str(tmp_path / "out")])
        assert err.value.code == 2 and f"--pretrained {missing}: no such model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_stopped_pretraining_says_how_it_continues(data_root, tmp_path):
    """Ctrl-C: a snapshot, rc 130, and the hint is pretrain's own (the same command), not train's --resume."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "p"
    proc = subprocess.Popen([sys.executable, "-m", "gpsnet.cli", "pretrain", "--setting", "tiny", "--data",
                             str(data_root), "--iters", "100000", "--eval-every", "0", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "run" / "log.jsonl"
    deadline = time.time() + 120
    while not (log.is_file() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in err and "--resume" not in err and "Traceback" not in err
    assert list((out / "run" / "snapshots").glob("*.solverstate"))

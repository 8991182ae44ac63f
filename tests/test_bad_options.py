"""Bad options caught before anything runs or is written (issue 22, defects 8 and 14): every
``NetConfig`` field against its allowed values (``nets/config.py``, ``FIELD_RULES``: for ``--set``, the
settings and the builder alike), and ``gpsnet train``'s options checked up front (``check_options``:
an ``--eval-split`` that does not exist used to be found after the first iterations). docs/nets.md,
"--set" and "Faults and bad input"."""
from __future__ import annotations

import re
import subprocess
import sys
import typing
from dataclasses import fields, replace
from pathlib import Path

import pytest

from gpsnet.nets.config import FIELD_RULES, ConfigError, NetConfig, override
from gpsnet.typedconfig import convert

REPO = Path(__file__).resolve().parents[1]

# the values: each crashed Caffe, stopped with a wrong message, or ran silently wrong
BAD_SETS = ["pooled=-3", "width=-1", "pooled=0", "dilations=", "anchor_sizes=", "width=nan", "det_score_thresh=nan",
            "max_persons=0", "det_nms=nan", "mean_bgr=nan,nan,nan", "scales=1.5,0.5", "seed=-1", "face_x=1"]
ONE_PER_KEY = list({item.partition("=")[0]: item for item in BAD_SETS}.values())   # (the last --set of a key wins)


def _gpsnet(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpsnet.cli", *argv], capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------ (14) NetConfig
def test_every_field_has_one_rule_and_the_settings_keep_them():
    assert list(FIELD_RULES) == [f.name for f in fields(NetConfig)]
    for cfg in (NetConfig.full(), NetConfig.small(), NetConfig.tiny()):   # (each checked when made)
        assert replace(cfg) == cfg


@pytest.mark.parametrize("item", BAD_SETS)
def test_a_bad_value_is_named_with_its_allowed_range_by_set_and_builder_alike(item):
    key, _, _ = item.partition("=")
    with pytest.raises(ValueError, match=rf"^--set {re.escape(item)}: {key} must be {re.escape(FIELD_RULES[key].what)}, got"):
        override(NetConfig.tiny(), [item])
    value = override(NetConfig.tiny(), None)
    with pytest.raises(ConfigError, match=rf"^{key} must be"):   # the builder's (any caller's) NetConfig
        replace(value, **{key: _parsed(key, item)})


def _parsed(key: str, item: str):
    """The value ``item`` means, without the check (``override`` converts and checks together)."""
    return convert(typing.get_type_hints(NetConfig)[key], item.partition("=")[2])


def test_several_bad_values_are_all_named():
    with pytest.raises(ValueError) as err:
        override(NetConfig.tiny(), ["width=-1", "train_faces=mix", "max_persons=0"])
    assert str(err.value) == ("--set width=-1: width must be a finite number > 0, got -1.0; "
                              "--set max_persons=0: max_persons must be an integer >= 1, got 0")


def test_wrong_types_from_the_api_are_named():
    for key, value in (("pooled", 2.5), ("batch_norm", 1), ("dilations", [1, 2]), ("width", "1")):
        with pytest.raises(ConfigError, match=rf"^{key} must be"):
            replace(NetConfig.tiny(), **{key: value})


def test_docs_list_every_field_with_its_allowed_values():
    text = (REPO / "docs" / "nets.md").read_text()
    for key, allowed in FIELD_RULES.items():
        assert f"| `{key}` | {allowed.what} |" in text, key


@pytest.mark.parametrize("command", ["train", "eval", "infer"])
def test_bad_set_values_stop_every_command_before_anything_is_written(command, data_root, tmp_path):
    """A subprocess: pooled=0 and the empty tuples crashed Caffe after the run folder was written."""
    out = tmp_path / "out"
    extra = {"train": ["--iters", "1"], "eval": ["--weights", str(tmp_path / "w.caffemodel")],
             "infer": ["--weights", str(tmp_path / "w.caffemodel")]}[command]
    sets = [a for item in ONE_PER_KEY for a in ("--set", item)]
    res = _gpsnet(command, "--variant", "loc", "--setting", "tiny", "--data", str(data_root), "--out", str(out),
                  *extra, *sets)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    for item in ONE_PER_KEY:
        key = item.partition("=")[0]
        assert f"--set {item}: {key} must be {FIELD_RULES[key].what}" in res.stderr, item


# ------------------------------------------------------------------------------------ (8) train's options
def _train_main(data_root: Path, out: Path, *extra: str, variant: str = "loc") -> int:
    pytest.importorskip("caffe")
    from gpsnet import train
    return train.main(["--variant", variant, "--setting", "tiny", "--data", str(data_root), "--out", str(out),
                       "--display", "0", *extra])


@pytest.mark.parametrize("variant", ["loc", "det_par"])
def test_a_bad_eval_split_is_named_before_any_training(variant, data_root, tmp_path, capsys):
    """It was found at the first learning-curve point (iteration 4; det_par: after its whole first
    stage), the run then lost with no snapshot."""
    out = tmp_path / "run"
    assert _train_main(data_root, out, "--iters", "6", "--eval-every", "4", "--eval-split", "bogus",
                       variant=variant) == 1
    err = capsys.readouterr().err
    assert "--eval-split bogus: " in err and "unknown split 'bogus'" in err
    assert not out.exists()


@pytest.mark.parametrize("flag, value, allowed", [
    ("--iters", "-1", "an integer >= 0"), ("--snapshot-every", "-2", "an integer >= 0"),
    ("--eval-every", "-4", "an integer >= 0"), ("--display", "-1", "an integer >= 0"),
    ("--synthetic-num", "0", "an integer >= 1"), ("--time-limit", "nan", "a finite number >= 0"),
    ("--time-limit", "-5", "a finite number >= 0"), ("--seed", "-1", "an integer in [0, 2147483647]")])
def test_bad_numbers_are_named_before_anything_is_written(flag, value, allowed, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train_main(data_root, out, "--iters", "2", flag, value) == 1
    assert f"gpsnet train: {flag} {value}: must be {allowed}" in capsys.readouterr().err
    assert not out.exists()


def test_files_read_later_are_checked_up_front(data_root, tmp_path, capsys):
    """The learning curve's --test-net and a staged run's --weights used to be read only after the
    run folder was written (the test net at the first curve point)."""
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\xff\xfe not a model \x00" * 20)
    text = tmp_path / "text.prototxt"
    text.write_text("layer { nonsense")
    out = tmp_path / "run"
    assert _train_main(data_root, out, "--iters", "2", "--eval-every", "1", "--net", str(REPO / "prototxt" / "small" /
                       "loc" / "train.prototxt"), "--test-net", str(text)) == 1
    assert f"--test-net {text}: not a Caffe net prototxt" in capsys.readouterr().err and not out.exists()
    assert _train_main(data_root, out, "--iters", "2", "--weights", str(garbage), variant="det_par") == 1
    assert f"{garbage}: not a Caffe .caffemodel" in capsys.readouterr().err and not out.exists()
    assert _train_main(data_root, out, "--iters", "2", "--resume", str(tmp_path / "gone.solverstate")) == 1
    assert f"--resume {tmp_path / 'gone.solverstate'}: no such file" in capsys.readouterr().err and not out.exists()

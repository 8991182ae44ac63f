"""One ``Setting`` per name (nets/config.py): its NetConfig, schedule, length and committed folder.
``gpsnet train`` trains a setting with the schedule of its committed solver (``--small``: the CPU
schedule, as ``prototxt/small/*/solver*.prototxt`` and the demo), unless told otherwise."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpsnet import train
from gpsnet.nets.config import SETTINGS, NetConfig, chosen_setting, committed_setting, named_setting, setting
from gpsnet.nets.prototxt import solver_file
from gpsnet.nets.variants import spec_of

REPO = Path(__file__).resolve().parents[1]
SCHEDULE_KEYS = ("type", "base_lr", "lr_policy", "power", "stepsize", "gamma", "max_iter", "momentum",
                 "momentum2", "weight_decay")


def _schedule_fields(text: str) -> dict[str, str]:
    """The schedule's fields of a solver prototxt (its paths and snapshot period left out)."""
    found = dict(re.findall(r'^(\w+): "?([^"\n]*)"?$', text, flags=re.MULTILINE))
    found.setdefault("type", "SGD")
    return {k: found[k] for k in SCHEDULE_KEYS if k in found}


@pytest.mark.parametrize("flags, folder", [(["--small"], "small"), ([], ""), (["--setting", "small"], "small")])
@pytest.mark.parametrize("variant", ["ad_fuse", "det_par"])
def test_train_runs_the_committed_solvers_schedule(flags, folder, variant):
    chosen, opts = train.settle(train.parse_args(["--variant", variant, *flags]))
    run_solver = train.solver_text("train.prototxt", "snap", train.schedule_of(opts), opts.iters)
    for stage in spec_of(variant).train_stages:
        committed = (REPO / "prototxt" / folder / variant / solver_file(stage)).read_text()
        assert _schedule_fields(run_solver) == _schedule_fields(committed)
    assert chosen.cfg == (NetConfig.small() if folder else NetConfig.full())


def test_small_trains_with_the_cpu_schedule_unless_told():
    _, opts = train.settle(train.parse_args(["--small"]))
    assert (opts.solver, opts.lr, opts.lr_policy, opts.iters) == ("Adam", 0.002, "poly", 1600)
    _, opts = train.settle(train.parse_args(["--small", "--lr", "0.01", "--iters", "20"]))
    assert (opts.solver, opts.lr, opts.lr_policy, opts.iters) == ("Adam", 0.01, "poly", 20)
    _, opts = train.settle(train.parse_args(["--lr-policy", "poly"]))
    assert (opts.solver, opts.lr, opts.lr_policy, opts.iters) == ("SGD", 0.001, "poly", 100000)


def test_one_setting_per_name():
    assert SETTINGS == ("full", "small", "tiny")
    for name in SETTINGS:
        assert named_setting(name).name == name and setting(name) == named_setting(name).cfg
    assert chosen_setting(None, False).name == "full" and chosen_setting(None, True).name == "small"
    assert chosen_setting("tiny", True).name == "tiny"   # --setting overrides --small
    assert committed_setting(NetConfig.small()) is named_setting("small")
    assert committed_setting(NetConfig.tiny()) is None   # the tests' nets are built, never read
    with pytest.raises(ValueError, match="unknown setting 'huge'"):
        named_setting("huge")

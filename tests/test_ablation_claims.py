"""gpsnet ablate's check of the paper's claims (ablate.claims / verdict): beyond the seeds' spread,
in the mean only, not at all, one seed, a variant not run."""
from __future__ import annotations

import math

from gpsnet import ablate


def _row(seeds: int, mean: float, lo: float, hi: float) -> dict:
    return {"seeds": seeds, "mean": {"avg.AP": mean, "AP0.5": mean / 2},
            "min": {"avg.AP": lo, "AP0.5": lo / 2}, "max": {"avg.AP": hi, "AP0.5": hi / 2}}


def test_verdicts():
    assert ablate.verdict(_row(3, 22, 21.5, 22.5), _row(3, 20, 19, 21), "avg.AP") == "holds beyond the seeds' spread"
    assert ablate.verdict(_row(3, 22, 20, 24), _row(3, 20, 19, 21), "avg.AP").startswith("holds in the mean only")
    assert ablate.verdict(_row(3, 19, 18, 20), _row(3, 20, 19, 21), "avg.AP") == "does not hold"
    assert ablate.verdict(_row(3, 20, 18, 22), _row(3, 20, 19, 21), "avg.AP") == "does not hold"   # a tie
    assert ablate.verdict(_row(1, 22, 22, 22), _row(1, 20, 20, 20), "avg.AP").endswith("(one seed: no spread)")
    assert ablate.verdict(_row(3, math.nan, math.nan, math.nan), _row(3, 20, 19, 21), "AP0.5") == "not measured"


def test_claims_cover_the_run_variants_and_metrics():
    summary = {"ad_fuse": _row(3, 30, 29, 31), "fuse": _row(3, 28, 27, 29.5), "loc": _row(3, 25, 24, 26)}
    checked = ablate.claims(summary)
    pairs = {(c["better"], c["worse"]) for c in checked}
    assert pairs == {("ad_fuse", "fuse"), ("fuse", "loc")}      # the claims whose two variants ran
    assert {c["metric"] for c in checked} == set(ablate.CLAIM_METRICS)
    text = ablate.claims_markdown(checked)
    assert "| Ad. Fuse (GPSNet) > Fuse | avg.AP | 30.00 vs 28.00 | holds in the mean only" in text
    assert "| Fuse > Loc. | avg.AP | 28.00 vs 25.00 | holds beyond the seeds' spread |" in text
    assert ablate.claims_markdown([]) == ""

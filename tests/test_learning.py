"""GPSNet learns: the end-to-end overfit proof (issue 9, docs/nets.md "Overfit check").

GPSNet (``ad_fuse``) in the small CPU setting is trained on the same few generated
images (no augmentation) from the committed pretrained start (``models/deeplab_small``, mapped by
``init-weights``, as the paper starts every net from one DeepLab model: the backbone and the global
parser pretrained on other generated images; the detector, the local parser and the fusion from
their fillers), then run through the real inference path (the test net, the detector's
boxes, paste-back, the predictions folder of ``gpsnet eval``) and the real evaluator on *those*
images. A pipeline that cannot memorise them has a bug in its targets, frames, paste-back or
scoring. Detection and parsing are asserted separately, so a failure says which one broke.
The training starts as soon as collection is done and runs beside the other tests, on its share
of the cores (``start_background``, the suite's lanes in ``conftest.py``); ``gpsnet.experiments.overfit``
also sweeps the iteration count and other variants (docs/learning.md, section 2).

It trains with the ground-truth faces (``--set train_faces=gt``), not the default
detector's faces: this check is of the pipeline, and with the ground-truth faces about 80 % of the
RoIs go through the adjustment (FaceMajoritySelect, AdjustedRoIAlign, the adjusted mask targets,
AdjustBack), where with the detector's faces 5-30 % do (docs/ablation.md "The face source of
training"; there the default's numbers on these images: AP^p at 0.5 75.9, avg.AP 65.8).
"""
from __future__ import annotations

import pytest

caffe = pytest.importorskip("caffe")
pytestmark = pytest.mark.slow   # trains for minutes (pyproject markers)
if "RoIAlign" not in caffe.layer_type_list():
    pytest.skip("the fork's C++ layers are not in pycaffe", allow_module_level=True)

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

from gpsnet.experiments.overfit import Overfit, OverfitJob, start  # noqa: E402

# GPSNet alone (the thread count does not change the result: tests/test_cpu_threads.py): with the ground-truth faces about 80 % of its RoIs take the adjusted
# path and the others the plain RoIAlign one, so it covers what loc's check covered (loc's own numbers:
# the sweep, docs/learning.md section 2).
OVERFIT = Overfit(variants=("ad_fuse",), images=4, data_seed=5, iters=500, pretrained=True, threads=2)
VARIANTS = OVERFIT.variants
MIN_AP50 = 0.8
MIN_BOX_RECALL = 0.9


def start_background(work: Path, threads: int) -> OverfitJob:
    """The overfit training, started by conftest.py once collection is done."""
    return start(work, replace(OVERFIT, threads=threads))


@pytest.fixture(scope="module")
def overfit_results(background_job, tmp_path_factory) -> Iterator[dict[str, dict]]:
    job = background_job or start(tmp_path_factory.mktemp("overfit"), OVERFIT)
    try:
        yield job.results()
    finally:
        job.stop()   # nothing left running when the wait is interrupted


@pytest.mark.parametrize("variant", VARIANTS)
def test_overfit_detects_the_persons(overfit_results, variant):
    r = overfit_results[variant]
    assert r["box_recall"] >= MIN_BOX_RECALL, f"{variant}: person box recall {r['box_recall']:.3f}\n{r['log']}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_overfit_parses_the_persons(overfit_results, variant):
    r = overfit_results[variant]
    assert r["num_images"] == OVERFIT.images and r["missing_images"] == 0
    assert r["AP"]["0.5"] >= MIN_AP50, (f"{variant}: AP^p at 0.5 {r['AP']['0.5']:.3f} "
                                        f"(avg.AP {r['avg_AP']:.3f})\n{r['log']}")

"""The multi-scale test (gpsnet infer/eval --scales): every scale parses the persons of the scale
nearest 1, and the probabilities are averaged (with --flip, each scale's flip-averaged ones)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.geometry import rescale_region  # noqa: E402
from gpsnet.infer import Predictor, parse_scales, reference_scale, unflip_prob  # noqa: E402
from gpsnet.nets.config import NetConfig  # noqa: E402


@pytest.fixture(scope="module", params=["ad_fuse", "ins_glo"])
def predictor(request) -> Predictor:
    pred = Predictor(request.param, None, NetConfig.tiny())   # random weights
    for layer in pred.net.layers:                                         # unit BatchNorm statistics
        if layer.type == "BatchNorm":
            layer.blobs[0].data[...], layer.blobs[1].data[...], layer.blobs[2].data[...] = 0, 1, 1
    return pred


def _image(h: int = 48, w: int = 60) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3)).astype(np.uint8)


PERSONS = np.array([[4.0, 2.0, 30.0, 46.0], [28.5, 6.25, 57.0, 44.0]])   # image coordinates


def test_parse_scales():
    assert parse_scales("0.75,1,1.25") == (0.75, 1.0, 1.25)
    for bad, says in (("1,x", "not a number"), ("0,1", "factor in"), ("1,-2", "factor in"), ("1,1", "twice"),
                      ("nan", "factor in"), ("9", "factor in")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            parse_scales(bad)
    assert reference_scale((0.75, 1.0, 1.25)) == 1.0 and reference_scale((0.5, 1.5)) == 1.5
    assert reference_scale((0.8, 1.25)) == 0.8


def test_scale_one_is_the_plain_test(predictor):
    image = _image()
    a = predictor.probabilities(image)
    b = predictor.probabilities(image, scales=(1.0,))
    np.testing.assert_array_equal(a.parts, b.parts)
    assert a.global_prob is None or np.array_equal(a.global_prob, b.global_prob)


def test_scales_average_the_passes_on_the_reference_persons(predictor):
    image = _image()
    ms = predictor.probabilities(image, PERSONS, scales=(0.75, 1.0, 1.5))
    single = {f: predictor.probabilities(image, PERSONS, scales=(f,)) for f in (0.75, 1.0, 1.5)}
    assert single[1.5].size == (72, 90)   # 1.5 x a 60 px wide image: the canvas (65 px) grew
    assert ms.size == single[1.0].size and ms.scale == single[1.0].scale
    np.testing.assert_array_equal(ms.rois, single[1.0].rois)
    # the same persons at every scale: their P x P maps average directly
    np.testing.assert_allclose(ms.parts, sum(single[f].parts for f in single) / 3, atol=1e-6)
    assert np.abs(ms.parts - single[1.0].parts).max() > 1e-4   # the other scales contribute
    if ms.global_prob is not None:   # the global maps resampled to the scale-1 region, then averaged
        rh, rw = ms.size
        expect = sum(rescale_region(single[f].global_prob, rh, rw, single[f].scale / ms.scale) for f in single) / 3
        np.testing.assert_allclose(ms.global_prob, expect, atol=1e-6)
        np.testing.assert_allclose(ms.global_prob.sum(0), 1, atol=1e-4)
    # the detector's persons (no oracle): those of the scale nearest 1, at every scale
    det = predictor.probabilities(image, scales=(0.75, 1.0))
    np.testing.assert_array_equal(det.rois, predictor.probabilities(image).rois)
    # and the net goes back to its canvas: a later plain pass is unchanged
    np.testing.assert_array_equal(predictor.probabilities(image, PERSONS).parts, single[1.0].parts)


def test_scales_with_flip_stay_equivariant_under_mirroring(predictor):
    image, w = _image(), 60
    mirror = np.stack([w - PERSONS[:, 2], PERSONS[:, 1], w - PERSONS[:, 0], PERSONS[:, 3]], axis=1)
    p = predictor.probabilities(image, PERSONS, flip=True, scales=(0.75, 1.0, 1.25))
    q = predictor.probabilities(image[:, ::-1].copy(), mirror, flip=True, scales=(0.75, 1.0, 1.25))
    np.testing.assert_allclose(q.parts, unflip_prob(p.parts), atol=1e-6)
    if p.global_prob is not None:
        np.testing.assert_allclose(q.global_prob, unflip_prob(p.global_prob), atol=1e-6)


def test_rescale_region_maps_pixel_centres():
    # a linear ramp in image coordinates at scale 2 read back at scale 1
    x2 = (np.arange(40) + 0.5) / 2           # image x of each pixel centre at scale 2
    prob = np.broadcast_to(x2, (1, 4, 40)).copy()
    back = rescale_region(prob, 4, 18, 2.0)
    np.testing.assert_allclose(back[0, 0], np.arange(18) + 0.5, atol=1e-6)

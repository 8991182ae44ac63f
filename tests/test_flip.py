"""The flip test (gpsnet infer/eval --flip): the mirrored image is parsed with the mirrored persons
and faces, its probabilities are mirrored back with left/right part channels swapped, and averaged.
The average is then exactly equivariant under mirroring, whatever the weights: flip-testing the
mirrored image with the mirrored boxes gives the mirror of flip-testing the image."""
from __future__ import annotations

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.classes import LR_PAIRS, NUM_CLASSES, flip_labels  # noqa: E402
from gpsnet.infer import Predictor, mirror_boxes, unflip_prob  # noqa: E402
from gpsnet.nets.config import NetConfig  # noqa: E402


def test_unflip_prob_mirrors_and_swaps_left_right():
    rng = np.random.default_rng(0)
    p = rng.random((2, NUM_CLASSES, 5, 7))
    q = unflip_prob(p)
    np.testing.assert_array_equal(q[:, 0], p[:, 0, :, ::-1])
    for left, right in LR_PAIRS:
        np.testing.assert_array_equal(q[:, left], p[:, right, :, ::-1])
        np.testing.assert_array_equal(q[:, right], p[:, left, :, ::-1])
    np.testing.assert_array_equal(unflip_prob(q), p)
    mask = rng.random((3, 1, 4, 4))          # a class-agnostic mask: no channel swap
    np.testing.assert_array_equal(unflip_prob(mask), mask[..., ::-1])
    # as labels: the arg-max of unflipped probabilities is flip_labels of the arg-max
    np.testing.assert_array_equal(q[0].argmax(0), flip_labels(p[0].argmax(0).astype(np.uint8)))


def test_mirror_boxes_in_pixel_indices():
    boxes = np.array([[2.0, 1.0, 10.0, 9.0], [0.0, 0.0, 19.0, 3.0]])
    np.testing.assert_array_equal(mirror_boxes(boxes, 20), [[9.0, 1.0, 17.0, 9.0], [0.0, 0.0, 19.0, 3.0]])
    np.testing.assert_array_equal(mirror_boxes(mirror_boxes(boxes, 20), 20), boxes)


@pytest.mark.parametrize("variant", ["ad_fuse", "ins_glo"])
def test_flip_test_is_equivariant_under_mirroring(variant):
    cfg = NetConfig.tiny()
    predictor = Predictor(variant, None, cfg)   # random weights: the property holds for any
    for layer in predictor.net.layers:                       # unit BatchNorm statistics (fillers leave 0/0)
        if layer.type == "BatchNorm":
            layer.blobs[0].data[...], layer.blobs[1].data[...], layer.blobs[2].data[...] = 0, 1, 1
    rng = np.random.default_rng(1)
    h, w = 48, 60                                            # fits the tiny canvas: scale 1
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    persons = np.array([[4.0, 2.0, 30.0, 46.0], [28.5, 6.25, 57.0, 44.0]])   # image coordinates
    faces = np.array([[12.0, 4.0, 20.0, 12.0], [38.0, 8.0, 46.5, 16.0]])

    def mirror(b: np.ndarray) -> np.ndarray:                 # image coordinates: x -> w - x
        return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)

    p = predictor.probabilities(image, persons, faces, flip=True)
    q = predictor.probabilities(image[:, ::-1].copy(), mirror(persons), mirror(faces), flip=True)
    assert p.parts.shape[0] == 2 and q.parts.shape == p.parts.shape
    assert np.isfinite(p.parts).all() and np.isfinite(p.global_prob).all()
    np.testing.assert_allclose(q.parts, unflip_prob(p.parts), atol=1e-6)
    np.testing.assert_allclose(q.global_prob, unflip_prob(p.global_prob), atol=1e-6)
    # the mirrored pass contributes: without it the probabilities differ
    plain = predictor.probabilities(image, persons, faces, flip=False)
    assert np.abs(plain.parts - p.parts).max() > 1e-4
    # decoded: the person maps of the mirrored image are the flipped labels of the image's
    a = predictor.predict(image, persons, faces, flip=True)
    b = predictor.predict(image[:, ::-1].copy(), mirror(persons), mirror(faces), flip=True)
    for ma, mb in zip(a.masks, b.masks):
        assert (flip_labels(ma) != mb).mean() < 0.01   # arg-max ties aside

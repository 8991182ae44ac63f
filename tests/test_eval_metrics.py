"""AP^p, PCP and mIoU rules (MHP's definition, DESIGN.md section 6) on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES
from gpsnet.eval.bench import NaiveEvaluator, gt_and_predictions, naive_class_iou
from gpsnet.eval.metrics import (THRESHOLDS, EvalInputError, GlobalAccumulator, InstanceAccumulator,
                                 pair_statistics, voc_ap)


def row(*values: int) -> np.ndarray:
    """A 1 x W label map."""
    return np.array([values], dtype=np.uint8)


def mean_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(pair_statistics(pred[None], gt[None]).mean_iou[0, 0])


def ap_of(images: list[tuple[list[float], list[np.ndarray], list[np.ndarray]]], t: float) -> float:
    acc = InstanceAccumulator()
    for scores, preds, gts in images:
        acc.add(scores, preds, gts)
    return acc.evaluate(t).ap


# ----------------------------------------------------------------------------- mean part IoU

def test_background_is_a_class() -> None:
    # bg: inter 1 (col 0), union 2 -> 1/2; class 1: inter 2, union 3 -> 2/3; mean 7/12
    assert mean_iou(row(0, 1, 1, 1), row(0, 0, 1, 1)) == pytest.approx(7 / 12)


def test_classes_absent_from_both_maps_are_skipped() -> None:
    stats = pair_statistics(row(0, 0, 2, 2)[None], row(0, 0, 2, 2)[None])
    assert stats.mean_iou[0, 0] == 1.0  # not 2/20
    assert np.isnan(stats.class_iou[0, 0, 5])
    assert np.count_nonzero(~np.isnan(stats.class_iou[0, 0])) == 2


def test_class_predicted_but_absent_from_gt_counts_zero() -> None:
    # bg 1, class 1: 1/2, class 3 (only predicted): 0 -> mean 1.5 / 3 = 0.5 exactly
    assert mean_iou(row(0, 0, 1, 3), row(0, 0, 1, 1)) == 0.5


def test_class_in_gt_but_not_predicted_counts_zero() -> None:
    # bg: inter 2 (cols 0, 1), union 3 -> 2/3; class 1: 1/1; class 4: 0 -> (2/3 + 1) / 3
    assert mean_iou(row(0, 0, 1, 0), row(0, 0, 1, 4)) == pytest.approx((2 / 3 + 1) / 3)


def test_ignored_gt_pixels_do_not_count_for_either_map() -> None:
    # the last two gt pixels are 255: the prediction there (1 and 3) is not counted
    stats = pair_statistics(row(0, 0, 1, 1, 1, 3)[None], row(0, 0, 1, 1, IGNORE_LABEL, IGNORE_LABEL)[None])
    assert stats.mean_iou[0, 0] == 1.0
    assert np.isnan(stats.class_iou[0, 0, 3])


def test_gt_values_from_k_up_are_ignored_like_mhp() -> None:
    assert mean_iou(row(0, 1, 2), row(0, 1, NUM_CLASSES)) == 1.0


def test_pair_statistics_equal_a_full_image_confusion_per_pair() -> None:
    rng = np.random.default_rng(3)
    h, w = 23, 31
    # dense overlapping maps, sparse blobs, an empty map, ignored pixels
    preds = [rng.integers(0, NUM_CLASSES, (h, w)), np.zeros((h, w), np.int64),
             np.where(rng.random((h, w)) < 0.2, rng.integers(1, 5, (h, w)), 0)]
    blob = np.zeros((h, w), np.int64)
    blob[3:9, 20:28] = rng.integers(0, 4, (6, 8))
    preds.append(blob)
    gts = [np.where(rng.random((h, w)) < 0.3, rng.integers(0, NUM_CLASSES, (h, w)), 0),
           np.where(rng.random((h, w)) < 0.1, IGNORE_LABEL, rng.integers(0, 3, (h, w))),
           np.zeros((h, w), np.int64)]
    gb = np.zeros((h, w), np.int64)
    gb[5:12, 18:30] = rng.integers(0, 6, (7, 12))
    gb[6, 19] = IGNORE_LABEL
    gts.append(gb)
    pred = np.stack(preds).astype(np.uint8)
    gt = np.stack(gts).astype(np.uint8)
    stats = pair_statistics(pred, gt)
    for m in range(len(preds)):
        for n in range(len(gts)):
            ref = naive_class_iou(pred[m], gt[n], NUM_CLASSES)
            np.testing.assert_array_equal(stats.class_iou[m, n], ref)
            with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(ref).all() else _nullctx():
                assert np.array_equal(stats.mean_iou[m, n], np.nanmean(ref), equal_nan=True)


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_predicted_labels_out_of_range_are_an_error() -> None:
    with pytest.raises(EvalInputError, match="outside 0..19"):
        pair_statistics(row(0, 20)[None], row(0, 1)[None])
    with pytest.raises(EvalInputError, match="255"):
        InstanceAccumulator().add([1.0], [row(0, 255)], [row(0, 1)])


def test_size_mismatch_is_an_error() -> None:
    with pytest.raises(EvalInputError, match="size"):
        pair_statistics(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 5), np.uint8))


def test_scores_must_match_masks() -> None:
    with pytest.raises(EvalInputError, match="2 scores for 1"):
        InstanceAccumulator().add([1.0, 0.5], [row(0, 1)], [row(0, 1)])
    with pytest.raises(EvalInputError, match="finite"):
        InstanceAccumulator().add([float("nan")], [row(0, 1)], [row(0, 1)])


# ----------------------------------------------------------------------------- matching and AP

def test_strictly_greater_than_the_threshold() -> None:
    img = ([1.0], [row(0, 0, 1, 3)], [row(0, 0, 1, 1)])  # mean IoU exactly 0.5
    assert ap_of([img], 0.5) == 0.0
    assert ap_of([img], 0.4) == 1.0


def test_a_taken_gt_makes_a_false_positive_without_fallback() -> None:
    a = row(1, 1, 1, 1, 1, 1, 0, 0)
    b = row(0, 0, 1, 1, 1, 1, 1, 1)
    # the second prediction (= a) has IoU 1 with a (taken) and 0.25 with b (> 0.2): still a FP
    assert mean_iou(a, b) == 0.25
    acc = InstanceAccumulator()
    acc.add([0.9, 0.8], [a, a], [a, b])
    res = acc.evaluate(0.2)
    assert res.true_positives == 1
    np.testing.assert_array_equal(res.precision, [1.0, 0.5])
    np.testing.assert_array_equal(res.recall, [0.5, 0.5])
    assert res.ap == 0.5


def test_best_gt_on_ties_is_the_first() -> None:
    a = row(1, 1, 0, 0)
    b = row(0, 0, 1, 1)
    pred = row(1, 0, 1, 0)  # symmetric: same mean IoU with a and b
    assert mean_iou(pred, a) == mean_iou(pred, b)
    acc = InstanceAccumulator()
    acc.add([0.9, 0.8], [pred, b], [a, b])
    # pred takes a (the first), so b stays free for the second prediction: 2 TPs at t = 0.1
    assert acc.evaluate(0.1).true_positives == 2


def test_images_without_prediction_or_without_gt_person() -> None:
    gt = row(0, 1, 1, 0)
    empty_gt = row(0, 0, 0, 0)
    images = [
        ([0.5], [gt], [gt]),           # a true positive
        ([], [], [gt]),                # a missed person: a positive never found
        ([1.0], [gt], [empty_gt]),     # no (non-empty) gt person: a false positive
    ]
    acc = InstanceAccumulator()
    for s, p, g in images:
        acc.add(s, p, g)
    assert acc.num_positives == 2      # the empty person does not count
    res = acc.evaluate(0.5)
    np.testing.assert_array_equal(res.precision, [0.0, 0.5])
    np.testing.assert_array_equal(res.recall, [0.0, 0.5])
    assert res.ap == 0.25
    assert res.pcp == 0.5              # one TP with all parts right, one unmatched gt


def test_no_positives_give_nan() -> None:
    acc = InstanceAccumulator()
    acc.add([1.0], [row(0, 1)], [row(0, 0)])
    assert np.isnan(acc.evaluate(0.5).ap)
    acc = InstanceAccumulator()
    acc.add([], [], [])
    assert np.isnan(acc.summary()["avg_AP"])


def test_equal_scores_keep_the_order_of_addition() -> None:
    gt = row(0, 1, 1, 0)
    junk = row(19, 19, 19, 19)          # mean IoU 0 with anything
    fp_first = [([0.5], [junk], [gt]), ([0.5], [gt], [gt])]
    # ranked [FP, TP]: precision 0, 1/2 at recall 0, 1/2 -> AP 0.25; reversed: [TP, FP] -> 0.5
    assert ap_of(fp_first, 0.5) == 0.25
    assert ap_of(fp_first[::-1], 0.5) == 0.5
    # within one image: the first of two equal-score duplicates takes the gt
    acc = InstanceAccumulator()
    acc.add([0.7, 0.7], [gt, junk], [gt])
    np.testing.assert_array_equal(acc.evaluate(0.5).precision, [1.0, 0.5])


def test_pcp_shares_of_gt_part_classes() -> None:
    gt = row(0, 1, 1, 2, 2, 3, 0, 0)
    pred = row(0, 1, 1, 2, 0, 0, 0, 0)   # class 1: 1, class 2: 1/2 (not > 0.5), class 3: 0
    acc = InstanceAccumulator()
    acc.add([1.0], [pred], [gt])
    acc.add([], [], [gt])                # an unmatched gt counts 0
    res = acc.evaluate(0.1)
    assert res.true_positives == 1
    assert acc.evaluate(0.5).pcp == pytest.approx((1 / 3) / 2)
    assert acc.summary()["PCP"] == pytest.approx(1 / 6)


def test_voc_ap_all_points_with_envelope() -> None:
    # precision 1, 0.5, 2/3 at recall 1/3, 1/3, 2/3: envelope 1 then 2/3 -> 1/3 + 1/3 * 2/3
    assert voc_ap(np.array([1, 1, 2]) / 3, np.array([1.0, 0.5, 2 / 3])) == pytest.approx(1 / 3 + 2 / 9)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


# ----------------------------------------------------------------------------- properties

def _data(seed: int, images: int = 12, size: int = 64) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [gt_and_predictions(rng, size, persons=4) for _ in range(images)]


def _summary(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    acc = InstanceAccumulator()
    for gts, pred, scores in data:
        acc.add(scores, pred, gts)
    return acc.summary()


def test_perfect_predictions_give_ap_one_everywhere() -> None:
    rng = np.random.default_rng(5)
    data = []
    for gts, _, _ in _data(1):
        keep = gts[gts.reshape(len(gts), -1).any(1)]
        data.append((gts, np.where(keep < NUM_CLASSES, keep, 0).astype(np.uint8), rng.random(len(keep))))
    s = _summary(data)
    assert all(v == 1.0 for v in s["AP"].values())
    assert s["avg_AP"] == 1.0 and s["PCP"] == 1.0


def test_renumbering_persons_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    data = [(g, p, s + rng.random(len(s)) * 1e-3) for g, p, s in _data(2)]  # distinct scores
    permuted = []
    for gts, pred, scores in data:
        gp, pp = rng.permutation(len(gts)), rng.permutation(len(pred))
        permuted.append((gts[gp], pred[pp], scores[pp]))
    assert _summary(data) == _summary(permuted)


def test_zero_score_junk_never_raises_ap() -> None:
    rng = np.random.default_rng(11)
    data = _data(3)
    base = _summary(data)
    for kind in ("noise", "absent-class"):
        junked = []
        for gts, pred, scores in data:
            shape = gts.shape[1:]
            if kind == "noise":
                junk = rng.integers(0, NUM_CLASSES, shape).astype(np.uint8)
            elif kind == "absent-class":
                junk = np.full(shape, 19, np.uint8)
            else:
                junk = np.zeros(shape, np.uint8)
                junk[:2, :2] = 5
            junked.append((gts, np.concatenate([pred, junk[None]]), np.append(scores, 0.0)))
        s = _summary(junked)
        for t in s["AP"]:
            assert s["AP"][t] <= base["AP"][t] + 1e-15, (kind, t)


def test_a_near_empty_junk_can_match_at_low_thresholds() -> None:
    """The limit of the property above under MHP's rule: background is a class, so an (almost)
    empty prediction scores the background IoU with a small person. Ranked last it can only add a
    true positive at the end (recall up), so AP at 0.1 can rise; it never does at 0.5 here."""
    gt = np.zeros((10, 10), np.uint8)
    gt[2:5, 2:5] = 4                       # a 9-pixel person, one part
    empty = np.zeros((10, 10), np.uint8)
    assert mean_iou(empty, gt) == pytest.approx((91 / 100) / 2)  # bg 91/100, class 4: 0
    missed = [([0.9], [row(0, 0)], [row(0, 1)]), ([], [], [gt])]
    with_junk = [missed[0], ([0.0], [empty], [gt])]
    assert ap_of(with_junk, 0.1) > ap_of(missed, 0.1)
    assert ap_of(with_junk, 0.5) == ap_of(missed, 0.5)


def test_streaming_equals_the_straightforward_mhp_loop() -> None:
    naive = NaiveEvaluator()
    acc = InstanceAccumulator()
    for gts, pred, scores in _data(4, images=15, size=48):
        acc.add(scores, pred, gts)
        naive.add(scores, pred, gts)
    for t in THRESHOLDS:
        ap, pcp = naive.evaluate(t)
        res = acc.evaluate(t)
        assert res.ap == ap and res.pcp == pcp, t


# ----------------------------------------------------------------------------- global mIoU

def test_global_miou_hand_computed() -> None:
    acc = GlobalAccumulator()
    acc.add(np.array([[0, 1], [0, 2]], np.uint8), np.array([[0, 1], [1, IGNORE_LABEL]], np.uint8))
    s = acc.summary()
    # bg: inter 1, union 1 + 2 - 1 = 2; class 1: inter 1, union 2 + 1 - 1 = 2; class 2 only on 255
    assert s["per_class_IoU"]["background"] == 0.5
    assert s["per_class_IoU"]["hat"] == 0.5
    assert s["per_class_IoU"]["hair"] is None
    assert s["mIoU"] == 0.5
    assert s["pixel_accuracy"] == pytest.approx(2 / 3)


def test_global_miou_accumulates_over_images_and_checks_input() -> None:
    acc = GlobalAccumulator()
    acc.add(np.array([[1, 1]], np.uint8), np.array([[1, 1]], np.uint8))
    acc.add(np.array([[0, 0]], np.uint8), np.array([[1, 0]], np.uint8))
    # class 1: inter 2, union 3; bg: inter 1, union 2
    assert acc.summary()["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(EvalInputError, match="outside"):
        acc.add(np.array([[25]], np.uint8), np.array([[0]], np.uint8))
    with pytest.raises(EvalInputError, match="size"):
        acc.add(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))

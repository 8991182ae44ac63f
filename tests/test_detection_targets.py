"""Anchor targets, proposals, RoI sampling, mask targets and detections on hand-made inputs."""
import numpy as np
import pytest

from gpsnet.detection.anchors import base_anchors, shifted_anchors
from gpsnet.detection.boxes import bbox_transform_inv
from gpsnet.detection.targets import (BBOX_STDS, AnchorTargetConfig, DetectConfig, ProposalConfig,
                                      RoiSampleConfig, anchor_targets, detect, mask_targets, propose,
                                      sample_rois)


def _anchors():
    return shifted_anchors(base_anchors([16, 32], [1.0, 2.0]), 9, 9, 8)


def test_anchor_targets_labels_and_targets():
    anchors = _anchors()
    gt = np.array([[20.0, 10.0, 36.0, 42.0]])            # a 16 x 32 box = the ratio-2 size-~22 anchor
    cfg = AnchorTargetConfig(batch_size=64, fg_fraction=0.5)
    labels, targets, inside = anchor_targets(anchors, gt, 65, 65, cfg, np.random.default_rng(0))
    fg = np.where(labels == 1)[0]
    assert fg.size >= 1 and (labels == 0).sum() + fg.size <= 64
    # every fg anchor regresses onto the gt box
    np.testing.assert_allclose(bbox_transform_inv(anchors[fg], targets[fg]), np.repeat(gt, fg.size, 0),
                               atol=1e-4)
    assert (inside[fg] == 1).all() and (inside[labels != 1] == 0).all()
    assert not targets[labels != 1].any()       # targets on the kept fg anchors only
    # anchors crossing the border are ignored
    outside = (anchors[:, 0] < 0) | (anchors[:, 2] > 65)
    assert (labels[outside] == -1).all()


def test_anchor_targets_no_gt_all_bg():
    anchors = _anchors()
    labels, targets, inside = anchor_targets(anchors, np.zeros((0, 4)), 65, 65,
                                             AnchorTargetConfig(batch_size=32), np.random.default_rng(0))
    assert (labels == 0).sum() == 32 and (labels == 1).sum() == 0
    assert not targets.any() and not inside.any()


def test_propose_decodes_and_nms():
    anchors = np.array([[0, 0, 16, 16], [1, 1, 17, 17], [30, 30, 46, 46.]])
    scores = np.array([0.9, 0.8, 0.7])
    deltas = np.zeros((3, 4))
    deltas[2] = [0.5, 0, 0, 0]                         # shift the third by half a width
    boxes, s = propose(anchors, scores, deltas, 60, 60, ProposalConfig(nms_thresh=0.7, post_nms_top_n=10))
    np.testing.assert_allclose(boxes, [[0, 0, 16, 16], [38, 30, 54, 46]])
    np.testing.assert_allclose(s, [0.9, 0.7])
    # clipping and the post-NMS count
    boxes, _ = propose(anchors, scores, deltas, 40, 40, ProposalConfig(post_nms_top_n=1))
    assert boxes.shape == (1, 4)
    # nothing survives min_size: the whole image is the proposal
    boxes, _ = propose(anchors, scores, deltas, 40, 40, ProposalConfig(min_size=100))
    np.testing.assert_allclose(boxes, [[0, 0, 40, 40]])


def _gt():
    persons = np.array([[0, 10, 10, 30, 60], [0, 40, 5, 60, 60], [1, 5, 5, 25, 50]], float)
    faces = np.array([[0, 15, 12, 25, 22], [1, 10, 6, 20, 16]], float)
    return persons, faces


def test_sample_rois_classes_targets_and_masks():
    persons, faces = _gt()
    rois = np.array([[0, 11, 11, 31, 59], [0, 0, 0, 5, 5], [1, 6, 5, 25, 49], [1, 40, 40, 60, 60]], float)
    cfg = RoiSampleConfig(batch_size=16, fg_fraction=0.5, max_mask_rois=8)
    s = sample_rois(rois, persons, faces, 2, cfg, np.random.default_rng(0))
    assert s.rois.shape[1] == 5 and s.labels.shape == (s.rois.shape[0],)
    assert set(np.unique(s.labels)) <= {0, 1, 2}
    assert {1, 2} <= set(np.unique(s.labels).astype(int))
    # fg targets decode back to a gt box of the same class; bg rois have no targets
    for i in range(s.rois.shape[0]):
        c = int(s.labels[i])
        if c == 0:
            assert not s.bbox_inside_weights[i].any()
            continue
        w = s.bbox_inside_weights[i].reshape(3, 4)
        assert w[c].all() and w.sum() == 4
        box = bbox_transform_inv(s.rois[i:i + 1, 1:], s.bbox_targets[i:i + 1, 4 * c:4 * c + 4] * BBOX_STDS)
        gts = (persons if c == 1 else faces)
        gts = gts[gts[:, 0] == s.rois[i, 0], 1:]
        assert np.abs(gts - box).max(axis=1).min() < 1e-3
    # mask rois: fg person rois, index into gt_persons of the same image
    assert s.mask_rois.shape[0] == s.mask_gt_index.shape[0] >= 2
    for r, g in zip(s.mask_rois, s.mask_gt_index.astype(int)):
        assert persons[g, 0] == r[0]
    assert set(s.mask_rois[:, 0].astype(int)) == {0, 1}


def test_sample_rois_no_faces_no_persons():
    persons, _ = _gt()
    s = sample_rois(np.zeros((0, 5)), persons, np.zeros((0, 5)), 2, RoiSampleConfig(batch_size=8),
                    np.random.default_rng(0))
    assert 2 not in set(s.labels.astype(int)) and (s.labels == 1).any()
    # no persons and no faces at all: all background, one dummy mask roi with index -1
    rois = np.array([[0, 0, 0, 10, 10], [1, 5, 5, 20, 20]], float)
    s = sample_rois(rois, np.zeros((0, 5)), np.zeros((0, 5)), 2, RoiSampleConfig(batch_size=8),
                    np.random.default_rng(0))
    assert (s.labels == 0).all() and s.rois.shape[0] == 2
    assert s.mask_rois.shape == (1, 5) and s.mask_gt_index.tolist() == [-1]
    m = mask_targets(s.mask_rois, s.mask_gt_index, np.zeros((0, 1, 9, 9)), 5)
    assert (m == 255).all()


def test_sample_rois_caps_mask_rois():
    persons, faces = _gt()
    rois = np.tile(np.array([[0, 10, 10, 30, 60]], float), (30, 1))
    s = sample_rois(rois, persons, faces, 1, RoiSampleConfig(batch_size=64, max_mask_rois=3),
                    np.random.default_rng(0))
    assert s.mask_rois.shape[0] == 3


def test_mask_targets_crop_nearest_and_outside():
    masks = np.zeros((2, 1, 8, 8), np.uint8)
    masks[0, 0, 2:6, 2:6] = 4
    masks[0, 0, 2, 2] = 11
    masks[1, 0, :, :] = 7
    masks[:, :, :, 7] = 255                            # padding column
    # net coordinates (gpsnet.geometry): the tight box of pixels 2..5 is [1.5, 5.5]
    rois = np.array([[0, 1.5, 1.5, 5.5, 5.5], [0, 5.5, 5.5, 9.5, 9.5]], float)
    out = mask_targets(rois, np.array([0, 1]), masks, 4)
    expect0 = np.full((4, 4), 4)
    expect0[0, 0] = 11
    np.testing.assert_array_equal(out[0], expect0)
    # second roi: pixels 6..9: col 7 is padding (255), cols/rows 8, 9 outside the canvas (255)
    np.testing.assert_array_equal(out[1], [[7, 255, 255, 255]] * 2 + [[255] * 4] * 2)
    # P larger than the box: nearest sampling repeats pixels
    out = mask_targets(np.array([[0, 1.5, 1.5, 3.5, 3.5]], float), np.array([0]), masks, 4)
    np.testing.assert_array_equal(out[0], [[11, 11, 4, 4], [11, 11, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4]])
    b = mask_targets(rois, np.array([0, 1]), masks, 4, binary=True)
    assert set(np.unique(b)) == {1, 255} and (b[0] == 1).all()


def test_mask_targets_bad_index():
    with pytest.raises(ValueError, match="gt index"):
        mask_targets(np.array([[0, 0, 0, 2, 2.]]), np.array([3]), np.zeros((1, 4, 4)), 2)


def test_detect_keeps_a_person_and_allows_no_face():
    rois = np.array([[0, 0, 0, 10, 20], [0, 1, 1, 11, 21], [0, 2, 2, 6, 6]], float)
    prob = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.5, 0.0, 0.5]])
    deltas = np.zeros((3, 12))
    p, ps, f, fs = detect(rois, prob, deltas, np.array([[30, 30, 1]]), DetectConfig(nms_thresh=0.5))
    np.testing.assert_allclose(p, [[0, 0, 0, 10, 20]])
    np.testing.assert_allclose(ps, [0.9])
    np.testing.assert_allclose(f, [[0, 2, 2, 6, 6]])
    prob[:, 2] = 0
    prob[:, 1] = [0.01, 0.02, 0.0]
    p, ps, f, fs = detect(rois, prob, deltas, np.array([[30, 30, 1]]), DetectConfig(score_thresh=0.5))
    assert p.shape == (1, 5) and ps[0] == pytest.approx(0.02) and f.shape == (0, 5)

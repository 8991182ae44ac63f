"""The numeric cores of the detector / mask Python layers, one image (or one batch) at a time.

* :func:`anchor_targets` - RPN labels and regression targets of the anchors (anchor target layer).
* :func:`propose` - decode, clip, filter, NMS of the RPN outputs (proposal layer).
* :func:`sample_rois` - R-CNN RoI sampling with classes {0 bg, 1 person, 2 face} and the RoIs of
  the mask branch (proposal target layer).
* :func:`mask_targets` - the assigned person's labels cropped by RoIs to P x P (mask target layer).
* :func:`detect` - per-class decoding and NMS of the box head at test time (detection layer).

Boxes: continuous coordinates, ``width = x2 - x1`` (docs/interfaces.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from gpsnet.classes import IGNORE_LABEL
from gpsnet.geometry import bin_centres, nearest_pixel
from gpsnet.detection.boxes import (bbox_overlaps, bbox_transform, bbox_transform_inv, clip_boxes,
                                    filter_small_boxes, nms)

NUM_DET_CLASSES: int = 3          # 0 background, 1 person, 2 face
PERSON: int = 1
FACE: int = 2
# Box-head regression targets are divided by these (py-faster-rcnn's precomputed normalisation).
BBOX_STDS: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)


# --------------------------------------------------------------------------- anchor targets
@dataclass(frozen=True)
class AnchorTargetConfig:
    positive_overlap: float = 0.7
    negative_overlap: float = 0.3
    batch_size: int = 256            # sampled anchors per image
    fg_fraction: float = 0.5
    allowed_border: float = 0.0      # anchors further outside the valid image are ignored


def anchor_targets(anchors: np.ndarray, gt_boxes: np.ndarray, im_height: float, im_width: float,
                   cfg: AnchorTargetConfig, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RPN targets of one image.

    Returns ``labels`` (N, values 1 fg / 0 bg / -1 ignore), ``targets`` (N x 4: the encoding onto
    the best gt box on the kept fg anchors, 0 elsewhere, where the inside weights make the loss
    ignore them) and ``inside_weights`` (N x 4, 1 on the kept fg anchors). An anchor is fg when its IoU with some gt box is
    >= ``positive_overlap`` or it is the best anchor of some gt box; bg when its best IoU is
    < ``negative_overlap``. Without gt boxes every inside anchor is a bg candidate.
    """
    n = anchors.shape[0]
    labels = np.full((n,), -1, dtype=np.float32)
    targets = np.zeros((n, 4), dtype=np.float32)
    inside = np.zeros((n, 4), dtype=np.float32)
    b = cfg.allowed_border
    inds_inside = np.where((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)
                           & (anchors[:, 2] <= im_width + b) & (anchors[:, 3] <= im_height + b))[0]
    if inds_inside.size == 0:
        return labels, targets, inside
    inner = anchors[inds_inside]
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    lab = np.full((inds_inside.size,), -1, dtype=np.float32)
    if gt.shape[0] == 0:
        lab[:] = 0
        argmax = np.zeros((inds_inside.size,), dtype=np.int64)
    else:
        ov = bbox_overlaps(inner, gt)
        argmax = ov.argmax(axis=1)
        max_ov = ov[np.arange(inds_inside.size), argmax]
        gt_max = ov.max(axis=0)
        lab[max_ov < cfg.negative_overlap] = 0
        best = np.where((ov == gt_max[None, :]) & (gt_max[None, :] > 0))[0]
        lab[best] = 1
        lab[max_ov >= cfg.positive_overlap] = 1
    num_fg = int(cfg.fg_fraction * cfg.batch_size)
    fg = np.where(lab == 1)[0]
    if fg.size > num_fg:
        lab[rng.choice(fg, fg.size - num_fg, replace=False)] = -1
    num_bg = cfg.batch_size - int((lab == 1).sum())
    bg = np.where(lab == 0)[0]
    if bg.size > num_bg:
        lab[rng.choice(bg, bg.size - num_bg, replace=False)] = -1
    labels[inds_inside] = lab
    fg = lab == 1     # the kept fg anchors: only their targets are read (through the inside weights)
    if gt.shape[0] > 0 and fg.any():
        targets[inds_inside[fg]] = bbox_transform(inner[fg], gt[argmax[fg]]).astype(np.float32)
        inside[inds_inside[fg]] = 1.0
    return labels, targets, inside


# --------------------------------------------------------------------------- proposals
@dataclass(frozen=True)
class ProposalConfig:
    pre_nms_top_n: int = 6000
    post_nms_top_n: int = 300
    nms_thresh: float = 0.7
    min_size: float = 4.0            # in canvas pixels


def propose(anchors: np.ndarray, fg_scores: np.ndarray, deltas: np.ndarray, im_height: float,
            im_width: float, cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Proposals of one image: ``boxes`` (n x 4) and ``scores`` (n), n <= post_nms_top_n.

    ``anchors`` N x 4, ``fg_scores`` N, ``deltas`` N x 4, all in the anchors' ``(y, x, a)`` order.
    Always returns at least one box when there are anchors (the whole valid image otherwise).
    """
    boxes = clip_boxes(bbox_transform_inv(anchors, deltas), im_height, im_width)
    keep = filter_small_boxes(boxes, cfg.min_size)
    boxes, scores = boxes[keep], np.asarray(fg_scores, dtype=np.float64).reshape(-1)[keep]
    order = np.argsort(-scores, kind="stable")
    if cfg.pre_nms_top_n > 0:
        order = order[:cfg.pre_nms_top_n]
    boxes, scores = boxes[order], scores[order]
    keep = nms(boxes, scores, cfg.nms_thresh)
    if cfg.post_nms_top_n > 0:
        keep = keep[:cfg.post_nms_top_n]
    boxes, scores = boxes[keep], scores[keep]
    if boxes.shape[0] == 0:
        boxes = np.array([[0.0, 0.0, float(im_width), float(im_height)]])
        scores = np.zeros((1,))
    return boxes, scores


# --------------------------------------------------------------------------- proposal targets
@dataclass(frozen=True)
class RoiSampleConfig:
    batch_size: int = 128            # sampled RoIs per image
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh_hi: float = 0.5
    bg_thresh_lo: float = 0.0
    max_mask_rois: int = 16          # person RoIs per image for the mask branch
    bbox_stds: tuple[float, ...] = BBOX_STDS


@dataclass
class RoiSample:
    """The proposal target of a batch (see :func:`sample_rois`)."""
    rois: np.ndarray                 # S x 5: batch, x1, y1, x2, y2
    labels: np.ndarray               # S
    bbox_targets: np.ndarray         # S x 4 * NUM_DET_CLASSES
    bbox_inside_weights: np.ndarray  # S x 4 * NUM_DET_CLASSES
    mask_rois: np.ndarray            # M x 5, M >= 1
    mask_gt_index: np.ndarray        # M: row of gt_persons / gt_masks, -1 for the dummy RoI
    extra: dict = field(default_factory=dict)


def _sample_image(rois: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                  cfg: RoiSampleConfig, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: the kept RoI boxes, their labels and their assigned gt (index, -1 for bg)."""
    cand = np.concatenate([rois.reshape(-1, 4), gt_boxes.reshape(-1, 4)], axis=0)
    if gt_boxes.shape[0] == 0:
        n = min(cfg.batch_size, cand.shape[0])
        keep = rng.choice(cand.shape[0], n, replace=False) if cand.shape[0] > n else np.arange(n)
        return cand[keep], np.zeros((keep.size,), np.int64), np.full((keep.size,), -1, np.int64)
    ov = bbox_overlaps(cand, gt_boxes)
    assign = ov.argmax(axis=1)
    max_ov = ov.max(axis=1)
    fg = np.where(max_ov >= cfg.fg_thresh)[0]
    n_fg = min(int(round(cfg.fg_fraction * cfg.batch_size)), fg.size)
    if fg.size > n_fg:
        fg = rng.choice(fg, n_fg, replace=False)
    bg = np.where((max_ov < cfg.bg_thresh_hi) & (max_ov >= cfg.bg_thresh_lo))[0]
    n_bg = min(cfg.batch_size - n_fg, bg.size)
    if bg.size > n_bg:
        bg = rng.choice(bg, n_bg, replace=False)
    keep = np.concatenate([fg, bg]).astype(np.int64)
    labels = gt_classes[assign[keep]].astype(np.int64)
    labels[fg.size:] = 0
    gt_idx = assign[keep].astype(np.int64)
    gt_idx[fg.size:] = -1
    return cand[keep], labels, gt_idx


def sample_rois(rois: np.ndarray, gt_persons: np.ndarray, gt_faces: np.ndarray, num_images: int,
                cfg: RoiSampleConfig, rng: np.random.Generator) -> RoiSample:
    """Sample the box head's RoIs of a batch and pick the person RoIs of the mask branch.

    ``rois`` R x 5, ``gt_persons`` G x 5, ``gt_faces`` F x 5 (batch, x1, y1, x2, y2). Gt boxes
    join the candidates. Each RoI is assigned to its best-overlapping gt box (person or face);
    fg (IoU >= fg_thresh) RoIs take that box's class (1 person, 2 face), bg RoIs class 0.
    Mask RoIs are fg person RoIs (at most ``max_mask_rois`` per image) with the row of their
    person in ``gt_persons`` (= the row of ``gt_masks``). An image with persons always gets at
    least one mask RoI (its gt boxes); a batch without any person gets one dummy RoI
    ``(0, 0, 0, 1, 1)`` with gt index -1, whose mask targets are all ignore (255).
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 5)
    gp = np.asarray(gt_persons, np.float64).reshape(-1, 5)
    gf = np.asarray(gt_faces, np.float64).reshape(-1, 5)
    stds = np.asarray(cfg.bbox_stds, np.float64)
    out_rois, out_labels, out_t, out_w, m_rois, m_idx = [], [], [], [], [], []
    for b in range(num_images):
        p_rows = np.where(gp[:, 0] == b)[0]
        f_rows = np.where(gf[:, 0] == b)[0]
        gt_boxes = np.concatenate([gp[p_rows, 1:], gf[f_rows, 1:]], axis=0)
        gt_classes = np.concatenate([np.full(p_rows.size, PERSON), np.full(f_rows.size, FACE)])
        gt_rows = np.concatenate([p_rows, f_rows])   # row in gt_persons / gt_faces
        boxes, labels, gt_idx = _sample_image(rois[rois[:, 0] == b, 1:], gt_boxes, gt_classes,
                                              cfg, rng)
        n = boxes.shape[0]
        targets = np.zeros((n, 4 * NUM_DET_CLASSES), np.float32)
        weights = np.zeros_like(targets)
        fg = np.where(labels > 0)[0]
        if fg.size:
            t = bbox_transform(boxes[fg], gt_boxes[gt_idx[fg]]) / stds
            for k, i in enumerate(fg):
                c = labels[i]
                targets[i, 4 * c:4 * c + 4] = t[k]
                weights[i, 4 * c:4 * c + 4] = 1.0
        out_rois.append(np.concatenate([np.full((n, 1), b), boxes], axis=1))
        out_labels.append(labels)
        out_t.append(targets)
        out_w.append(weights)
        person = np.where(labels == PERSON)[0]
        _mask_rois_of_image(b, boxes[person], gt_rows[gt_idx[person]], gp, p_rows, cfg.max_mask_rois,
                            rng, m_rois, m_idx)
    m_rois, m_idx = _batch_mask_rois(m_rois, m_idx)
    return RoiSample(
        rois=np.concatenate(out_rois).astype(np.float32).reshape(-1, 5),
        labels=np.concatenate(out_labels).astype(np.float32),
        bbox_targets=np.concatenate(out_t).astype(np.float32).reshape(-1, 4 * NUM_DET_CLASSES),
        bbox_inside_weights=np.concatenate(out_w).astype(np.float32).reshape(-1, 4 * NUM_DET_CLASSES),
        mask_rois=m_rois, mask_gt_index=m_idx)


def _mask_rois_of_image(b: int, boxes: np.ndarray, gt_rows: np.ndarray, gp: np.ndarray, p_rows: np.ndarray,
                        limit: int, rng: np.random.Generator, m_rois: list, m_idx: list) -> None:
    """One image's mask RoIs: ``boxes`` (n x 4, each matched to the person ``gt_rows`` of ``gp``), at
    most ``limit`` of them sampled; none matched: the image's ground-truth person boxes instead."""
    pick = np.arange(boxes.shape[0])
    if pick.size > limit:
        pick = np.sort(rng.choice(pick, limit, replace=False))
    if pick.size:
        m_rois.append(np.concatenate([np.full((pick.size, 1), b), boxes[pick]], axis=1))
        m_idx.append(gt_rows[pick])
    elif p_rows.size:
        take = p_rows[:limit]
        m_rois.append(gp[take])
        m_idx.append(take)


def _batch_mask_rois(m_rois: list, m_idx: list) -> tuple[np.ndarray, np.ndarray]:
    """The batch's mask RoIs (M x 5) and gt rows (M); a batch without any person gets the dummy RoI
    ``(0, 0, 0, 1, 1)`` with gt index -1, whose mask targets are all ignore."""
    if not m_rois:
        m_rois.append(np.array([[0.0, 0.0, 0.0, 1.0, 1.0]]))
        m_idx.append(np.array([-1]))
    return np.concatenate(m_rois).astype(np.float32), np.concatenate(m_idx).astype(np.float32)


def match_detections(persons: np.ndarray, gt_persons: np.ndarray, num_images: int, cfg: RoiSampleConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The parser's RoIs of Det.+Par.'s second stage: a trained detector's person boxes
    ``persons`` (D x 5: batch, x1, y1, x2, y2) that overlap a ground-truth person (``gt_persons``
    G x 5) with IoU >= ``fg_thresh``, each with the row of its best-overlapping one; at most
    ``max_mask_rois`` per image (sampled). An image with persons but no matched box gets its
    ground-truth boxes; a batch without any person the dummy RoI. Returns (mask_rois M x 5,
    mask_gt_index M), as :func:`sample_rois`."""
    dets = np.asarray(persons, np.float64).reshape(-1, 5)
    gp = np.asarray(gt_persons, np.float64).reshape(-1, 5)
    m_rois: list = []
    m_idx: list = []
    for b in range(num_images):
        p_rows = np.where(gp[:, 0] == b)[0]
        boxes = dets[dets[:, 0] == b, 1:]
        matched, rows = np.zeros((0, 4)), np.zeros((0,), np.int64)
        if p_rows.size and boxes.size:
            ov = bbox_overlaps(boxes, gp[p_rows, 1:])
            keep = np.where(ov.max(axis=1) >= cfg.fg_thresh)[0]
            matched, rows = boxes[keep], p_rows[ov[keep].argmax(axis=1)]
        _mask_rois_of_image(b, matched, rows, gp, p_rows, cfg.max_mask_rois, rng, m_rois, m_idx)
    return _batch_mask_rois(m_rois, m_idx)


# --------------------------------------------------------------------------- mask targets
def mask_targets(rois: np.ndarray, gt_index: np.ndarray, gt_masks: np.ndarray, pooled: int,
                 binary: bool = False) -> np.ndarray:
    """The assigned persons' labels cropped by ``rois`` (M x 5) to M x P x P (float32).

    Bin ``(i, j)`` takes the pixel nearest to the pixel index the nets' RoIAlign reads for it
    (``gpsnet.geometry``: ``bin_centres``, ``nearest_pixel``) of ``gt_masks[gt_index]``
    (G x S x S, or G x 1 x S x S). Positions outside the canvas and RoIs with gt index -1 give 255
    (ignore). ``gt_masks`` holds one person's labels (0 elsewhere), so other persons' pixels are
    background. ``binary``: person pixels (1..K-1) become 1, background 0, ignore stays 255.
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 5)
    gt_index = np.asarray(gt_index).reshape(-1).astype(np.int64)
    masks = np.asarray(gt_masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    m = rois.shape[0]
    out = np.full((m, pooled, pooled), IGNORE_LABEL, dtype=np.float32)
    if masks.size == 0:
        return out
    height, width = masks.shape[1:]
    for r in range(m):
        g = int(gt_index[r])
        if g < 0:
            continue
        if g >= masks.shape[0]:
            raise ValueError(f"mask target: gt index {g} but only {masks.shape[0]} gt masks")
        _, x1, y1, x2, y2 = rois[r]
        xs = nearest_pixel(bin_centres(x1, x2, pooled))
        ys = nearest_pixel(bin_centres(y1, y2, pooled))
        vx = (xs >= 0) & (xs < width)
        vy = (ys >= 0) & (ys < height)
        crop = masks[g][np.clip(ys, 0, height - 1)[:, None], np.clip(xs, 0, width - 1)[None, :]]
        crop = crop.astype(np.float32)
        crop[~(vy[:, None] & vx[None, :])] = IGNORE_LABEL
        out[r] = crop
    if binary:
        person = (out > 0) & (out != IGNORE_LABEL)
        out = np.where(out == IGNORE_LABEL, IGNORE_LABEL, person.astype(np.float32))
    return out.astype(np.float32)


# --------------------------------------------------------------------------- detections
@dataclass(frozen=True)
class DetectConfig:
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_persons: int = 100
    max_faces: int = 100
    bbox_stds: tuple[float, ...] = BBOX_STDS


def detect(rois: np.ndarray, cls_prob: np.ndarray, bbox_pred: np.ndarray, im_info: np.ndarray,
           cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Box-head detections of a batch: ``(persons P x 5, person scores P, faces F x 5, face scores F)``.

    Per image and class: decode (deltas times ``bbox_stds``), clip to the valid image, keep
    scores >= ``score_thresh``, NMS, keep the best ``max_*``. At least one person row is
    returned per image (its best person box even under the threshold), so the mask branch always
    has RoIs; callers filter by score. Faces may be empty (F = 0).
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 5)
    prob = np.asarray(cls_prob, np.float64).reshape(rois.shape[0], -1)
    deltas = np.asarray(bbox_pred, np.float64).reshape(rois.shape[0], -1)
    deltas = deltas * np.tile(np.asarray(cfg.bbox_stds, np.float64), prob.shape[1])
    info = np.asarray(im_info, np.float64).reshape(-1, 3)
    persons, p_scores, faces, f_scores = [], [], [], []
    for b in range(info.shape[0]):
        rows = np.where(rois[:, 0] == b)[0]
        boxes = clip_boxes(bbox_transform_inv(rois[rows, 1:], deltas[rows]), info[b, 0], info[b, 1])
        for cls, limit, out_b, out_s in ((PERSON, cfg.max_persons, persons, p_scores),
                                         (FACE, cfg.max_faces, faces, f_scores)):
            cb = boxes[:, 4 * cls:4 * cls + 4]
            cs = prob[rows, cls]
            sel = np.where(cs >= cfg.score_thresh)[0]
            keep = sel[nms(cb[sel], cs[sel], cfg.nms_thresh)][:limit]
            if keep.size == 0 and cls == PERSON:
                if rows.size:
                    keep = np.array([int(np.argmax(cs))])
                else:
                    cb = np.array([[0.0, 0.0, info[b, 1], info[b, 0]]])
                    cs = np.zeros((1,))
                    keep = np.array([0])
            out_b.append(np.concatenate([np.full((keep.size, 1), b), cb[keep]], axis=1))
            out_s.append(cs[keep])
    def cat(parts: Sequence[np.ndarray], width: int) -> np.ndarray:
        return (np.concatenate(parts).reshape(-1, width) if parts else np.zeros((0, width))
                ).astype(np.float32)
    return (cat(persons, 5), cat(p_scores, 1).reshape(-1), cat(faces, 5), cat(f_scores, 1).reshape(-1))

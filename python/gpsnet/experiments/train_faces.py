"""How many training person RoIs get a face from each face source (docs/nets.md "The face choice at test").

``scripts/train_face_counts [--weights W] [--variant ad_fuse] [--batches 50] [--data ROOT]`` runs the
small setting's train net built with ``train_faces=mix`` (it holds both the ground-truth major
faces, ``major_faces_gt``, and the detected ones, ``major_faces_det``) forward over training batches
(augmented, as training sees them) with trained weights, and counts over the person RoIs of the
local branch (``mask_rois``): those with a ground-truth face, those with a detected face (at or
above ``face_score_thresh``, or any), those whose detected major face overlaps the ground-truth
one (IoU >= 0.5), those with a detected face and no ground-truth one (where "mix" uses the
detected face); and the faces per image (ground truth, detected, detected at or
above the threshold). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from gpsnet.nets.config import setting
from gpsnet.nets.prototxt import net_text


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two N x 4 box arrays (net coordinates, inclusive pixel indices)."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1, 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1, 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def count(variant: str, weights: str | None, root: Path, batches: int, setting_name: str = "small",
          seed: int = 0) -> dict:
    """The counts (see the module docstring); ``weights`` None: the random start of a training run
    of seed ``seed`` (``train`` seeds Caffe's RNG the same way, and the detection pass draws nothing
    from it, so every face source starts from these weights)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from gpsnet.layers._common import read_blob
    from gpsnet.layers.state import close_net
    from gpsnet.training.patch import patch_data_layer
    from gpsnet.weights import load_weights
    cfg = replace(setting(setting_name), train_faces="mix")
    text = patch_data_layer(net_text(variant, cfg, True), root.resolve(), seed)
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.prototxt"
        path.write_text(text)
        net = caffe.Net(str(path), caffe.TRAIN)
    c = dict(rois=0, gt_face=0, det_face=0, det_face_above=0, det_matches_gt=0, det_face_no_gt=0, images=0, gt_faces=0,
             det_faces=0, det_faces_above=0)
    try:
        if weights:
            load_weights(net, weights, quiet=True)
        for _ in range(batches):
            net.forward()
            gt = net.blobs["major_faces_gt"].data
            det = net.blobs["major_faces_det"].data
            faces = read_blob(net.blobs["det_face_rois"], 5)
            scores = read_blob(net.blobs["det_face_scores"]).reshape(-1)
            has_gt, has_det = gt[:, 5] > 0, det[:, 5] > 0
            above = np.zeros(len(det), bool)
            for i in np.where(has_det)[0]:   # the score of the chosen detected face
                k = np.abs(faces - det[i, :5]).max(axis=1).argmin()
                above[i] = scores[k] >= cfg.face_score_thresh
            both = has_gt & has_det
            c["rois"] += len(gt)
            c["gt_face"] += int(has_gt.sum())
            c["det_face"] += int(has_det.sum())
            c["det_face_above"] += int(above.sum())
            c["det_matches_gt"] += int((_iou(gt[both, 1:5], det[both, 1:5]) >= 0.5).sum())
            c["det_face_no_gt"] += int((has_det & ~has_gt).sum())
            c["images"] += int(net.blobs["im_info"].data.shape[0])
            c["gt_faces"] += int(net.blobs["gt_faces"].count // 5)
            c["det_faces"] += int(faces.shape[0])
            c["det_faces_above"] += int((scores >= cfg.face_score_thresh).sum())
    finally:
        close_net(net)
    return dict(variant=variant, weights=str(weights) if weights else f"random start, seed {seed}", batches=batches,
                face_score_thresh=cfg.face_score_thresh, **c)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="train_face_counts", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="a trained .caffemodel of the variant (default: the random start of training)")
    ap.add_argument("--variant", default="ad_fuse", choices=("ad_fuse", "ad_loc"))
    ap.add_argument("--data", type=Path, help="data root (default: the ablation's synthetic set)")
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="data order and augmentation")
    args = ap.parse_args(argv)
    from gpsnet.train import ensure_synthetic
    root = ensure_synthetic(args.data, setting("small").size - 1, 600, 0)
    print(json.dumps(count(args.variant, args.weights, root, args.batches, seed=args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

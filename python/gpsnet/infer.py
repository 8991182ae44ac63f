"""Inference: ``gpsnet infer --variant ad_fuse --weights W (--image F | --folder D | --data R --split S)``.

Runs a variant's test net on each image (fitted into the net's canvas) and gives, per detected
person, a score, a box and its part map pasted into the image (the net's P x P part
probabilities resampled bilinearly to the box, arg-max, 0 outside the box). Writes the
evaluation predictions (``gpsnet.eval.predictions.PredictionWriter``) and coloured overlays.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from gpsnet.geometry import bin_coordinate, from_net, to_net
from gpsnet.layers._common import write_blob
from gpsnet.nets.builder import VARIANTS, NetConfig, setting
from gpsnet.train import REPO_ROOT, net_param_text

MEAN_BGR = np.array([104.008, 116.669, 122.675], np.float32)


@dataclass
class Prediction:
    scores: np.ndarray               # P
    boxes: np.ndarray                # P x 4, image coordinates
    masks: list[np.ndarray]          # P uint8 H x W part maps (0 outside the person)
    global_seg: np.ndarray | None    # H x W whole-image part label (variants with a global parser)


def interpolation_matrix(coords: np.ndarray, n: int) -> np.ndarray:
    """len(coords) x n weights of linear interpolation at ``coords`` (0 = centre of cell 0) over n
    cells, the edge cells repeated outside (exact, unlike OpenCV's 1/32-quantised remap)."""
    c = np.clip(np.asarray(coords, np.float64), 0.0, n - 1.0)
    lo = np.minimum(np.floor(c).astype(np.int64), max(n - 2, 0))
    frac = c - lo
    w = np.zeros((c.size, n))
    rows = np.arange(c.size)
    w[rows, lo] = 1.0 - frac
    if n > 1:
        w[rows, lo + 1] += frac
    return w


def _resample(prob: np.ndarray, box: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """K x P x P maps over ``box`` sampled bilinearly at the pixels [y0, y1) x [x0, x1): pixel index
    i takes bin coordinate ``bin_coordinate(i)``, the inverse of what the nets read (gpsnet.geometry)."""
    _, p, _ = prob.shape
    wx = interpolation_matrix(bin_coordinate(np.arange(x0, x1), box[0], box[2], p), p)
    wy = interpolation_matrix(bin_coordinate(np.arange(y0, y1), box[1], box[3], p), p)
    return np.einsum("yi,kij,xj->kyx", wy, prob.astype(np.float64), wx, optimize=True).astype(np.float32)


def paste(prob: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Arg-max part labels of ``prob`` (K x P x P over ``box``, net coordinates) in a height x
    width map: the pixels whose index lies in the box."""
    out = np.zeros((height, width), np.uint8)
    x0, y0 = max(int(np.ceil(box[0])), 0), max(int(np.ceil(box[1])), 0)
    x1, y1 = min(int(np.floor(box[2])) + 1, width), min(int(np.floor(box[3])) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return out
    out[y0:y1, x0:x1] = _resample(prob, box, x0, x1, y0, y1).argmax(0).astype(np.uint8)
    return out


def upsample_s8(prob: np.ndarray, height: int, width: int, stride: int = 8) -> np.ndarray:
    """K x h x w stride-``stride`` maps (cell i at pixel index ``stride * i``, gpsnet.geometry)
    resampled bilinearly to K x height x width."""
    wx = interpolation_matrix(np.arange(width) / stride, prob.shape[2])
    wy = interpolation_matrix(np.arange(height) / stride, prob.shape[1])
    return np.einsum("yi,kij,xj->kyx", wy, prob.astype(np.float64), wx, optimize=True).astype(np.float32)


class Predictor:
    """A variant's test net with weights; ``predict(image)`` parses one BGR image."""

    def __init__(self, variant: str, weights: str | None, cfg: NetConfig, net: str | None = None,
                 small: bool = False, gpu: int | None = None, score_thresh: float = 0.0,
                 net_text_override: str | None = None) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        from gpsnet.device import use_device
        use_device(caffe, gpu)
        self.variant, self.cfg, self.score_thresh = variant, cfg, score_thresh
        text = net_text_override or net_param_text(variant, cfg, False, net, small)
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpsnet_test_{variant}_{os.getpid()}.prototxt"
        path.write_text(text)
        self.net = caffe.Net(str(path), caffe.TEST) if not weights else caffe.Net(str(path), weights, caffe.TEST)
        path.unlink()
        self.size = self.net.blobs["data"].data.shape[-1]

    def _layer_of_top(self, top: str) -> int:
        for i, name in enumerate(self.net._layer_names):
            if top in self.net.top_names[name]:
                return i
        raise ValueError(f"the test net has no layer with top {top!r}")

    def predict(self, image: np.ndarray, person_boxes: np.ndarray | None = None,
                face_boxes: np.ndarray | None = None) -> Prediction:
        """Parse one BGR image. ``person_boxes`` / ``face_boxes`` (N x 4, image coordinates) replace
        the detector's persons (each with score 1) / faces: oracle evaluation."""
        h, w = image.shape[:2]
        s = self.size
        scale = min(1.0, s / h, s / w)   # as the data layer: fit the longer side, never enlarge
        rh, rw = min(s, max(1, int(round(h * scale)))), min(s, max(1, int(round(w * scale))))
        canvas = np.zeros((s, s, 3), np.float32)
        canvas[:rh, :rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR).astype(np.float32) - MEAN_BGR
        self.net.blobs["data"].data[...] = canvas.transpose(2, 0, 1)[None]
        self.net.blobs["im_info"].data[...] = [[rh, rw, scale]]
        # _forward: net.forward() would read every output blob, and reading a zero-count blob
        # (no detected face) aborts pycaffe.
        last = len(self.net.layers) - 1
        if person_boxes is None and face_boxes is None:
            self.net._forward(0, last)
        else:
            det = self._layer_of_top("person_rois")
            self.net._forward(0, det)
            for top, boxes in (("person_rois", person_boxes), ("face_rois", face_boxes)):
                if boxes is None:
                    continue
                boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
                rows = np.concatenate([np.zeros((boxes.shape[0], 1)), to_net(boxes * scale)], axis=1)
                write_blob(self.net.blobs[top], rows.astype(np.float32))
                score_top = top.replace("_rois", "_scores")
                write_blob(self.net.blobs[score_top], np.ones(boxes.shape[0], np.float32))
            self.net._forward(det + 1, last)
        b = self.net.blobs
        rois = b["person_rois"].data.reshape(-1, 5).copy()
        scores = b["person_scores"].data.reshape(-1).copy()
        glob = None
        if "global_prob" in b:
            glob = upsample_s8(b["global_prob"].data[0], rh, rw, self.cfg.feat_stride)
        masks, keep = [], []
        for i in range(rois.shape[0]):
            if scores[i] < self.score_thresh:
                continue
            box = rois[i, 1:]
            if self.variant == "ins_glo":
                inst = paste(b["mask_prob"].data[i], box, rh, rw) > 0
                m = np.where(inst, glob.argmax(0), 0).astype(np.uint8)
            else:
                m = paste(b["parse_prob"].data[i], box, rh, rw)
            masks.append(cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST))
            keep.append(i)
        keep_a = np.asarray(keep, np.int64)
        global_seg = None
        if glob is not None:
            global_seg = cv2.resize(glob.argmax(0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        return Prediction(scores=scores[keep_a], boxes=from_net(rois[keep_a, 1:]) / scale, masks=masks,
                          global_seg=global_seg)


def iter_images(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray]]:
    if args.image:
        img = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"{args.image}: cannot read the image")
        yield Path(args.image).stem, img
    elif args.folder:
        files = sorted(p for p in Path(args.folder).iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        if not files:
            raise FileNotFoundError(f"{args.folder}: no images")
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f"{p}: cannot read the image")
            yield p.stem, img
    else:
        from gpsnet.data.layout import image_path, read_image, read_split
        ids = read_split(args.data, args.split)
        if args.limit:
            ids = ids[:args.limit]
        for image_id in ids:
            yield image_id, read_image(image_path(args.data, image_id))


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--variant", choices=VARIANTS, default="ad_fuse")
    ap.add_argument("--small", action="store_true", help="the small CPU setting")
    ap.add_argument("--setting", choices=("full", "small", "tiny"), help="overrides --small")
    ap.add_argument("--net", help="a test prototxt to use instead of the variant's")
    ap.add_argument("--weights", required=True, help="trained .caffemodel")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--score-thresh", type=float, default=0.0,
                    help="drop persons scoring below (default 0: AP ranks every detection)")
    ap.add_argument("--limit", type=int, default=0, help="at most N images of the split (0: all)")


def make_predictor(args: argparse.Namespace) -> Predictor:
    name = args.setting or ("small" if args.small else "full")
    return Predictor(args.variant, args.weights, setting(name), net=args.net, small=name == "small",
                     gpu=args.gpu, score_thresh=args.score_thresh)


def run(predictor: Predictor, images: Iterator[tuple[str, np.ndarray]], pred_dir: Path | None,
        overlay_dir: Path | None, max_overlays: int | None = None) -> int:
    """Predict every image; write predictions and overlays. Returns the number of images."""
    from gpsnet.viz import figure
    writer: Any = None
    if pred_dir is not None:
        from gpsnet.eval.predictions import PredictionWriter
        writer = PredictionWriter(pred_dir)
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for image_id, image in images:
        pred = predictor.predict(image)
        if writer is not None:
            writer.add(image_id, pred.scores, pred.masks, pred.global_seg)
        if overlay_dir is not None and (max_overlays is None or n < max_overlays):
            cv2.imwrite(str(overlay_dir / f"{image_id}.png"),
                        figure(image, pred.masks, pred.scores, pred.boxes))
        n += 1
    if writer is not None:
        writer.close()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet infer", description=__doc__.splitlines()[0])
    add_common_args(ap)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path)
    src.add_argument("--folder", type=Path)
    src.add_argument("--data", type=Path, help="a GPS-layout root (with --split)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=Path("out/infer"),
                    help="writes <out>/predictions and <out>/overlays")
    args = ap.parse_args(argv)
    try:
        predictor = make_predictor(args)
        n = run(predictor, iter_images(args), args.out / "predictions", args.out / "overlays")
    except (FileNotFoundError, ValueError) as err:
        print(f"gpsnet infer: {err}", file=sys.stderr)
        return 1
    print(f"parsed {n} image(s): {args.out / 'predictions'}, {args.out / 'overlays'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Inference: ``gpsnet infer --variant ad_fuse --weights W (--image F | --folder D | --data R --split S | --video V)``.

Runs a variant's test net on each image (fitted into the net's canvas) and gives, per detected
person, a score, a box and its part map pasted into the image (the net's P x P part
probabilities resampled bilinearly to the box, arg-max, 0 outside the box). Writes the
evaluation predictions (``gpsnet.eval.predictions.PredictionWriter``) and coloured overlays.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from gpsnet.classes import NUM_CLASSES, flip_lut
from gpsnet.data.batch import fit_scale
from gpsnet.data.layout import image_limit
from gpsnet.geometry import from_net, paste, rescale_region, to_net, upsample_cells
from gpsnet.layers._common import write_blob
from gpsnet.nets.config import SETTINGS, NetConfig, add_set_arg, chosen_setting, override
from gpsnet.nets.prototxt import net_param_text
from gpsnet.nets.variants import spec_of, variants
from gpsnet.weights import load_weights, weight_files

@dataclass
class Prediction:
    scores: np.ndarray               # P
    boxes: np.ndarray                # P x 4, image coordinates
    masks: list[np.ndarray]          # P uint8 H x W part maps (0 outside the person)
    global_seg: np.ndarray | None    # H x W whole-image part label (variants with a global parser)


MAX_SCALE = 4.0      # --scales: factors in (0, MAX_SCALE]
CANVAS_STEP = 8      # a canvas enlarged for a test scale > 1 is CANVAS_STEP k + 1 pixels (the nets' sizes)


def parse_scales(text: str) -> tuple[float, ...]:
    """``--scales 0.75,1,1.25``: distinct positive factors of the image's fitted size."""
    out: list[float] = []
    for part in str(text).split(","):
        try:
            v = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a number (e.g. --scales 0.75,1,1.25)") from None
        if not (np.isfinite(v) and 0 < v <= MAX_SCALE):
            raise argparse.ArgumentTypeError(f"{part.strip()}: a test scale is a factor in (0, {MAX_SCALE:g}]")
        if v in out:
            raise argparse.ArgumentTypeError(f"{part.strip()}: scale given twice")
        out.append(v)
    return tuple(out)


def reference_scale(scales: tuple[float, ...]) -> float:
    """The scale whose detected persons every scale parses: the one nearest 1 (the smaller on a tie)."""
    return min(scales, key=lambda f: (abs(np.log(f)), f))


class Predictor:
    """A variant's test net with weights; ``predict(image)`` parses one BGR image
    (``preprocess``, ``probabilities``: + forward, then ``decode``); ``flip``: the flip test;
    ``scales``: the multi-scale test."""

    def __init__(self, variant: str, weights: str | None, cfg: NetConfig, net: str | None = None,
                 gpu: int | None = None, score_thresh: float = 0.0,
                 net_text_override: str | None = None, flip: bool = False,
                 scales: tuple[float, ...] = (1.0,)) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        from gpsnet.device import use_device
        use_device(caffe, gpu)
        self.variant, self.cfg, self.score_thresh, self.flip = variant, cfg, score_thresh, flip
        self.scales = tuple(scales)
        text = net_text_override or net_param_text(variant, cfg, False, net)
        for path in weight_files(weights) if weights else []:
            if not path.is_file():
                raise FileNotFoundError(f"--weights {path}: no such file")
        # pycaffe reads a net from a file only: a temporary one, removed whatever happens.
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", prefix=f"gpsnet_test_{variant}_") as f:
            f.write(text)
            f.flush()
            self.net = caffe.Net(f.name, caffe.TEST)
        if weights:
            load_weights(self.net, weights)
        self.size = self.net.blobs["data"].data.shape[-1]

    def _layer_of_top(self, top: str) -> int:
        for i, name in enumerate(self.net._layer_names):
            if top in self.net.top_names[name]:
                return i
        raise ValueError(f"the test net has no layer with top {top!r}")

    def _inject(self, top: str, rows: np.ndarray) -> None:
        """Replace the detector's ``top`` (person_rois / face_rois) with ``rows`` (N x 4, net
        coordinates of the canvas), each with score 1."""
        rows = np.concatenate([np.zeros((rows.shape[0], 1)), rows], axis=1)
        write_blob(self.net.blobs[top], rows.astype(np.float32))
        write_blob(self.net.blobs[top.replace("_rois", "_scores")], np.ones(rows.shape[0], np.float32))

    def _forward(self, canvas: np.ndarray, im_info: list[float], persons: np.ndarray | None,
                 faces: np.ndarray | None) -> RawOutput:
        """One pass of the test net on a mean-subtracted canvas; ``persons`` / ``faces`` (N x 4, net
        coordinates) replace the detector's."""
        if self.net.blobs["data"].data.shape[-1] != canvas.shape[0]:   # a test scale's canvas
            self.net.blobs["data"].reshape(1, 3, canvas.shape[0], canvas.shape[1])
            self.net.reshape()
        self.net.blobs["data"].data[...] = canvas.transpose(2, 0, 1)[None]
        self.net.blobs["im_info"].data[...] = [im_info]
        # _forward: net.forward() would read every output blob, and reading a zero-count blob
        # (no detected face) aborts pycaffe.
        last = len(self.net.layers) - 1
        if persons is None and faces is None:
            self.net._forward(0, last)
        else:
            det = self._layer_of_top("person_rois")
            self.net._forward(0, det)
            if persons is not None and not len(persons):
                # No person to parse (an image without any under --oracle boxes): the person layers
                # would run on an empty batch, whose BatchNorm divides by zero (SIGFPE). The global
                # parsing comes before the detector in every variant: it stands.
                return self._output(0)
            for top, rows in (("person_rois", persons), ("face_rois", faces)):
                if rows is not None:
                    self._inject(top, rows)
            self.net._forward(det + 1, last)
        return self._output(self.net.blobs["person_rois"].data.reshape(-1, 5).shape[0])

    def _output(self, n: int) -> RawOutput:
        """The test net's outputs after a pass, for its first ``n`` persons."""
        b = self.net.blobs
        parts = spec_of(self.variant).person_output
        return RawOutput(rois=b["person_rois"].data.reshape(-1, 5)[:n, 1:].astype(np.float64),
                         scores=b["person_scores"].data.reshape(-1)[:n].copy(),
                         parts=b[parts].data[:n].astype(np.float32) if n else np.zeros((0, 1, 1, 1), np.float32),
                         global_prob=b["global_prob"].data[0].copy() if "global_prob" in b else None)

    def preprocess(self, image: np.ndarray, factor: float = 1.0) -> tuple[np.ndarray, float, int, int]:
        """A BGR image fitted into the net's canvas as the data layer does (the longer side fitted,
        never enlarged, top-left, mean subtracted), then scaled by ``factor`` (the multi-scale test;
        a canvas too small for it grows to the next ``CANVAS_STEP k + 1``): (canvas s x s x 3, scale,
        rh, rw)."""
        h, w = image.shape[:2]
        s = self.size
        scale = fit_scale(h, w, s) * factor
        rh, rw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if max(rh, rw) > s:
            s = CANVAS_STEP * -(-(max(rh, rw) - 1) // CANVAS_STEP) + 1
        canvas = np.zeros((s, s, 3), np.float32)
        canvas[:rh, :rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR).astype(np.float32) \
            - np.asarray(self.cfg.mean_bgr, np.float32)
        return canvas, scale, rh, rw

    def probabilities(self, image: np.ndarray, person_boxes: np.ndarray | None = None,
                      face_boxes: np.ndarray | None = None, flip: bool | None = None,
                      scales: tuple[float, ...] | None = None) -> Probabilities:
        """``preprocess`` and forward one BGR image. ``person_boxes`` / ``face_boxes`` (N x 4, image
        coordinates) replace the detector's persons (each with score 1) / faces: oracle evaluation.
        ``flip`` (default ``self.flip``) also parses the mirrored image with the mirrored persons (and
        faces, where given) and averages the probabilities, left/right part channels swapped back (PGN,
        Parsing R-CNN). ``scales`` (default ``self.scales``): the image is parsed at each factor of its
        fitted size, every scale with the persons detected at the scale nearest 1
        (:func:`reference_scale`; their boxes scaled), and all the probabilities (flip passes included)
        averaged: the per-person P x P maps as they are (the same boxes), the global ones resampled to
        the reference scale's region. Persons, scores and the returned geometry are the reference's."""
        h, w = image.shape[:2]
        scales = self.scales if scales is None else tuple(scales)
        ref = reference_scale(scales)
        flip = self.flip if flip is None else flip

        def net_boxes(boxes: np.ndarray | None, scale: float) -> np.ndarray | None:
            return None if boxes is None else to_net(np.asarray(boxes, np.float64).reshape(-1, 4) * scale)

        canvas, scale, rh, rw = self.preprocess(image, ref)
        out = self._forward(canvas, [rh, rw, scale], net_boxes(person_boxes, scale), net_boxes(face_boxes, scale))
        persons = from_net(out.rois) / scale   # image coordinates
        parts, glob = self._flip_averaged(canvas, [rh, rw, scale], out, net_boxes(face_boxes, scale), flip)
        for f in scales:
            if f == ref:
                continue
            c, sc, h2, w2 = self.preprocess(image, f)
            faces = net_boxes(face_boxes, sc)
            o = self._forward(c, [h2, w2, sc], net_boxes(persons, sc), faces)
            p2, g2 = self._flip_averaged(c, [h2, w2, sc], o, faces, flip)
            parts = parts + p2
            if glob is not None:
                glob = glob + rescale_region(g2, rh, rw, sc / scale)
        n = len(scales)
        return Probabilities(rois=out.rois, scores=out.scores, parts=parts / n if n > 1 else parts,
                             global_prob=None if glob is None else (glob / n if n > 1 else glob),
                             scale=scale, size=(rh, rw), image_size=(h, w))

    def _flip_averaged(self, canvas: np.ndarray, im_info: list[float], out: RawOutput,
                       faces: np.ndarray | None, flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(per-person parts, global probabilities over the canvas' image region) of one pass ``out``,
        averaged with the mirrored pass when ``flip``."""
        rh, rw = int(im_info[0]), int(im_info[1])
        glob = None if out.global_prob is None else upsample_cells(out.global_prob, rh, rw, self.cfg.feat_stride)
        parts = out.parts
        if flip:
            mirrored = canvas.copy()
            mirrored[:rh, :rw] = canvas[:rh, :rw][:, ::-1]
            mout = self._forward(mirrored, im_info, mirror_boxes(out.rois, rw),
                                 None if faces is None else mirror_boxes(faces, rw))
            if glob is not None:
                mglob = upsample_cells(mout.global_prob, rh, rw, self.cfg.feat_stride)
                glob = 0.5 * (glob + unflip_prob(mglob))
            if len(parts):
                parts = 0.5 * (parts + unflip_prob(mout.parts))
        return parts, glob

    def predict(self, image: np.ndarray, person_boxes: np.ndarray | None = None,
                face_boxes: np.ndarray | None = None, flip: bool | None = None,
                scales: tuple[float, ...] | None = None) -> Prediction:
        """Parse one BGR image: :meth:`probabilities`, then :func:`decode`."""
        return decode(self.probabilities(image, person_boxes, face_boxes, flip, scales), self.variant,
                      self.score_thresh)


@dataclass
class RawOutput:
    """What one pass of a test net gives (net coordinates of the canvas)."""
    rois: np.ndarray                 # N x 4 person boxes
    scores: np.ndarray               # N
    parts: np.ndarray                # N x K x P x P part probabilities over each box (ins_glo: mask)
    global_prob: np.ndarray | None   # K x h x w at the feature stride


@dataclass
class Probabilities:
    """One image's probabilities before decoding: persons in net coordinates of the canvas, the
    global parsing resampled to the canvas' image region (rh x rw)."""
    rois: np.ndarray
    scores: np.ndarray
    parts: np.ndarray
    global_prob: np.ndarray | None   # K x rh x rw
    scale: float
    size: tuple[int, int]            # rh, rw: the image's region of the canvas
    image_size: tuple[int, int]      # h, w


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """N x 4 boxes in pixel-index (net) coordinates, mirrored in an image region ``width`` wide:
    pixel x becomes pixel width - 1 - x (gpsnet.geometry)."""
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = (width - 1) - out[:, [2, 0]]
    return out


def unflip_prob(prob: np.ndarray) -> np.ndarray:
    """(..., K, H, W) probabilities of a mirrored input back to the input's frame: the last axis
    reversed and, with K part classes, the left/right part channels swapped (classes.LR_PAIRS).
    A mirrored box's RoI bin j is the original box's bin P - 1 - j."""
    out = prob[..., ::-1]
    if prob.shape[-3] == NUM_CLASSES:
        out = out[..., flip_lut()[:NUM_CLASSES], :, :]
    return np.ascontiguousarray(out)


def decode(probs: Probabilities, variant: str, score_thresh: float = 0.0) -> Prediction:
    """Per-person part maps pasted into the image (arg-max within each box) and the global
    parsing, at the image's size; persons scoring below ``score_thresh`` dropped."""
    (rh, rw), (h, w) = probs.size, probs.image_size
    spec = spec_of(variant)
    glob = probs.global_prob
    masks, keep = [], []
    for i in range(probs.rois.shape[0]):
        if probs.scores[i] < score_thresh:
            continue
        box = probs.rois[i]
        if spec.instance_masks:
            inst = paste(probs.parts[i], box, rh, rw) > 0
            m = np.where(inst, glob.argmax(0), 0).astype(np.uint8)
        else:
            m = paste(probs.parts[i], box, rh, rw)
        masks.append(cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST))
        keep.append(i)
    keep_a = np.asarray(keep, np.int64)
    global_seg = None
    if glob is not None:
        global_seg = cv2.resize(glob.argmax(0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return Prediction(scores=probs.scores[keep_a], boxes=from_net(probs.rois[keep_a].reshape(-1, 4)) / probs.scale,
                      masks=masks, global_seg=global_seg)


def iter_folder(folder: Path, failures: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """The images of ``folder`` (sorted by name) with their ids (`image_id_of_file`: "my photo.jpg"
    is `my_photo`). A file that cannot be read, or whose id is invalid or taken by an earlier
    file, is skipped with a message on stderr and appended to ``failures``; the others go on."""
    from gpsnet.data.layout import FOLDER_IMAGE_SUFFIXES, GPSDataError, image_id_of_file, read_image
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_IMAGE_SUFFIXES)
    except OSError as err:
        raise FileNotFoundError(f"{folder}: not a readable folder ({err.strerror or err})") from None
    if not files:
        raise FileNotFoundError(f"{folder}: no images")
    seen: dict[str, Path] = {}
    for p in files:
        try:
            image_id = image_id_of_file(p)
            if image_id in seen:
                raise GPSDataError(f"{p}: image id {image_id!r} already taken by {seen[image_id].name}")
            image = read_image(p)
        except GPSDataError as err:
            print(f"gpsnet infer: skipped {err}", file=sys.stderr)
            failures.append(str(err))
            continue
        seen[image_id] = p
        yield image_id, image


def iter_images(args: argparse.Namespace, failures: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    from gpsnet.data.layout import first_images, image_id_of_file, image_path, read_image, read_split
    if args.image:
        yield image_id_of_file(args.image), read_image(args.image)
    elif args.folder:
        yield from iter_folder(args.folder, failures)
    else:
        for image_id in first_images(read_split(args.data, args.split), args.limit):
            yield image_id, read_image(image_path(args.data, image_id))


@dataclass
class PredictOptions:
    """What a predictor is made of (`make_predictor`): the options `infer` and `eval` share, one
    field per command-line option, the defaults written once here."""
    weights: str | None = None          # trained .caffemodel (the command line requires it)
    variant: str = "ad_fuse"
    small: bool = False                 # the small CPU setting
    setting: str | None = None          # full, small or tiny; overrides small
    net: str | None = None              # a test prototxt instead of the variant's
    gpu: int | None = None
    score_thresh: float = 0.0           # drop persons scoring below (0: AP ranks every detection)
    limit: int = 0                      # at most N images of a split (0: all)
    flip: bool = False                  # the flip test
    scales: tuple[float, ...] = (1.0,)  # the multi-scale test (--scales 0.75,1,1.25)
    overrides: list[str] | None = None  # --set KEY=VALUE: NetConfig fields replaced (nets.config.override)


def add_common_args(ap: argparse.ArgumentParser) -> None:
    d = PredictOptions()
    ap.add_argument("--variant", choices=variants(), default=d.variant)
    ap.add_argument("--small", action="store_true", help="the small CPU setting")
    ap.add_argument("--setting", choices=SETTINGS, help="overrides --small")
    ap.add_argument("--net", help="a test prototxt to use instead of the variant's")
    ap.add_argument("--weights", required=True, help="trained .caffemodel")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--score-thresh", type=float, default=d.score_thresh,
                    help=f"drop persons scoring below (default {d.score_thresh:g}: AP ranks every detection)")
    ap.add_argument("--limit", type=image_limit, default=d.limit, help="at most N images of the split (0: all)")
    ap.add_argument("--flip", action="store_true",
                    help="flip test: also parse the mirrored image (with the mirrored persons), average "
                         "the probabilities with left/right parts swapped back")
    ap.add_argument("--scales", type=parse_scales, default=d.scales,
                    help="multi-scale test: parse the image at these factors of its fitted size (e.g. "
                         "0.75,1,1.25; with --flip each one flipped too) and average the probabilities")
    add_set_arg(ap)


def make_predictor(args: PredictOptions | argparse.Namespace) -> Predictor:
    cfg = override(chosen_setting(args.setting, args.small).cfg, getattr(args, "overrides", None))
    return Predictor(args.variant, args.weights, cfg, net=args.net, gpu=args.gpu,
                     score_thresh=args.score_thresh, flip=args.flip,
                     scales=tuple(getattr(args, "scales", None) or (1.0,)))


def run(predictor: Predictor, images: Iterator[tuple[str, np.ndarray]], pred_dir: Path | None,
        overlay_dir: Path | None, max_overlays: int | None = None) -> int:
    """Predict every image; write predictions and overlays. Returns the number of images."""
    from gpsnet.viz import MIN_SCORE, figure, write_figure
    writer: Any = None
    if pred_dir is not None:
        from gpsnet.eval.predictions import PredictionWriter
        writer = PredictionWriter(pred_dir, replace=True)
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for image_id, image in images:
        pred = predictor.predict(image)
        if writer is not None:
            writer.add(image_id, pred.scores, pred.masks, pred.global_seg)
        if overlay_dir is not None and (max_overlays is None or n < max_overlays):
            write_figure(overlay_dir / f"{image_id}.png",
                         figure(image, pred, min_score=predictor.score_thresh or MIN_SCORE))
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
    src.add_argument("--video", type=Path, help="a video: writes the overlay video (--out OUT.mp4 or .avi, "
                                                "default <out>/<name>.mp4) and OUT.json (per frame: persons, "
                                                "boxes, scores); gpsnet.video")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, default=Path("out/infer"),
                    help="writes <out>/predictions and <out>/overlays")
    args = ap.parse_args(argv)
    failures: list[str] = []
    try:
        if args.video:
            from gpsnet.video import parse_video
            parse_video(args.video, args.out, lambda: make_predictor(args))
            return 0
        predictor = make_predictor(args)
        n = run(predictor, iter_images(args, failures), args.out / "predictions", args.out / "overlays")
    except (OSError, ValueError) as err:   # missing or bad files (named), bad weights (WeightsError)
        print(f"gpsnet infer: {err}", file=sys.stderr)
        return 1
    print(f"parsed {n} image(s): {args.out / 'predictions'}, {args.out / 'overlays'}")
    if failures:
        print(f"gpsnet infer: {len(failures)} image(s) failed and have no results:\n  "
              + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

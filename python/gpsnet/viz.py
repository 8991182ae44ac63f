"""Drawing: coloured part maps of the predicted persons over the image, with boxes and scores."""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from gpsnet.classes import CLASS_NAMES, colorize

MIN_FIGURE_WIDTH = 512   # overlays are enlarged (nearest) to at least this width,
MAX_ENLARGED_SIDE = 2048  # but never past this many pixels on the image's longer side (a 1 x 5000 px
                          # image enlarged x256 would take gigabytes, past PNG's 1,000,000 px limit)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor <= 1 else cv2.resize(image, None, fx=factor, fy=factor,
                                                interpolation=cv2.INTER_NEAREST)


def instance_map(masks: Sequence[np.ndarray], scores: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """One part map of the image: persons painted in increasing score order (best on top)."""
    out = np.zeros(shape, np.uint8)
    for i in np.argsort(np.asarray(scores, np.float64), kind="stable"):
        m = masks[int(i)]
        out[m > 0] = m[m > 0]
    return out


def overlay(image: np.ndarray, masks: Sequence[np.ndarray], scores: Sequence[float],
            boxes: np.ndarray | None = None, alpha: float = 0.55) -> np.ndarray:
    """BGR image with the persons' part colours blended in and their boxes and scores drawn."""
    parts = instance_map(masks, scores, image.shape[:2])
    colour = colorize(parts)
    out = image.copy()
    fg = parts > 0
    out[fg] = (alpha * colour[fg] + (1 - alpha) * image[fg]).astype(np.uint8)
    if boxes is not None:
        for box, s in zip(np.asarray(boxes).reshape(-1, 4), scores):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), (0, 255, 255), 1)
            cv2.putText(out, f"{s:.2f}", (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                        (0, 255, 255), 1, cv2.LINE_AA)
    return out


def legend(classes: Sequence[int], width: int, row: int = 18) -> np.ndarray:
    """A white strip naming ``classes`` beside their colours, as many per line as fit ``width``."""
    cell = 130
    per_line = max(1, width // cell)
    lines = (len(classes) + per_line - 1) // per_line
    out = np.full((max(1, lines) * row + 4, width, 3), 255, np.uint8)
    for k, c in enumerate(classes):
        x, y = (k % per_line) * cell + 4, (k // per_line) * row + 4
        colour = tuple(int(v) for v in colorize(np.array([[c]]))[0, 0])
        cv2.rectangle(out, (x, y), (x + 12, y + 12), colour, -1)
        cv2.rectangle(out, (x, y), (x + 12, y + 12), (0, 0, 0), 1)
        cv2.putText(out, CLASS_NAMES[c], (x + 16, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def figure(image: np.ndarray, masks: Sequence[np.ndarray], scores: Sequence[float],
           boxes: np.ndarray | None, gt_label: np.ndarray | None = None,
           min_width: int = MIN_FIGURE_WIDTH) -> np.ndarray:
    """[image | predicted persons' parts (boxes, scores) | ground truth, when given], enlarged to at
    least ``min_width`` pixels (as far as ``MAX_ENLARGED_SIDE`` allows), with a legend of the part
    colours that appear."""
    n_panels = 2 + (gt_label is not None)
    factor = max(1, min(-(-min_width // (n_panels * image.shape[1])), MAX_ENLARGED_SIDE // max(image.shape[:2])))
    big = upscale(image, factor)
    pred = overlay(big, [upscale(m, factor) for m in masks], scores,
                   None if boxes is None else np.asarray(boxes, np.float64) * factor)
    panels = [big, pred]
    present = set(int(v) for m in masks for v in np.unique(m))
    if gt_label is not None:
        gt = gt_label.copy()
        gt[gt == 255] = 0
        panels.append(overlay(big, [upscale(gt, factor)], [1.0]))
        present |= set(int(v) for v in np.unique(gt))
    top = side_by_side(*panels)
    titles = ["image", "prediction"] + (["ground truth"] if gt_label is not None else [])
    for k, t in enumerate(titles):
        cv2.putText(top, t, (k * big.shape[1] + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 2,
                    cv2.LINE_AA)
        cv2.putText(top, t, (k * big.shape[1] + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([top, legend(sorted(present - {0}), top.shape[1])], axis=0)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in images]
    return np.concatenate(padded, axis=1)


def write_figure(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a figure as a PNG, atomically (``gpsnet.safeio``); a figure OpenCV cannot encode is a
    ValueError, a failed write a ``WriteFailed`` (an OSError), both naming ``path``."""
    from gpsnet.safeio import atomic_write_bytes
    what = f"{path}: cannot encode a {image.shape[1]} x {image.shape[0]} px PNG"
    try:
        ok, buf = cv2.imencode(".png", image)
    except cv2.error as err:
        raise ValueError(f"{what} ({str(err).strip().splitlines()[-1]})") from None
    if not ok:
        raise ValueError(what)
    atomic_write_bytes(path, buf.tobytes())

"""Drawing: coloured part maps of the predicted persons over the image, with boxes and scores."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from gpsnet.classes import colorize


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


def side_by_side(*images: np.ndarray) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in images]
    return np.concatenate(padded, axis=1)

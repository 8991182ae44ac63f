"""Drawing: the one figure of a parsed image (``gpsnet infer``, ``gpsnet eval --overlays``, the demo,
``gpsnet infer --video``).

``figure(image, prediction, truth)`` lays out titled panels, separated by gaps, each at least
``MIN_FIGURE_WIDTH`` pixels wide (small images enlarged by an integer factor, nearest neighbour, so
every pixel stays a visible square; the enlargement capped at ``MAX_PANEL_PIXELS`` per panel, so a
degenerate image such as 5000 x 1 px cannot allocate gigabytes; larger images are shrunk to it):

    image                 | prediction: parts    | prediction: persons
    legend of the colours | ground truth: parts  | ground truth: persons     (with ``truth``)

The parts panels are part-colour maps (not blended into the image, whose colours could pass for
parts), every person outlined in white and boxed in its own colour with its rank and score; the
persons panels colour each person as an instance, in the same colour as its box.
"""
from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from gpsnet.classes import CLASS_NAMES, IGNORE_LABEL, colorize

MIN_FIGURE_WIDTH = 512            # every panel is enlarged (nearest) to at least this width
MAX_PANEL_PIXELS = 4 * 1024 ** 2  # ... and never beyond this many pixels (larger images are shrunk)
MAX_PANEL_SIDE = 2048             # ... nor this many on its longer side (a 1 x 5000 px image stays viewable)
MIN_SCORE = 0.5                   # predicted persons drawn: those scoring at least this (at most MAX_PERSONS)
MAX_PERSONS = 20
GAP = 12                          # pixels between panels
TITLE = 30                        # title bar height
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKDROP = (235, 235, 235)        # gaps and margins
IGNORED_COLOUR = (128, 128, 128)  # ground-truth pixels labelled 255 (ignored by the evaluation)


class Parsed(Protocol):
    """What a figure draws of a prediction (``gpsnet.infer.Prediction`` is one)."""
    masks: list[np.ndarray]   # per person, an H x W part map (0: not the person)
    boxes: np.ndarray         # N x 4, image coordinates
    scores: np.ndarray        # N


@dataclass
class Persons:
    """Persons to draw: part maps, boxes and (for predictions) scores, best first."""
    masks: list[np.ndarray]
    boxes: np.ndarray
    scores: np.ndarray | None = None

    @classmethod
    def predicted(cls, pred: Parsed, min_score: float = MIN_SCORE, limit: int = MAX_PERSONS) -> "Persons":
        scores = np.asarray(pred.scores, np.float64).reshape(-1)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= min_score][:limit]
        boxes = np.asarray(pred.boxes, np.float64).reshape(-1, 4)
        return cls([pred.masks[i] for i in order], boxes[order], scores[order])

    @classmethod
    def ground_truth(cls, sample: Any) -> "Persons":
        """The annotated persons of a ``gpsnet.data.layout.Sample`` (those with a labelled pixel)."""
        labels = np.asarray(sample.person_labels)
        keep = [i for i in range(labels.shape[0]) if ((labels[i] > 0) & (labels[i] != IGNORE_LABEL)).any()]
        return cls([labels[i] for i in keep], np.asarray(sample.person_boxes, np.float64).reshape(-1, 4)[keep])


def display_size(height: int, width: int, min_width: int = MIN_FIGURE_WIDTH,
                 max_pixels: int = MAX_PANEL_PIXELS, max_side: int = MAX_PANEL_SIDE) -> tuple[int, int]:
    """A panel's size for a ``height`` x ``width`` image: enlarged by the smallest integer factor that
    reaches ``min_width``, but to at most ``max_pixels`` and ``max_side`` pixels on the longer side
    (then shrunk, aspect kept, at least 1 px)."""
    height, width = max(int(height), 1), max(int(width), 1)
    factor: float = max(1, -(-min_width // width))
    if height * width * factor ** 2 > max_pixels or max(height, width) * factor > max_side:
        factor = min((max_pixels / (height * width)) ** 0.5, max_side / max(height, width))
        if factor >= 1:
            factor = int(factor)
    return max(1, int(height * factor)), max(1, int(width * factor))


def _resize(image: np.ndarray, size: tuple[int, int], labels: bool) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrink = h < image.shape[0] or w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink and not labels else cv2.INTER_NEAREST)


def person_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct bright BGR colours (hues spread by the golden ratio)."""
    out = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.12 + 0.618034 * k) % 1.0, 0.85, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def instance_map(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Index (1-based, 0: nobody) of the person drawn at each pixel, earlier persons (better scores)
    on top."""
    out = np.zeros(shape, np.int32)
    for k in range(len(masks) - 1, -1, -1):
        m = masks[k]
        out[(m > 0) & (m != IGNORE_LABEL)] = k + 1
    return out


def _part_map(masks: Sequence[np.ndarray], owner: np.ndarray) -> np.ndarray:
    parts = np.zeros(owner.shape, np.uint8)
    for k, m in enumerate(masks):
        here = owner == k + 1
        parts[here] = m[here]
    return parts


def _outline(canvas: np.ndarray, owner: np.ndarray, n: int) -> None:
    for k in range(n):
        contours, _ = cv2.findContours((owner == k + 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (255, 255, 255), 2, cv2.LINE_AA)


def _boxes(canvas: np.ndarray, persons: Persons, sx: float, sy: float, colours: list) -> None:
    for k, box in enumerate(persons.boxes):
        x1, y1, x2, y2 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
        p1 = (int(round(x1)), int(round(y1)))
        p2 = (max(p1[0], int(round(x2)) - 1), max(p1[1], int(round(y2)) - 1))
        cv2.rectangle(canvas, p1, p2, colours[k], 2)
        text = f"#{k + 1}" + ("" if persons.scores is None else f" {persons.scores[k]:.2f}")
        (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
        ty = p1[1] - 2 if p1[1] - th - base - 2 >= 0 else p1[1] + th + base + 2
        cv2.rectangle(canvas, (p1[0], ty - th - base), (p1[0] + tw + 4, ty + 2), colours[k], -1)
        cv2.putText(canvas, text, (p1[0] + 2, ty - base + 2), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def person_panels(persons: Persons, image_shape: tuple[int, int], size: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """(parts panel, persons panel, part classes shown) of ``persons`` at the panel ``size``."""
    h, w = image_shape
    colours = person_colours(len(persons.masks))
    owner = _resize(instance_map(persons.masks, (h, w)).astype(np.uint16), size, labels=True).astype(np.int32)
    parts = _part_map([_resize(m, size, labels=True) for m in persons.masks], owner)
    parts_img = colorize(parts)
    parts_img[parts == IGNORE_LABEL] = IGNORED_COLOUR
    inst = np.zeros(size + (3,), np.uint8)
    for k, c in enumerate(colours):
        inst[owner == k + 1] = c
    sx, sy = size[1] / w, size[0] / h
    for panel in (parts_img, inst):
        _outline(panel, owner, len(persons.masks))
        _boxes(panel, persons, sx, sy, colours)
    return parts_img, inst, {int(v) for v in np.unique(parts)}


def legend(classes: Sequence[int], width: int, height: int | None = None, row: int = 24) -> np.ndarray:
    """A white panel naming ``classes`` (ids, ``IGNORE_LABEL`` = ignored) beside their colours, in
    columns that fill ``height`` (default: as many lines as ``width`` needs)."""
    cell = 170
    if height is None:
        per_line = max(1, width // cell)
        height = max(1, -(-len(classes) // per_line)) * row + 8
    rows = max(1, (height - 8) // row)
    out = np.full((height, width, 3), 255, np.uint8)
    for k, c in enumerate(classes):
        x, y = (k // rows) * cell + 8, (k % rows) * row + 6
        colour = IGNORED_COLOUR if c == IGNORE_LABEL else tuple(int(v) for v in colorize(np.array([[c]]))[0, 0])
        cv2.rectangle(out, (x, y), (x + 16, y + 16), colour, -1)
        cv2.rectangle(out, (x, y), (x + 16, y + 16), (0, 0, 0), 1)
        name = "ignored (255)" if c == IGNORE_LABEL else CLASS_NAMES[c]
        cv2.putText(out, name, (x + 22, y + 14), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    bar = np.full((TITLE, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (6, TITLE - 9), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Equal-sized cells in rows, GAP pixels between them and around."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + GAP) + GAP, cols * (w + GAP) + GAP, 3), BACKDROP, np.uint8)
    for i, r in enumerate(rows):
        for j, cell in enumerate(r):
            y, x = GAP + i * (h + GAP), GAP + j * (w + GAP)
            out[y:y + h, x:x + w] = cell
    return out


def figure(image: np.ndarray, prediction: Parsed, truth: Any | None = None, min_score: float = MIN_SCORE,
           legend_classes: Sequence[int] | None = None, min_width: int = MIN_FIGURE_WIDTH,
           max_pixels: int = MAX_PANEL_PIXELS) -> np.ndarray:
    """The figure of one BGR image (module docstring): ``prediction`` (masks, boxes, scores; persons
    scoring below ``min_score`` left out), ``truth`` (a ``Sample``: its persons) when given. The
    legend names ``legend_classes``, by default the part classes drawn (a fixed list keeps the size
    of every frame of a video the same)."""
    h, w = image.shape[:2]
    size = display_size(h, w, min_width, max_pixels)
    pred = Persons.predicted(prediction, min_score)
    big = _resize(image, size, labels=False)
    parts, inst, shown = person_panels(pred, (h, w), size)
    total = len(np.asarray(prediction.scores).reshape(-1))
    who = f"{len(pred.masks)} of {total} scoring >= {min_score:g}"
    top = [_titled(big, f"image ({w} x {h} px)"), _titled(parts, f"prediction: parts ({who})"),
           _titled(inst, "prediction: persons")]
    rows = [top]
    if truth is not None:
        gt = Persons.ground_truth(truth)
        gt_parts, gt_inst, gt_shown = person_panels(gt, (h, w), size)
        shown |= gt_shown
        rows.append([None, _titled(gt_parts, f"ground truth: parts ({len(gt.masks)} persons)"),
                     _titled(gt_inst, "ground truth: persons")])
    classes = sorted(shown - {0}) if legend_classes is None else list(legend_classes)
    cell_h, cell_w = top[0].shape[:2]
    if truth is not None and cell_w >= 170 and len(classes) <= max(1, (cell_h - TITLE - 8) // 24) * (cell_w // 170):
        rows[1][0] = _titled(legend(classes, cell_w, cell_h - TITLE), "part colours")   # fits the free cell
        return _grid(rows)
    if truth is not None:
        rows[1][0] = np.full_like(top[0], 255)
    grid = _grid(rows)
    strip = legend(classes, grid.shape[1] - 2 * GAP)
    pad = np.full((strip.shape[0] + GAP, grid.shape[1], 3), BACKDROP, np.uint8)
    pad[:strip.shape[0], GAP:GAP + strip.shape[1]] = strip
    return np.concatenate([grid, pad], axis=0)


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

"""Predictions on disk (docs/evaluation.md), modelled on MHP v2's submission layout.

```
<dir>/results.txt                 # one line per image: <id> <k> <score> <k> <score> ...
                                  #   (k = 1-based person number; an id alone: no person found)
<dir>/persons/<id>_<kk>.png       # person k's part-label map, uint8, image size, 0 = background
<dir>/global_seg/<id>.png         # optional: the whole-image part parsing (the global parser)
<dir>/global_tag/<id>.png         # optional: instance ids (0 = nobody, k = person k)
```

Lines starting with `#` in results.txt are comments. When `persons/<id>_<kk>.png` is missing but
`global_seg` and `global_tag` exist for the image, person k's map is `global_seg * (global_tag == k)`
(MHP v2's submission format; persons without any tagged pixel are then dropped, as MHP does).
Every problem raises `PredictionsError` naming the file.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from gpsnet.classes import NUM_CLASSES
from gpsnet.data.layout import check_image_id, encode_png, read_label_png
from gpsnet.data.outputs import make_folder, prepare_output_folder, write_file
from gpsnet.eval.metrics import as_label_uint8

RESULTS_FILE = "results.txt"
PERSONS_DIR = "persons"
GLOBAL_SEG_DIR = "global_seg"
GLOBAL_TAG_DIR = "global_tag"
FOLDER_ENTRIES: tuple[str, ...] = (RESULTS_FILE, PERSONS_DIR, GLOBAL_SEG_DIR, GLOBAL_TAG_DIR)  # all it holds
HEADER = ("# gpsnet predictions v1: <image id> then <k> <score> per predicted person; "
          "maps in persons/<id>_<kk>.png (docs/evaluation.md)\n")


class PredictionsError(ValueError):
    """A predictions folder is missing, malformed or inconsistent with the data set."""


def person_path(folder: str | os.PathLike, image_id: str, k: int) -> Path:
    return Path(folder) / PERSONS_DIR / f"{image_id}_{k:02d}.png"


def global_seg_path(folder: str | os.PathLike, image_id: str) -> Path:
    return Path(folder) / GLOBAL_SEG_DIR / f"{image_id}.png"


def global_tag_path(folder: str | os.PathLike, image_id: str) -> Path:
    return Path(folder) / GLOBAL_TAG_DIR / f"{image_id}.png"


def _write_png(path: Path, label: np.ndarray, what: str) -> None:
    label = np.asarray(label)
    if label.ndim != 2:
        raise PredictionsError(f"{path}: {what} must be an H x W label map, got shape {label.shape}")
    label = as_label_uint8(label, f"{path}: {what}", PredictionsError)
    write_file(path, encode_png(path, label, PredictionsError), PredictionsError)


class PredictionWriter:
    """Writes a predictions folder image by image; `close()` writes results.txt.

    `add(image_id, scores, masks, global_seg=None)`: `masks` is a list (or N x H x W array) of uint8
    part-label maps at the image's size, one per predicted person, `scores` their confidences.
    With `write_tags=True`, `global_tag/<id>.png` is written too (the highest score wins where
    persons overlap). With `replace=True` (the folder is the command's own output, as
    `gpsnet eval`'s and `gpsnet infer`'s `<out>/predictions`), an earlier predictions folder there is
    emptied first, so that none of its files (a `global_seg/` of another variant) is read with the
    new ones; a folder holding anything else is refused (`prepare_output_folder`). Usable as a
    context manager.
    """

    def __init__(self, folder: str | os.PathLike, write_tags: bool = False,
                 num_classes: int = NUM_CLASSES, replace: bool = False) -> None:
        self.folder = Path(folder)
        self.write_tags = write_tags
        self.num_classes = num_classes
        if replace:
            prepare_output_folder(self.folder, FOLDER_ENTRIES, "predictions folder", True, PredictionsError)
        make_folder(self.folder / PERSONS_DIR, PredictionsError)
        self._lines: dict[str, str] = {}
        self._closed = False

    def add(self, image_id: str, scores: Sequence[float] | np.ndarray,
            masks: Sequence[np.ndarray] | np.ndarray, global_seg: np.ndarray | None = None) -> None:
        if self._closed:
            raise PredictionsError(f"{self.folder}: writer already closed")
        check_image_id(image_id, self.folder / RESULTS_FILE, PredictionsError)
        if image_id in self._lines:
            raise PredictionsError(f"{self.folder / RESULTS_FILE}: image {image_id!r} added twice")
        scores = [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]
        masks = list(masks)
        if len(scores) != len(masks):
            raise PredictionsError(f"{self.folder / RESULTS_FILE}: image {image_id!r}: "
                                   f"{len(scores)} scores for {len(masks)} masks")
        if not all(math.isfinite(s) for s in scores):
            raise PredictionsError(f"{self.folder / RESULTS_FILE}: image {image_id!r}: non-finite score")
        shape = None
        for k, mask in enumerate(masks, start=1):
            path = person_path(self.folder, image_id, k)
            mask = np.asarray(mask)
            if shape is not None and mask.shape != shape:
                raise PredictionsError(f"{path}: mask size {mask.shape} differs from person 1's {shape}")
            shape = mask.shape
            if mask.size and int(mask.max()) >= self.num_classes:
                raise PredictionsError(f"{path}: labels outside 0..{self.num_classes - 1}")
            _write_png(path, mask, "a person mask")
        if global_seg is not None:
            make_folder(self.folder / GLOBAL_SEG_DIR, PredictionsError)
            _write_png(global_seg_path(self.folder, image_id), global_seg, "global_seg")
        if self.write_tags and masks:
            tag = np.zeros(np.asarray(masks[0]).shape, dtype=np.uint8)
            for k in sorted(range(len(masks)), key=lambda i: scores[i]):  # highest score last
                tag[np.asarray(masks[k]) > 0] = k + 1
            make_folder(self.folder / GLOBAL_TAG_DIR, PredictionsError)
            _write_png(global_tag_path(self.folder, image_id), tag, "global_tag")
        self._lines[image_id] = " ".join([image_id] + [f"{k} {s!r}" for k, s in
                                                       enumerate(scores, start=1)])

    def close(self) -> Path:
        path = self.folder / RESULTS_FILE
        if not self._closed:
            write_file(path, HEADER + "".join(line + "\n" for line in self._lines.values()), PredictionsError)
            self._closed = True
        return path

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- reading

@dataclass
class ImagePrediction:
    image_id: str
    scores: np.ndarray          # float64 (M,)
    masks: np.ndarray           # uint8 (M, H, W)
    global_seg: np.ndarray | None


def read_results(folder: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """results.txt as {image id: [(k, score), ...]} in file order."""
    path = Path(folder) / RESULTS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PredictionsError(f"{path}: missing results file (is {folder} a predictions folder?)") from None
    out: dict[str, list[tuple[int, float]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items = line.split()
        image_id, rest = check_image_id(items[0], f"{path}:{lineno}", PredictionsError), items[1:]
        if len(rest) % 2:
            raise PredictionsError(f"{path}:{lineno}: expected <id> then pairs <k> <score>")
        persons = []
        for i in range(0, len(rest), 2):
            try:
                k, score = int(rest[i]), float(rest[i + 1])
            except ValueError:
                raise PredictionsError(f"{path}:{lineno}: bad pair {rest[i]!r} {rest[i + 1]!r}") from None
            if k < 1 or not math.isfinite(score):
                raise PredictionsError(f"{path}:{lineno}: bad person number {k} or score {score}")
            persons.append((k, score))
        if len({k for k, _ in persons}) != len(persons):
            raise PredictionsError(f"{path}:{lineno}: a person number appears twice")
        if image_id in out:
            raise PredictionsError(f"{path}:{lineno}: image {image_id!r} listed twice")
        out[image_id] = persons
    return out


def read_png_label(path: Path, what: str) -> np.ndarray:
    """A predicted label map: `gpsnet.data.layout.read_label_png` (PNG signature, bit depth and
    palette checked), a 3-channel PNG read by its first channel as MHP's tools write."""
    return read_label_png(path, what, PredictionsError, first_channel=True)


def _check(path: Path, lab: np.ndarray, shape: tuple[int, int] | None, num_classes: int,
           what: str) -> None:
    if shape is not None and lab.shape != tuple(shape):
        raise PredictionsError(f"{path}: {what} size {lab.shape[1]}x{lab.shape[0]} differs from the "
                               f"image's {shape[1]}x{shape[0]}")
    if lab.size and int(lab.max()) >= num_classes:
        bad = np.unique(lab[lab >= num_classes]).tolist()
        raise PredictionsError(f"{path}: {what} labels outside 0..{num_classes - 1}: {bad[:10]}")


def load_prediction(folder: str | os.PathLike, image_id: str, persons: Sequence[tuple[int, float]],
                    shape: tuple[int, int] | None = None, num_classes: int = NUM_CLASSES,
                    with_global: bool = True) -> ImagePrediction:
    """The predictions of one image, checked against the image size `shape` (H, W)."""
    folder = Path(folder)
    seg_file = global_seg_path(folder, image_id)
    tag_file = global_tag_path(folder, image_id)
    global_seg = None
    if seg_file.is_file() and (with_global or not all(person_path(folder, image_id, k).is_file()
                                                      for k, _ in persons)):
        global_seg = read_png_label(seg_file, "global parsing")
        _check(seg_file, global_seg, shape, num_classes, "global parsing")
        shape = shape or global_seg.shape
    tag = None
    scores: list[float] = []
    masks: list[np.ndarray] = []
    for k, score in persons:
        path = person_path(folder, image_id, k)
        if path.is_file():
            lab = read_png_label(path, "person mask")
            _check(path, lab, shape, num_classes, "person mask")
        elif global_seg is not None and tag_file.is_file():
            if tag is None:
                tag = read_png_label(tag_file, "instance tags")
                _check(tag_file, tag, shape, 256, "instance tags")
            sel = tag == k
            if not sel.any():
                continue  # MHP: a tag without pixels is no person
            lab = np.where(sel, global_seg, 0).astype(np.uint8)
        else:
            raise PredictionsError(f"{path}: missing person mask (and no {GLOBAL_SEG_DIR}/ + "
                                   f"{GLOBAL_TAG_DIR}/ pair to derive it from)")
        shape = shape or lab.shape
        masks.append(lab)
        scores.append(score)
    if masks:
        stack = np.stack(masks)
    else:
        stack = np.zeros((0,) + (tuple(shape) if shape else (0, 0)), dtype=np.uint8)
    return ImagePrediction(image_id, np.asarray(scores, dtype=np.float64), stack,
                           global_seg if with_global else None)


class PredictionsFolder:
    """A predictions folder opened for reading: `folder.ids`, `folder.load(id, shape)`."""

    def __init__(self, folder: str | os.PathLike, num_classes: int = NUM_CLASSES) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise PredictionsError(f"{self.folder}: no such predictions folder")
        self.results = read_results(self.folder)
        self.num_classes = num_classes

    @property
    def ids(self) -> list[str]:
        return list(self.results)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.results

    def load(self, image_id: str, shape: tuple[int, int] | None = None,
             with_global: bool = True) -> ImagePrediction:
        return load_prediction(self.folder, image_id, self.results[image_id], shape,
                               self.num_classes, with_global)

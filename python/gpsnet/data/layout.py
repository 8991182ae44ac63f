"""Reading and validating the GPS layout (DESIGN.md section 5, docs/data.md).

```
<root>/images/<id>.jpg
<root>/annotations/<id>_<NN>_<MM>.png   # NN persons, MM = 01..NN; 0 outside that person
<root>/lists/{train,val,test}.txt        # one <id> per line
```

Every problem with the files raises `GPSDataError` (a `ValueError`) whose message names the file.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from gpsnet.classes import FACE, IGNORE_LABEL, NUM_CLASSES

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_DIR = "images"
ANNOTATION_DIR = "annotations"
LIST_DIR = "lists"
_ANN_RE = re.compile(r"^(?P<id>.+)_(?P<nn>\d{2,})_(?P<mm>\d{2,})\.png$")


class GPSDataError(ValueError):
    """A file of a GPS-layout data set is missing, unreadable or inconsistent."""


@dataclass
class Sample:
    """One image of the data set with its per-person annotations (docs/interfaces.md)."""

    image_id: str
    image: np.ndarray          # uint8 H x W x 3, BGR
    person_labels: np.ndarray  # uint8 N x H x W, one part-label map per person, MM order
    person_boxes: np.ndarray   # float32 N x 4: x1, y1, x2, y2 (x2 = max col + 1)
    face_boxes: np.ndarray     # float32 N x 4, NaN row when the person shows no face
    has_face: np.ndarray       # bool N
    global_label: np.ndarray   # uint8 H x W, the whole-image part label

    @property
    def num_persons(self) -> int:
        return int(self.person_labels.shape[0])


# ----------------------------------------------------------------------------- paths

def image_path(root: str | os.PathLike, image_id: str) -> Path:
    return Path(root) / IMAGE_DIR / f"{image_id}.jpg"


def annotation_path(root: str | os.PathLike, image_id: str, num: int, index: int) -> Path:
    """`index` is 1-based (MM)."""
    return Path(root) / ANNOTATION_DIR / f"{image_id}_{num:02d}_{index:02d}.png"


def list_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / LIST_DIR / f"{split}.txt"


# ----------------------------------------------------------------------------- geometry

def mask_box(mask: np.ndarray) -> np.ndarray:
    """The continuous box (x1, y1, x2, y2) of a boolean mask, x2 = max col + 1; NaNs when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.full(4, np.nan, dtype=np.float32)
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def person_and_face_boxes(person_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person boxes (every non-zero pixel, 255 included), face boxes (class `face`) and has_face."""
    n = person_labels.shape[0]
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    faces = np.full((n, 4), np.nan, dtype=np.float32)
    for i in range(n):
        lab = person_labels[i]
        boxes[i] = mask_box(lab != 0)
        faces[i] = mask_box(lab == FACE)
    has_face = ~np.isnan(faces[:, 0])
    return boxes, faces, has_face


def global_label(person_labels: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
    """The whole-image part label. Overlap rule: where several persons label a pixel (non-zero),
    the person with the LOWEST index (MM order, the leftmost) wins; 255 only where the winning
    person says 255."""
    if person_labels.shape[0] == 0:
        assert shape is not None
        return np.zeros(tuple(shape[:2]), dtype=np.uint8)
    out = np.zeros(person_labels.shape[1:], dtype=np.uint8)
    # Paint the last person first so that earlier ones overwrite it.
    for lab in person_labels[::-1]:
        np.copyto(out, lab, where=lab != 0)
    return out


# ----------------------------------------------------------------------------- reading

def _check_jpeg_complete(path: Path, data: bytes) -> None:
    if not data.startswith(b"\xff\xd8"):
        raise GPSDataError(f"{path}: not a JPEG file (no SOI marker)")
    if b"\xff\xd9" not in data[-64:]:
        raise GPSDataError(f"{path}: truncated JPEG (no EOI marker at the end)")


def _check_png_complete(path: Path, data: bytes) -> None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise GPSDataError(f"{path}: not a PNG file")
    if b"IEND" not in data[-16:]:
        raise GPSDataError(f"{path}: truncated PNG (no IEND chunk at the end)")


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes; GPSDataError naming the file when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GPSDataError(f"{path}: missing {what}") from None
    except OSError as err:
        raise GPSDataError(f"{path}: unreadable {what} ({err})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A colour image as uint8 H x W x 3 BGR; GPSDataError for a missing, truncated or corrupt file."""
    path = Path(path)
    data = _read_bytes(path, "image")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        _check_jpeg_complete(path, data)
    elif path.suffix.lower() == ".png":
        _check_png_complete(path, data)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise GPSDataError(f"{path}: unreadable or corrupt image")
    return img


def read_label(path: str | os.PathLike, check_range: bool = True) -> np.ndarray:
    """An 8-bit label PNG as uint8 H x W (a 3-channel file with equal channels is accepted)."""
    path = Path(path)
    data = _read_bytes(path, "annotation")
    _check_png_complete(path, data)
    lab = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise GPSDataError(f"{path}: unreadable or corrupt annotation")
    if lab.dtype != np.uint8:
        raise GPSDataError(f"{path}: annotation must be 8-bit, found {lab.dtype}")
    if lab.ndim == 3:
        if lab.shape[2] == 4:
            lab = lab[..., :3]
        if not (np.array_equal(lab[..., 0], lab[..., 1]) and np.array_equal(lab[..., 0], lab[..., 2])):
            raise GPSDataError(f"{path}: annotation must be a single-channel label map "
                               "(colour PNG with differing channels)")
        lab = np.ascontiguousarray(lab[..., 0])
    if check_range:
        bad = (lab >= NUM_CLASSES) & (lab != IGNORE_LABEL)
        if bad.any():
            values = sorted(set(np.unique(lab[bad]).tolist()))
            raise GPSDataError(f"{path}: labels outside 0..{NUM_CLASSES - 1} and {IGNORE_LABEL}: "
                               f"{values[:10]}")
    return lab


AnnotationIndex = dict[str, list[tuple[int, int, Path]]]


def index_annotations(root: str | os.PathLike) -> AnnotationIndex:
    """{image id: [(NN, MM, path), ...]} of every file named like an annotation (one folder scan)."""
    folder = Path(root) / ANNOTATION_DIR
    if not folder.is_dir():
        raise GPSDataError(f"{folder}: missing annotation folder")
    index: AnnotationIndex = {}
    for entry in os.scandir(folder):
        m = _ANN_RE.match(entry.name)
        if m is not None:
            index.setdefault(m.group("id"), []).append((int(m.group("nn")), int(m.group("mm")), Path(entry.path)))
    return index


def annotation_files(root: str | os.PathLike, image_id: str,
                     index: AnnotationIndex | None = None) -> list[Path]:
    """The annotation files of one image, validated: one NN for all, MM = 01..NN exactly.
    `index` (from `index_annotations`) avoids scanning the folder for every image."""
    folder = Path(root) / ANNOTATION_DIR
    if index is None:
        if not folder.is_dir():
            raise GPSDataError(f"{folder}: missing annotation folder")
        entries = []
        prefix = f"{image_id}_"
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix):
                m = _ANN_RE.match(entry.name)
                if m is not None and m.group("id") == image_id:
                    entries.append((int(m.group("nn")), int(m.group("mm")), Path(entry.path)))
    else:
        entries = index.get(image_id, [])
    found: dict[int, Path] = {mm: path for _, mm, path in entries}
    counts: set[int] = {nn for nn, _, _ in entries}
    if not found:
        raise GPSDataError(f"{folder / (image_id + '_NN_MM.png')}: missing annotation "
                           f"(no annotation file for image {image_id!r})")
    if len(counts) != 1:
        raise GPSDataError(f"{folder}: annotations of {image_id!r} disagree on the person count NN: "
                           f"{sorted(counts)}")
    nn = counts.pop()
    if sorted(found) != list(range(1, nn + 1)):
        missing = [annotation_path(root, image_id, nn, k).name for k in range(1, nn + 1) if k not in found]
        extra = [found[k].name for k in sorted(found) if not 1 <= k <= nn]
        raise GPSDataError(f"{folder}: image {image_id!r} has {len(found)} annotation files but NN = {nn}"
                           + (f"; missing {missing}" if missing else "")
                           + (f"; unexpected {extra}" if extra else ""))
    return [found[k] for k in range(1, nn + 1)]


def load_sample(root: str | os.PathLike, image_id: str, index: AnnotationIndex | None = None) -> Sample:
    """Read and validate one image and its annotations."""
    img_file = image_path(root, image_id)
    image = read_image(img_file)
    files = annotation_files(root, image_id, index)
    h, w = image.shape[:2]
    labels = np.empty((len(files), h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        lab = read_label(f)
        if lab.shape != (h, w):
            raise GPSDataError(f"{f}: annotation size {lab.shape[1]}x{lab.shape[0]} differs from its "
                               f"image {img_file} ({w}x{h})")
        labels[i] = lab
    boxes, faces, has_face = person_and_face_boxes(labels)
    return Sample(image_id=image_id, image=image, person_labels=labels, person_boxes=boxes,
                  face_boxes=faces, has_face=has_face, global_label=global_label(labels, (h, w)))


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """The ids of a split list; GPSDataError when the list is missing or empty."""
    path = list_path(root, split)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GPSDataError(f"{path}: missing split list") from None
    ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not ids:
        raise GPSDataError(f"{path}: empty split list")
    return ids


def write_split(root: str | os.PathLike, split: str, ids: Sequence[str]) -> Path:
    path = list_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def write_sample(root: str | os.PathLike, image_id: str, image: np.ndarray,
                 person_labels: Sequence[np.ndarray], jpeg_quality: int = 92) -> None:
    """Write one image and its per-person annotations in the layout."""
    root = Path(root)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (root / ANNOTATION_DIR).mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise GPSDataError(f"{image_path(root, image_id)}: JPEG encoding failed")
    image_path(root, image_id).write_bytes(buf.tobytes())
    n = len(person_labels)
    for k, lab in enumerate(person_labels, start=1):
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(lab, dtype=np.uint8),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise GPSDataError(f"{annotation_path(root, image_id, n, k)}: PNG encoding failed")
        annotation_path(root, image_id, n, k).write_bytes(buf.tobytes())


class GPSDataset:
    """The ids of one split of a GPS-layout data set and their samples.

    `GPSDataset(root, split)[i]` is a `Sample`; an unknown id given to `load` raises GPSDataError.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        if split not in SPLITS:
            raise GPSDataError(f"{list_path(root, split)}: unknown split {split!r} (one of {SPLITS})")
        self.root = Path(root)
        self.split = split
        if not (self.root / IMAGE_DIR).is_dir():
            raise GPSDataError(f"{self.root / IMAGE_DIR}: missing image folder (is {self.root} a GPS data set?)")
        self.ids: list[str] = read_split(self.root, split)
        self._known = set(self.ids)
        self._index = index_annotations(self.root)
        for image_id in self.ids:
            if not image_path(self.root, image_id).is_file():
                raise GPSDataError(f"{list_path(self.root, split)}: unknown id {image_id!r} "
                                   f"(no {image_path(self.root, image_id)})")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return load_sample(self.root, self.ids[index], self._index)

    def __iter__(self) -> Iterator[Sample]:
        for image_id in self.ids:
            yield load_sample(self.root, image_id, self._index)

    def load(self, image_id: str) -> Sample:
        if image_id not in self._known:
            raise GPSDataError(f"{list_path(self.root, self.split)}: unknown id {image_id!r}")
        return load_sample(self.root, image_id, self._index)

    def load_nonempty(self, image_id: str) -> Sample | None:
        """The sample with empty persons removed; None (with one warning naming the image) when
        no person has any pixel."""
        s = self.load(image_id)
        keep = ~np.isnan(s.person_boxes[:, 0])
        if not keep.any():
            warnings.warn(f"{image_path(self.root, image_id)}: no person with any labelled pixel; "
                          "image skipped", stacklevel=2)
            return None
        if not keep.all():
            s = Sample(s.image_id, s.image, s.person_labels[keep], s.person_boxes[keep],
                       s.face_boxes[keep], s.has_face[keep], s.global_label)
        return s

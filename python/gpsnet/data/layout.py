"""Reading and validating the GPS layout (DESIGN.md section 5, docs/data.md).

```
<root>/images/<id>.jpg
<root>/annotations/<id>_<NN>_<MM>.png   # NN persons, MM = 01..NN; 0 outside that person
<root>/lists/{train,val,test}.txt        # one <id> per line
```

Every problem with the files raises `GPSDataError` (a `ValueError`) whose message names the file.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from gpsnet.argtypes import int_at_least
from gpsnet.classes import FACE, IGNORE_LABEL, NUM_CLASSES
from gpsnet.data.outputs import make_folder, write_file

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_DIR = "images"
ANNOTATION_DIR = "annotations"
LIST_DIR = "lists"
LAYOUT_DIRS: tuple[str, ...] = (IMAGE_DIR, ANNOTATION_DIR, LIST_DIR)   # all a data set folder holds
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


def annotation_name(image_id: str, num: int, index: int) -> str:
    """`<id>_<NN>_<MM>.png`; `index` is 1-based (MM)."""
    return f"{image_id}_{num:02d}_{index:02d}.png"


def annotation_path(root: str | os.PathLike, image_id: str, num: int, index: int) -> Path:
    """`index` is 1-based (MM)."""
    return Path(root) / ANNOTATION_DIR / annotation_name(image_id, num, index)


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


# ----------------------------------------------------------------------------- ids

ID_RULE = "non-empty, without whitespace, control characters, '/' or '\\', not starting with '#'"


def image_id_problem(image_id: str) -> str | None:
    """What is wrong with an image id (None when it is valid). The one rule for ids, used by the
    layout, the split lists, the converters, the predictions format and `gpsnet infer`: lists and
    results.txt are whitespace-separated with '#' comments, and an id names files."""
    if not image_id:
        return "empty"
    if image_id.startswith("#"):
        return "starts with '#' (a comment in lists and results.txt)"
    for c in image_id:
        if c.isspace():
            return "contains whitespace (lists and results.txt are whitespace-separated)"
        if not c.isprintable():
            return "contains a control character"
        if c in "/\\":
            return "contains a path separator"
    return None


def check_image_id(image_id: str, where: str | os.PathLike,
                   error: type[Exception] = GPSDataError) -> str:
    """``image_id`` when valid, else ``error`` naming ``where`` (a file, or ``file:line``)."""
    problem = image_id_problem(image_id)
    if problem is not None:
        raise error(f"{where}: bad image id {image_id!r}: {problem} (ids are {ID_RULE})")
    return image_id


def image_id_of_file(path: str | os.PathLike) -> str:
    """The id of an image file outside the layout (`gpsnet infer --image/--folder`): its name
    without the extension, each run of whitespace replaced by '_' ("my photo.jpg" -> "my_photo");
    GPSDataError when that is still not a valid id."""
    path = Path(path)
    return check_image_id("_".join(path.stem.split()), path)


# ----------------------------------------------------------------------------- reading

JPEG_SUFFIXES = (".jpg", ".jpeg")
PNG_SUFFIX = ".png"
# The image files of a folder outside the layout (`gpsnet infer --folder`; `--video` refuses them).
FOLDER_IMAGE_SUFFIXES = (*JPEG_SUFFIXES, PNG_SUFFIX, ".bmp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"   # length 0, type, CRC
_PNG_PALETTE = 3                                      # IHDR colour type of an indexed PNG
_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS, _JPEG_EOI_CODE, _JPEG_TEM = 0xDA, 0xD9, 0x01
_JPEG_EOI = bytes([0xFF, _JPEG_EOI_CODE])
_JPEG_RST = range(0xD0, 0xD8)
# Image pixels as stored: EXIF orientation is NOT applied, so that an image and its annotations
# (PNGs, which carry no orientation) always agree pixel for pixel.
IMAGE_READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# libjpeg's warnings that mean corrupt entropy-coded data (jerror.h: JWRN_HIT_MARKER,
# JWRN_EXTRANEOUS_DATA, JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC, JWRN_JPEG_EOF, ...).
JPEG_CORRUPTION_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")


def _check_jpeg_structure(path: Path, data: bytes) -> None:
    """SOI first; the marker segments before the first scan well formed; an EOI marker somewhere
    after the start of the first scan (bytes after EOI are allowed: cameras and editors append
    data there)."""
    if not data.startswith(_JPEG_SOI):
        raise GPSDataError(f"{path}: not a JPEG file (no SOI marker)")
    pos, n = len(_JPEG_SOI), len(data)
    while True:
        if pos >= n:
            raise GPSDataError(f"{path}: truncated JPEG (ends before its image data)")
        if data[pos] != 0xFF:
            raise GPSDataError(f"{path}: corrupt JPEG (no marker at byte {pos})")
        while pos < n and data[pos] == 0xFF:   # fill bytes
            pos += 1
        if pos >= n:
            raise GPSDataError(f"{path}: truncated JPEG (ends before its image data)")
        marker = data[pos]
        pos += 1
        if marker == _JPEG_TEM or marker in _JPEG_RST:
            continue
        if marker == _JPEG_EOI_CODE:
            raise GPSDataError(f"{path}: corrupt JPEG (EOI marker before any image data)")
        if pos + 2 > n:
            raise GPSDataError(f"{path}: truncated JPEG (ends before its image data)")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise GPSDataError(f"{path}: corrupt JPEG (bad segment length at byte {pos})")
        pos += length
        if marker == _JPEG_SOS:
            break
    if data.find(_JPEG_EOI, pos) < 0:
        raise GPSDataError(f"{path}: truncated JPEG (no EOI marker after the image data)")


def _png_header(path: Path, data: bytes, what: str, error: type[Exception]) -> tuple[int, int]:
    """(bit depth, colour type) of a complete PNG; ``error`` for a missing signature, a missing
    IHDR or IEND chunk (truncated). Bytes after IEND are allowed."""
    if not data.startswith(PNG_SIGNATURE):
        raise error(f"{path}: not a PNG file (no PNG signature; is the {what} another format "
                    "with a .png name?)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise error(f"{path}: corrupt PNG (no IHDR chunk)")
    if data.rfind(PNG_IEND_CHUNK, 33) < 0:
        raise error(f"{path}: truncated PNG (no IEND chunk)")
    return data[24], data[25]        # IHDR: width, height (4 bytes each), bit depth, colour type


def _read_bytes(path: Path, what: str, error: type[Exception] = GPSDataError) -> bytes:
    """The file's bytes; ``error`` naming the file when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: missing {what}") from None
    except OSError as err:
        raise error(f"{path}: unreadable {what} ({err.strerror or err})") from None


_STDERR_LOCK = threading.Lock()


def _capture_fd() -> int:
    """A file descriptor of an anonymous file: a memory file on Linux, a temporary file elsewhere."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("gpsnet-imdecode")
    with tempfile.TemporaryFile() as f:
        return os.dup(f.fileno())


def _imdecode_with_messages(buf: np.ndarray, flags: int) -> tuple[np.ndarray | None, list[str]]:
    """cv2.imdecode and the lines its decoder printed. libjpeg (inside OpenCV) reports corrupt
    data only as a warning printed on the process's stderr and still returns an image, so for
    the decode file descriptor 2 points at a memory file (under a lock); what other threads wrote
    meanwhile is passed on to the real stderr afterwards.

    Only for a thread that no other thread writes to stderr beside: the file descriptor is the
    process's. A background thread must not call it while Caffe runs in the foreground: Caffe's
    log lines of that time (a CHECK failure's message, the last lines before exit) would go to the
    memory file, and be lost if the process ends before the decode does (in the images, 1 `caffe
    test` in 10 lost its output that way). `BatchPrefetcher` therefore decodes with
    ``verify_decode=False`` and has its consumer check each image once (`verify_image`)."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:                       # no stderr at all: nothing to capture
            return cv2.imdecode(buf, flags), []
        capture = _capture_fd()
        try:
            os.dup2(capture, 2)
            try:
                img = cv2.imdecode(buf, flags)
            finally:
                os.dup2(saved, 2)
            size = os.lseek(capture, 0, os.SEEK_CUR)
            text = os.pread(capture, size, 0).decode(errors="replace") if size else ""
        finally:
            os.close(capture)
            os.close(saved)
    mine = [ln for ln in text.splitlines() if ln.startswith(JPEG_CORRUPTION_WARNINGS)]
    others = "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith(JPEG_CORRUPTION_WARNINGS))
    if others:
        os.write(2, others.encode())
    return img, mine


def read_image(path: str | os.PathLike, verify_decode: bool = True) -> np.ndarray:
    """A colour image as uint8 H x W x 3 BGR, its pixels as stored (EXIF orientation ignored).
    The one image reader of the project. GPSDataError for a missing, unreadable, truncated or
    corrupt file: a JPEG must have the structure `_check_jpeg_structure` checks and decode without
    libjpeg reporting corrupt data; a PNG must have its signature and IEND chunk.

    ``verify_decode=False`` (for a background thread: `_imdecode_with_messages`) leaves out the one
    check that needs the process's stderr, libjpeg's report of corrupt scan data: such a file then
    decodes to an image, and libjpeg's warning goes to stderr as printed (the decode holds the
    lock of the checks, so that a check in another thread meanwhile does not catch the warning as
    its own). Who reads so checks the file with `verify_image` in the foreground before using the
    image."""
    path = Path(path)
    data = _read_bytes(path, "image")
    suffix = path.suffix.lower()
    buf = np.frombuffer(data, dtype=np.uint8)
    if suffix in JPEG_SUFFIXES:
        _check_jpeg_structure(path, data)
        if verify_decode:
            img, corrupt = _imdecode_with_messages(buf, IMAGE_READ_FLAGS)
        else:
            with _STDERR_LOCK:   # so that a check in another thread meanwhile never catches its messages
                img, corrupt = cv2.imdecode(buf, IMAGE_READ_FLAGS), []
        if corrupt:
            raise GPSDataError(f"{path}: corrupt JPEG data (libjpeg: {corrupt[0]})")
    else:
        if suffix == PNG_SUFFIX:
            _png_header(path, data, "image", GPSDataError)
        img = cv2.imdecode(buf, IMAGE_READ_FLAGS)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise GPSDataError(f"{path}: unreadable or corrupt image")
    return img


def verify_image(path: str | os.PathLike) -> None:
    """GPSDataError when `read_image` refuses the file; run it where nothing else writes to stderr
    (the thread that runs the net): it checks what ``verify_decode=False`` left out."""
    read_image(path)


def read_label_png(path: str | os.PathLike, what: str = "annotation",
                   error: type[Exception] = GPSDataError, first_channel: bool = False) -> np.ndarray:
    """The one reader of label-map PNGs (annotations, CIHP maps, predicted maps): uint8 H x W.

    - 8-bit grey: the values; indexed (palette) PNGs of any bit depth: the palette indices;
    - 8-bit colour: the channels must be equal (or, with ``first_channel``, the first is used,
      as MHP's tools write); an alpha channel is dropped;
    - anything else (1, 2, 4 or 16-bit grey or colour) is refused: such a file is a mask or an
      image, not a label map, and decoders would rescale its values.

    ``error`` (naming the file) for a missing, truncated, corrupt or non-PNG file."""
    path = Path(path)
    data = _read_bytes(path, what, error)
    depth, colour = _png_header(path, data, what, error)
    if colour == _PNG_PALETTE:
        from PIL import Image   # Pillow (pinned in pyproject); OpenCV would return the colours
        try:
            with Image.open(io.BytesIO(data)) as im:
                lab = np.asarray(im, dtype=np.uint8) if im.mode == "P" else None
        except (OSError, ValueError, SyntaxError):
            lab = None
        if lab is None or lab.ndim != 2:
            raise error(f"{path}: unreadable or corrupt {what}")
        return np.ascontiguousarray(lab)
    if depth != 8:
        raise error(f"{path}: {what} is a {depth}-bit PNG; a label map must be an 8-bit PNG "
                    "(grey values, or palette indices)")
    lab = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.dtype != np.uint8:
        raise error(f"{path}: unreadable or corrupt {what}")
    if lab.ndim == 3:
        lab = lab[..., :3]
        if not first_channel and not (np.array_equal(lab[..., 0], lab[..., 1])
                                      and np.array_equal(lab[..., 0], lab[..., 2])):
            raise error(f"{path}: {what} must be a single-channel label map "
                        "(colour PNG with differing channels)")
        lab = np.ascontiguousarray(lab[..., 0])
    return lab


def read_label(path: str | os.PathLike, check_range: bool = True) -> np.ndarray:
    """An annotation PNG (`read_label_png`) with its labels checked: 0..19 and 255."""
    path = Path(path)
    lab = read_label_png(path)
    if check_range:
        bad = (lab >= NUM_CLASSES) & (lab != IGNORE_LABEL)
        if bad.any():
            values = sorted(set(np.unique(lab[bad]).tolist()))
            raise GPSDataError(f"{path}: labels outside 0..{NUM_CLASSES - 1} and {IGNORE_LABEL}: "
                               f"{values[:10]}")
    return lab


AnnotationIndex = dict[str, list[tuple[int, int, Path]]]


def index_person_files(folder: str | os.PathLike) -> AnnotationIndex:
    """{image id: [(NN, MM, path), ...]} of every file named `<id>_<NN>_<MM>.png` in ``folder``
    (one folder scan; no glob, so ids such as `img[1]` are found)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GPSDataError(f"{folder}: missing annotation folder")
    index: AnnotationIndex = {}
    for entry in os.scandir(folder):
        m = _ANN_RE.match(entry.name)
        if m is not None:
            index.setdefault(m.group("id"), []).append((int(m.group("nn")), int(m.group("mm")), Path(entry.path)))
    return index


def index_annotations(root: str | os.PathLike) -> AnnotationIndex:
    """`index_person_files` of `<root>/annotations`."""
    return index_person_files(Path(root) / ANNOTATION_DIR)


def person_files(folder: str | os.PathLike, image_id: str,
                 index: AnnotationIndex | None = None) -> list[Path]:
    """The files `<id>_<NN>_<MM>.png` of one image in ``folder``, validated: one NN for all,
    MM = 01..NN exactly. `index` (from `index_person_files`) avoids a folder scan per image."""
    folder = Path(folder)
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
        missing = [annotation_name(image_id, nn, k) for k in range(1, nn + 1) if k not in found]
        extra = [found[k].name for k in sorted(found) if not 1 <= k <= nn]
        raise GPSDataError(f"{folder}: image {image_id!r} has {len(found)} annotation files but NN = {nn}"
                           + (f"; missing {missing}" if missing else "")
                           + (f"; unexpected {extra}" if extra else ""))
    return [found[k] for k in range(1, nn + 1)]


def annotation_files(root: str | os.PathLike, image_id: str,
                     index: AnnotationIndex | None = None) -> list[Path]:
    """`person_files` of `<root>/annotations`."""
    return person_files(Path(root) / ANNOTATION_DIR, image_id, index)


def load_sample(root: str | os.PathLike, image_id: str, index: AnnotationIndex | None = None,
                verify_decode: bool = True) -> Sample:
    """Read and validate one image and its annotations (``verify_decode``: `read_image`'s)."""
    img_file = image_path(root, image_id)
    image = read_image(img_file, verify_decode)
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
    """The ids of a split list; GPSDataError (naming the list, and the line) when the list is
    missing, unreadable or empty, holds an invalid id (`check_image_id`) or an id twice."""
    path = list_path(root, split)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GPSDataError(f"{path}: missing split list") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GPSDataError(f"{path}: unreadable split list ({err})") from None
    ids = parse_id_lines(text, path, comments=True)
    if not ids:
        raise GPSDataError(f"{path}: empty split list")
    return ids


def first_images(ids: list[str], limit: int, option: str = "--limit") -> list[str]:
    """The first ``limit`` ids of a split (0: all of them). A negative ``limit`` is a ValueError
    naming ``option`` (a slice ``ids[:-1]`` would silently drop the last image)."""
    if limit < 0:
        raise ValueError(f"{option} {limit}: at most N images takes N >= 0 (0: all)")
    return ids[:limit] if limit else list(ids)


image_limit = int_at_least(0, "0: all images")
"""argparse type of the ``--limit``-like options: an integer >= 0 (0: all images)."""


def parse_id_lines(text: str, path: str | os.PathLike, comments: bool = False,
                   to_id: Callable[[str], str] = str) -> list[str]:
    """The ids of a list file's ``text``, one per line (``to_id`` maps a line to its id; blank lines,
    and with ``comments`` lines starting with '#', skipped), in file order; each checked by
    `check_image_id`, an id listed twice a GPSDataError naming the list and both lines."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or (comments and name.startswith("#")):
            continue
        image_id = to_id(name)
        check_image_id(image_id, f"{path}:{lineno}")
        if image_id in first_line:
            raise GPSDataError(f"{path}:{lineno}: id {image_id!r} listed twice "
                               f"(first on line {first_line[image_id]})")
        first_line[image_id] = lineno
        ids.append(image_id)
    return ids


def write_split(root: str | os.PathLike, split: str, ids: Sequence[str]) -> Path:
    path = list_path(root, split)
    for image_id in ids:
        check_image_id(image_id, path)
    make_folder(path.parent, GPSDataError)
    return write_file(path, "".join(f"{i}\n" for i in ids), GPSDataError)


def encode_png(path: Path, label: np.ndarray, error: type[Exception] = GPSDataError) -> bytes:
    """An 8-bit label map as PNG bytes (fast compression); ``error`` naming ``path`` on failure."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(label, dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise error(f"{path}: PNG encoding failed")
    return buf.tobytes()


def write_sample(root: str | os.PathLike, image_id: str, image: np.ndarray,
                 person_labels: Sequence[np.ndarray], jpeg_quality: int = 92) -> None:
    """Write one image and its per-person annotations in the layout."""
    root = Path(root)
    check_image_id(image_id, image_path(root, image_id))
    make_folder(root / IMAGE_DIR, GPSDataError)
    make_folder(root / ANNOTATION_DIR, GPSDataError)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise GPSDataError(f"{image_path(root, image_id)}: JPEG encoding failed")
    write_file(image_path(root, image_id), buf.tobytes(), GPSDataError)
    n = len(person_labels)
    for k, lab in enumerate(person_labels, start=1):
        path = annotation_path(root, image_id, n, k)
        write_file(path, encode_png(path, lab), GPSDataError)


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

    def load(self, image_id: str, verify_decode: bool = True) -> Sample:
        """`load_sample` of a known id (``verify_decode``: `read_image`'s)."""
        if image_id not in self._known:
            raise GPSDataError(f"{list_path(self.root, self.split)}: unknown id {image_id!r}")
        return load_sample(self.root, image_id, self._index, verify_decode)

    def load_nonempty(self, image_id: str, verify_decode: bool = True) -> Sample | None:
        """The sample with empty persons removed; None (with one warning naming the image) when
        no person has any pixel."""
        s = self.load(image_id, verify_decode)
        keep = ~np.isnan(s.person_boxes[:, 0])
        if not keep.any():
            warnings.warn(f"{image_path(self.root, image_id)}: no person with any labelled pixel; "
                          "image skipped", stacklevel=2)
            return None
        if not keep.all():
            s = Sample(s.image_id, s.image, s.person_labels[keep], s.person_boxes[keep],
                       s.face_boxes[keep], s.has_face[keep], s.global_label)
        return s

"""Batch preparation for the GPS data layer, without pycaffe (docs/data.md, docs/interfaces.md).

`make_batch(samples, params, rng)` turns `Sample`s into the data layer's tops as numpy arrays:
random scaling, a random crop when the scaled image exceeds the canvas, a horizontal flip that swaps
the left/right classes, DeepLab's BGR mean subtraction and zero padding to one square canvas.
`BatchPrefetcher` runs it in a background thread.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from gpsnet.classes import FACE, IGNORE_LABEL, flip_lut
from gpsnet.data.layout import GPSDataError, GPSDataset, Sample, image_path, mask_box, verify_image
from gpsnet.geometry import feature_cells, to_net
from gpsnet.nets.config import DEFAULT_CONFIG
from gpsnet.typedconfig import json_object, make

TOP_NAMES: tuple[str, ...] = ("data", "im_info", "label", "label_s8", "gt_persons", "gt_faces", "gt_masks")


@dataclass(frozen=True)
class BatchParams:
    """The data layer's `param_str` (JSON), validated; a key that is a NetConfig field defaults to the
    full setting's value (``DEFAULT_CONFIG``)."""

    root: str
    split: str = "train"
    batch_size: int = DEFAULT_CONFIG.batch_size
    size: int = DEFAULT_CONFIG.size
    scales: tuple[float, float] = DEFAULT_CONFIG.scales
    mirror: bool = True
    mean_bgr: tuple[float, float, float] = DEFAULT_CONFIG.mean_bgr
    shuffle: bool = True
    seed: int = DEFAULT_CONFIG.seed
    prefetch: int = 4
    feat_stride: int = DEFAULT_CONFIG.feat_stride

    @property
    def label_cells(self) -> int:
        """Cells per side of ``label_s8``, the label at the nets' feature stride (8 in the paper's setting, 4
        in the CPU one; the blob keeps the paper's name)."""
        return feature_cells(self.size, self.feat_stride)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BatchParams":
        """From the JSON keys (the field names, values converted by the fields' types:
        ``gpsnet.typedconfig``); a missing key takes the field's default; ``root`` (the data set
        folder) is required."""
        p = make(cls, d, "GPSDataLayer param_str")
        p.validate()
        return p

    @classmethod
    def from_json(cls, text: str) -> "BatchParams":
        return cls.from_dict(json_object(text, "GPSDataLayer param_str"))

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"GPSDataLayer: batch_size must be >= 1, got {self.batch_size}")
        if self.size < 9 or (self.size - 1) % 8:
            raise ValueError(f"GPSDataLayer: size must be 8k + 1 (e.g. 513, 321), got {self.size}")
        if len(self.scales) != 2 or not 0 < self.scales[0] <= self.scales[1]:
            raise ValueError(f"GPSDataLayer: scales must be [lo, hi] with 0 < lo <= hi, got {list(self.scales)}")
        if len(self.mean_bgr) != 3:
            raise ValueError(f"GPSDataLayer: mean_bgr must have 3 values, got {list(self.mean_bgr)}")
        if self.feat_stride not in (1, 2, 4, 8):
            raise ValueError(f"GPSDataLayer: feat_stride must be 1, 2, 4 or 8, got {self.feat_stride}")
        if self.prefetch < 1:
            raise ValueError(f"GPSDataLayer: prefetch must be >= 1, got {self.prefetch}")


@dataclass
class Prepared:
    """One augmented sample, before padding (all at the scaled/cropped size h x w)."""

    image: np.ndarray    # h x w x 3 uint8
    label: np.ndarray    # h x w uint8
    persons: np.ndarray  # G x h x w uint8
    boxes: np.ndarray    # G x 4
    faces: np.ndarray    # F x 4
    scale: float


def _resize_labels(labels: np.ndarray, w: int, h: int) -> np.ndarray:
    out = np.empty((labels.shape[0], h, w), np.uint8)
    for i, lab in enumerate(labels):
        out[i] = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    return out


def fit_scale(height: int, width: int, size: int) -> float:
    """The scale that fits an image's longer side into a ``size`` canvas, never enlarging: the
    data layer's base scale (before its random factor) and inference's only one."""
    return min(1.0, size / max(height, width))


def prepare_sample(sample: Sample, params: BatchParams, rng: np.random.Generator) -> Prepared:
    """Scale (longer side first fitted into the canvas, then times U(scales)), crop to the canvas
    around a random person when larger, flip with probability 0.5 when `mirror`."""
    S = params.size
    H, W = sample.image.shape[:2]
    base = fit_scale(H, W, S)
    lo, hi = params.scales
    scale = base * (float(rng.uniform(lo, hi)) if hi > lo else lo)
    h, w = max(1, int(round(H * scale))), max(1, int(round(W * scale)))
    image = sample.image
    persons = sample.person_labels
    label = sample.global_label
    if (h, w) != (H, W):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        persons = _resize_labels(persons, w, h)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    if h > S or w > S:
        # a crop window that keeps the centre of one random (non-empty) person
        nonempty = [i for i in range(persons.shape[0]) if persons[i].any()]
        if nonempty:
            b = mask_box(persons[int(rng.choice(nonempty))] != 0)
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
        else:
            cx, cy = w // 2, h // 2
        ox = int(rng.integers(max(0, cx - S + 1), min(max(0, w - S), cx) + 1)) if w > S else 0
        oy = int(rng.integers(max(0, cy - S + 1), min(max(0, h - S), cy) + 1)) if h > S else 0
        image = image[oy:oy + S, ox:ox + S]
        persons = persons[:, oy:oy + S, ox:ox + S]
        label = label[oy:oy + S, ox:ox + S]
        h, w = image.shape[:2]
    if params.mirror and rng.random() < 0.5:
        lut = flip_lut()
        image = image[:, ::-1]
        persons = lut[persons[:, :, ::-1]]
        label = lut[label[:, ::-1]]
    boxes, faces, keep = [], [], []
    for i in range(persons.shape[0]):
        b = mask_box(persons[i] != 0)
        if np.isnan(b[0]):
            continue
        keep.append(i)
        boxes.append(b)
        f = mask_box(persons[i] == FACE)
        if not np.isnan(f[0]):
            faces.append(f)
    return Prepared(image=np.ascontiguousarray(image), label=np.ascontiguousarray(label),
                    persons=np.ascontiguousarray(persons[keep]),
                    boxes=np.array(boxes, np.float32).reshape(-1, 4),
                    faces=np.array(faces, np.float32).reshape(-1, 4), scale=scale)


def make_batch(samples: Sequence[Sample], params: BatchParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The data layer's tops (docs/interfaces.md) for `samples`, as float32 arrays."""
    S = params.size
    B = len(samples)
    prepared = [prepare_sample(s, params, rng) for s in samples]
    G = sum(p.persons.shape[0] for p in prepared)
    F = sum(p.faces.shape[0] for p in prepared)
    data = np.zeros((B, 3, S, S), np.float32)
    im_info = np.zeros((B, 3), np.float32)
    label = np.full((B, 1, S, S), IGNORE_LABEL, np.float32)
    gt_persons = np.zeros((G, 5), np.float32)
    gt_faces = np.zeros((F, 5), np.float32)
    gt_masks = np.full((G, 1, S, S), IGNORE_LABEL, np.float32)
    mean = np.asarray(params.mean_bgr, np.float32)
    g = f = 0
    for b, p in enumerate(prepared):
        h, w = p.image.shape[:2]
        data[b, :, :h, :w] = (p.image.astype(np.float32) - mean).transpose(2, 0, 1)
        im_info[b] = (h, w, p.scale)
        label[b, 0, :h, :w] = p.label
        n = p.persons.shape[0]
        gt_persons[g:g + n, 0] = b
        gt_persons[g:g + n, 1:] = to_net(p.boxes)
        gt_masks[g:g + n, 0, :h, :w] = p.persons
        g += n
        m = p.faces.shape[0]
        gt_faces[f:f + m, 0] = b
        gt_faces[f:f + m, 1:] = to_net(p.faces)
        f += m
    return {"data": data, "im_info": im_info, "label": label,
            "label_s8": np.ascontiguousarray(label[:, :, ::params.feat_stride, ::params.feat_stride]),
            "gt_persons": gt_persons, "gt_faces": gt_faces, "gt_masks": gt_masks}


@dataclass(frozen=True)
class Shard:
    """Which share of the data a rank of a several-GPU run reads (``gpsnet train --gpus``,
    ``gpsnet.training.ranks``): of every epoch's order, the places ``rank``, ``rank + count``, ...
    The ranks draw the same order (one seed), so their shares are disjoint and together are the
    single-process stream. ``Shard()`` is the whole stream."""

    rank: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.rank < self.count:
            raise ValueError(f"a data shard is rank r of count n with 0 <= r < n, got rank {self.rank} of {self.count}")

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.count}"


class SampleStream:
    """An endless stream of non-empty samples of a split, shuffled per epoch when `shuffle`;
    ``shard``: one rank's share of each epoch (``Shard``); ``verify_decode``: `read_image`'s.
    Images without any person are skipped with one warning naming them."""

    def __init__(self, dataset: GPSDataset, shuffle: bool, seed: int, shard: Shard = Shard(),
                 verify_decode: bool = True) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.shard = shard
        self.verify_decode = verify_decode
        self.rng = np.random.default_rng([seed, 1])
        self.skipped: set[str] = set()

    def __iter__(self) -> Iterator[Sample]:
        while True:
            n = len(self.dataset)
            order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            produced = 0
            for i in order[self.shard.rank::self.shard.count]:
                image_id = self.dataset.ids[int(i)]
                if image_id in self.skipped:
                    continue
                s = self.dataset.load_nonempty(image_id, self.verify_decode)  # warns once: skipped afterwards
                if s is None:
                    self.skipped.add(image_id)
                    continue
                produced += 1
                yield s
            if produced == 0:
                share = f" in the share of {self.shard} ({n} images)" if self.shard.count > 1 else ""
                raise ValueError(f"{self.dataset.root}: split {self.dataset.split!r} has no image with a person{share}")


class BatchPrefetcher:
    """Prepares batches in a background thread, `params.prefetch` ahead of the consumer; ``shard``:
    one rank's share of the data (its augmentation draws its own numbers).

    The background thread reads images with ``verify_decode=False``: the check of libjpeg's
    messages catches the process's stderr, which Caffe writes to from the consumer's thread
    (`gpsnet.data.layout._imdecode_with_messages`). `next`, in the consumer's thread, checks each
    image of the batch it hands out with `verify_image` the first time it is used, so a corrupt
    JPEG still stops the run with an error naming it (after libjpeg's own warning line)."""

    def __init__(self, params: BatchParams, dataset: GPSDataset | None = None, shard: Shard = Shard()) -> None:
        self.params = params
        self.shard = shard
        self.dataset = dataset if dataset is not None else GPSDataset(params.root, params.split)
        self._verified: set[str] = set()
        self._failed: BaseException | None = None   # what the thread or a check raised: raised again
        self._queue: queue.Queue[tuple[dict[str, np.ndarray], list[str]] | BaseException] = \
            queue.Queue(maxsize=params.prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng([self.params.seed, 2] + ([self.shard.rank] if self.shard.rank else []))
        try:
            stream = iter(SampleStream(self.dataset, self.params.shuffle, self.params.seed, self.shard,
                                       verify_decode=False))
            while not self._stop.is_set():
                samples = [next(stream) for _ in range(self.params.batch_size)]
                batch = (make_batch(samples, self.params, rng), [s.image_id for s in samples])
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the consumer
            self._queue.put(err)

    def next(self) -> dict[str, np.ndarray]:
        if self._failed is not None:
            raise self._failed  # keep failing on later calls
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._failed = item
            raise item
        batch, image_ids = item
        for image_id in image_ids:
            if image_id not in self._verified:
                try:
                    verify_image(image_path(self.dataset.root, image_id))
                except GPSDataError as err:
                    self._failed = err
                    raise
                self._verified.add(image_id)
        return batch

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)

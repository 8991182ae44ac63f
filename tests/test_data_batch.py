"""make_batch (the data layer's augmentation and tops, without pycaffe) and the prefetcher."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet.classes import CLASS_ID
from gpsnet.data.batch import TOP_NAMES, BatchParams, BatchPrefetcher, make_batch
from gpsnet.data.layout import GPSDataset, annotation_path, load_sample, mask_box, write_sample, write_split
from gpsnet.data.synthetic import generate_dataset
from gpsnet.geometry import from_net
from gpsnet.nets.config import DEEPLAB_MEAN_BGR

C = CLASS_ID
S = 65  # 8 * 8 + 1



def boxes_in_image(rows: np.ndarray) -> np.ndarray:
    """Data-layer box rows (batch, net coordinates) with the boxes in image coordinates."""
    out = np.array(rows, np.float64)
    out[:, 1:] = from_net(out[:, 1:])
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 6, 64, seed=1, scene="mixed", ratios=(1, 0, 0))
    return root


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    """One 40 x 60 image: person 1 with face and left-arm (image left), person 2 without face."""
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    a = np.zeros((40, 60), np.uint8)
    a[5:35, 5:20] = C["upper-clothes"]
    a[5:10, 8:14] = C["face"]
    a[20:30, 2:5] = C["left-arm"]
    b = np.zeros((40, 60), np.uint8)
    b[10:40, 30:55] = C["right-leg"]
    write_sample(tmp_path, "t", img, [a, b])
    write_split(tmp_path, "train", ["t"])
    return tmp_path


def _params(root: Path, **kw: object) -> BatchParams:
    return BatchParams.from_dict({"root": str(root), "size": S, **kw})


def test_shapes_and_consistency(synth: Path) -> None:
    ds = GPSDataset(synth, "train")
    p = _params(synth, scales=[0.8, 1.6])
    rng = np.random.default_rng(0)
    for i in range(0, 6, 2):
        samples = [ds[i], ds[i + 1]]
        b = make_batch(samples, p, rng)
        assert list(b) == list(TOP_NAMES)
        G, F = b["gt_persons"].shape[0], b["gt_faces"].shape[0]
        assert b["data"].shape == (2, 3, S, S) and b["im_info"].shape == (2, 3)
        assert b["label"].shape == (2, 1, S, S) and b["label_s8"].shape == (2, 1, 9, 9)
        assert b["gt_persons"].shape == (G, 5) and b["gt_faces"].shape == (F, 5)
        assert b["gt_masks"].shape == (G, 1, S, S)
        assert all(v.dtype == np.float32 for v in b.values())
        np.testing.assert_array_equal(b["label_s8"], b["label"][:, :, ::8, ::8])
        assert G >= 2 and F <= G
        for bi in range(2):
            h, w, scale = b["im_info"][bi]
            assert 1 <= h <= S and 1 <= w <= S and 0.8 * 64 / 64 - 1e-6 <= scale <= 1.6 + 1e-6
            assert (b["label"][bi, 0, int(h):] == 255).all() and (b["label"][bi, 0, :, int(w):] == 255).all()
            assert (b["data"][bi, :, int(h):] == 0).all() and (b["data"][bi, :, :, int(w):] == 0).all()
        for g in range(G):
            bi = int(b["gt_persons"][g, 0])
            h, w = b["im_info"][bi, :2].astype(int)
            m = b["gt_masks"][g, 0]
            assert (m[h:] == 255).all() and (m[:, w:] == 255).all()
            np.testing.assert_array_equal(from_net(b["gt_persons"][g, 1:]), mask_box(m[:h, :w] != 0))
        for f in b["gt_faces"]:
            assert f[3] > f[1] and f[4] > f[2]


def test_mean_padding_and_no_augmentation(tiny: Path) -> None:
    s = load_sample(tiny, "t")
    p = _params(tiny, scales=[1, 1], mirror=False)
    b = make_batch([s, s], p, np.random.default_rng(0))
    np.testing.assert_array_equal(b["im_info"], [[40, 60, 1], [40, 60, 1]])
    restored = b["data"][0, :, :40, :60].transpose(1, 2, 0) + np.array(DEEPLAB_MEAN_BGR, np.float32)
    np.testing.assert_allclose(restored, s.image, atol=1e-3)
    assert (b["data"][0, :, 40:] == 0).all() and (b["data"][0, :, :, 60:] == 0).all()
    np.testing.assert_array_equal(b["label"][0, 0, :40, :60], s.global_label)
    np.testing.assert_array_equal(boxes_in_image(b["gt_persons"]), [[0, 2, 5, 20, 35], [0, 30, 10, 55, 40],
                                                    [1, 2, 5, 20, 35], [1, 30, 10, 55, 40]])
    np.testing.assert_array_equal(boxes_in_image(b["gt_faces"]), [[0, 8, 5, 14, 10], [1, 8, 5, 14, 10]])
    np.testing.assert_array_equal(b["gt_masks"][1, 0, :40, :60], s.person_labels[1])


def test_flip_swaps_left_right(tiny: Path) -> None:
    s = load_sample(tiny, "t")
    p = _params(tiny, scales=[1, 1], mirror=True)
    flipped = plain = 0
    for seed in range(12):
        b = make_batch([s], p, np.random.default_rng(seed))
        lab = b["label"][0, 0, :40, :60]
        if lab[25, 3] == C["left-arm"]:
            plain += 1
            np.testing.assert_array_equal(from_net(b["gt_persons"][:, 1:]), [[2, 5, 20, 35], [30, 10, 55, 40]])
        else:
            flipped += 1
            assert lab[25, 59 - 3] == C["right-arm"] and lab[25, 59 - 40] == C["left-leg"]
            assert not (lab == C["left-arm"]).any() and not (lab == C["right-leg"]).any()
            np.testing.assert_array_equal(from_net(b["gt_persons"][:, 1:]), [[40, 5, 58, 35], [5, 10, 30, 40]])  # MM order kept
            np.testing.assert_array_equal(from_net(b["gt_faces"][0, 1:]), [60 - 14, 5, 60 - 8, 10])
            img = b["data"][0, :, :40, :60].transpose(1, 2, 0) + np.array(DEEPLAB_MEAN_BGR, np.float32)
            np.testing.assert_allclose(img, s.image[:, ::-1], atol=1e-3)
    assert flipped > 0 and plain > 0


def test_scaling_and_crop(tiny: Path) -> None:
    s = load_sample(tiny, "t")
    p = _params(tiny, scales=[2, 2], mirror=False)  # 80 x 120 > 65: cropped around a person
    for seed in range(5):
        b = make_batch([s], p, np.random.default_rng(seed))
        np.testing.assert_array_equal(b["im_info"][0], [65, 65, 2])
        assert 1 <= b["gt_persons"].shape[0] <= 2
        assert (from_net(b["gt_persons"][:, 1:]) >= 0).all() and (from_net(b["gt_persons"][:, 1:]) <= S).all()
    # a large image is first fitted into the canvas
    big = cv2.resize(s.image, (600, 400))
    write_sample(tiny, "big", big, [cv2.resize(lab, (600, 400), interpolation=cv2.INTER_NEAREST)
                                    for lab in s.person_labels])
    b = make_batch([load_sample(tiny, "big")], _params(tiny, scales=[1, 1], mirror=False), np.random.default_rng(0))
    np.testing.assert_allclose(b["im_info"][0], [43, 65, 65 / 600], rtol=1e-6)


def test_no_faces_gives_empty_top(tiny: Path) -> None:
    lab = np.zeros((40, 60), np.uint8)
    lab[1:30, 1:30] = C["hair"]
    cv2.imwrite(str(annotation_path(tiny, "t", 2, 1)), lab)
    b = make_batch([load_sample(tiny, "t")], _params(tiny, scales=[1, 1]), np.random.default_rng(0))
    assert b["gt_faces"].shape == (0, 5) and b["gt_persons"].shape == (2, 5)


def test_param_validation(tiny: Path) -> None:
    with pytest.raises(ValueError, match="8k \\+ 1"):
        _params(tiny, size=64)
    with pytest.raises(ValueError, match="unknown keys \\['sise'\\]"):
        BatchParams.from_dict({"root": "x", "sise": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        BatchParams.from_json("{root: 1}")
    with pytest.raises(ValueError, match="'root'"):
        BatchParams.from_json("{}")
    with pytest.raises(ValueError, match="scales"):
        _params(tiny, scales=[1.5, 0.5])
    p = BatchParams.from_json('{"root": "r", "size": 513}')
    assert p.label_cells == 65 and p.batch_size == 2 and p.scales == (0.5, 1.5) and p.mirror


def test_prefetcher_never_points_stderr_elsewhere_from_its_thread(synth: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Caffe logs from the consumer's thread while the background thread decodes: that thread must
    not move file descriptor 2 (the lines of that time went to a memory file, and were lost when the
    process ended first). The consumer checks each image once, moving it only in its own thread."""
    moves: list[str] = []
    dup2 = os.dup2

    def spy(fd: int, fd2: int, inheritable: bool = True) -> int:
        if fd2 == 2:
            moves.append(threading.current_thread().name)
        return dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", spy)
    pf = BatchPrefetcher(_params(synth))
    try:
        for _ in range(4):
            pf.next()
        time.sleep(0.2)   # the thread works ahead meanwhile
    finally:
        pf.close()
    consumer = threading.current_thread().name
    assert moves and set(moves) == {consumer}, f"fd 2 moved by threads {sorted(set(moves))}"


def test_prefetcher_skips_empty_images(synth: Path, tmp_path: Path) -> None:
    pf = BatchPrefetcher(_params(synth))
    try:
        for _ in range(4):
            b = pf.next()
            assert b["data"].shape == (2, 3, S, S) and b["gt_persons"].shape[0] >= 2
    finally:
        pf.close()
    # an image whose persons are all empty is skipped with one warning naming it
    img = np.zeros((30, 30, 3), np.uint8)
    write_sample(tmp_path, "empty", img, [np.zeros((30, 30), np.uint8)])
    lab = np.zeros((30, 30), np.uint8)
    lab[3:9, 3:9] = C["pants"]
    write_sample(tmp_path, "ok", img, [lab])
    write_split(tmp_path, "train", ["empty", "ok"])
    with pytest.warns(UserWarning, match="empty.jpg"):
        pf = BatchPrefetcher(BatchParams.from_dict({"root": str(tmp_path), "size": 33, "batch_size": 3}))
        try:
            b = pf.next()
        finally:
            pf.close()
    assert b["gt_persons"].shape == (3, 5)

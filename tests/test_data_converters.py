"""MHP v1 / MHP v2 / CIHP converters on small files written in each data set's own format."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet.classes import CLASS_ID
from gpsnet.data import converters
from gpsnet.data.layout import GPSDataError, GPSDataset, load_sample, read_split

C = CLASS_ID
H, W = 20, 30


def _img(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)


def _write_jpg(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _write_png(path: Path, lab: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), lab)


def _mhp_person(values: list[int], x0: int, x1: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    rows = np.array_split(np.arange(H), len(values))
    for v, r in zip(values, rows):
        lab[r[0]:r[-1] + 1, x0:x1] = v
    return lab


def test_mhp1(tmp_path: Path) -> None:
    src, out = tmp_path / "mhp1", tmp_path / "out"
    for k in range(1, 6):
        _write_jpg(src / "images" / f"{k}.jpg", _img(k))
        a = _mhp_person([11, 18, 14, 15, 9], 2, 12)        # face, torso-skin, arms, left-shoe
        b = _mhp_person([2, 4, 6, 10], 14, 28)
        _write_png(src / "annotations" / f"{k}_02_01.png", a)
        # MHP v1 stores some annotations as 3-channel PNGs with equal channels
        _write_png(src / "annotations" / f"{k}_02_02.png", np.repeat(b[..., None], 3, axis=2))
    (src / "train_list.txt").write_text("".join(f"{k}.jpg\n" for k in range(1, 5)))
    (src / "test_list.txt").write_text("5.jpg\n")
    assert converters.main(["--from", "mhp1", str(src), str(out)]) == 0
    assert len(read_split(out, "train")) == 3 and len(read_split(out, "val")) == 1
    assert read_split(out, "test") == ["5"]
    s = load_sample(out, "5")
    assert s.num_persons == 2
    assert set(np.unique(s.person_labels[0]).tolist()) == {0, C["face"], 255, C["left-arm"], C["right-arm"],
                                                           C["left-shoe"]}
    assert set(np.unique(s.person_labels[1]).tolist()) == {0, C["hair"], C["upper-clothes"], C["pants"],
                                                           C["right-shoe"]}
    assert (out / "images" / "5.jpg").read_bytes() == (src / "images" / "5.jpg").read_bytes()
    assert s.has_face.tolist() == [True, False]


def test_mhp1_bad_label_names_file(tmp_path: Path) -> None:
    src = tmp_path / "mhp1"
    _write_jpg(src / "images" / "1.jpg", _img(1))
    _write_png(src / "annotations" / "1_01_01.png", _mhp_person([19], 0, 5))
    with pytest.raises(GPSDataError, match=r"1_01_01\.png.*\[19\]"):
        converters.convert("mhp1", src, tmp_path / "out")
    _write_png(src / "annotations" / "1_01_01.png", np.zeros((H + 2, W), np.uint8))
    # the failed conversion left images/ behind: replacing it needs overwrite
    with pytest.raises(GPSDataError, match=r"1_01_01\.png.*differs"):
        converters.convert("mhp1", src, tmp_path / "out", overwrite=True)
    (src / "annotations" / "1_01_01.png").unlink()
    with pytest.raises(GPSDataError, match="missing annotation"):
        converters.convert("mhp1", src, tmp_path / "out", overwrite=True)


def test_mhp2(tmp_path: Path) -> None:
    src, out = tmp_path / "mhp2", tmp_path / "out"
    ids = [f"{k}" for k in range(1, 4)]
    for k, image_id in enumerate(ids):
        _write_jpg(src / "images" / f"{image_id}.jpg", _img(k))
        # face, left-hand, t-shirt, torso-skin, shorts, right-sandal, ball, tie, watch
        a = _mhp_person([3, 7, 12, 16, 18, 29, 41, 55, 53], 1, 10)
        b = _mhp_person([2, 47, 35, 40, 22], 12, 29)
        _write_png(src / "parsing_annos" / f"{image_id}_02_01.png", a)
        _write_png(src / "parsing_annos" / f"{image_id}_02_02.png", b)
    (src / "list").mkdir()
    (src / "list" / "train.txt").write_text("1\n2\n")
    (src / "list" / "val.txt").write_text("3\n")
    assert converters.main(["--from", "mhp2", str(src), str(out)]) == 0
    assert read_split(out, "train") == ["1", "2"] and read_split(out, "val") == ["3"]
    s = GPSDataset(out, "val")[0]
    assert set(np.unique(s.person_labels[0]).tolist()) == {0, C["face"], C["left-arm"], C["upper-clothes"],
                                                           255, C["pants"], C["right-shoe"], C["tie"]}
    assert set(np.unique(s.person_labels[1]).tolist()) == {0, C["hat"], C["sunglasses"], C["dress"], C["bag"],
                                                           C["left-shoe"]}
    assert len(converters.MHP2_MAP) == 59 and all(0 <= v <= 19 or v == 255 for v in converters.MHP2_MAP.values())


def test_cihp(tmp_path: Path) -> None:
    src, out = tmp_path / "cihp", tmp_path / "out"
    for k, image_id in enumerate(["0001", "0002", "0003", "0004", "0005"]):
        _write_jpg(src / "Images" / f"{image_id}.jpg", _img(k))
        cat = np.zeros((H, W), np.uint8)
        hum = np.zeros((H, W), np.uint8)
        cat[0:5, 20:28] = 13       # face of human 1 (right)
        cat[5:20, 20:28] = 7       # coat
        hum[:, 20:28] = 1
        cat[0:10, 2:10] = 2        # hair of human 2 (left)
        cat[10:20, 2:10] = 3       # glove
        hum[:, 2:10] = 2
        cat[19, 12] = 16           # one left-leg pixel of human 3 (middle)
        hum[19, 12] = 3
        _write_png(src / "Category_ids" / f"{image_id}.png", cat)
        _write_png(src / "Human_ids" / f"{image_id}.png", hum)
    assert converters.main(["--from", "cihp", str(src), str(out), "--split", "3:1:1"]) == 0
    sizes = [len(read_split(out, s)) for s in ("train", "val", "test")]
    assert sizes == [3, 1, 1]
    s = load_sample(out, "0003")
    assert s.num_persons == 3  # left to right: human 2, human 3, human 1
    assert set(np.unique(s.person_labels[0]).tolist()) == {0, C["hair"], 255}
    assert set(np.unique(s.person_labels[1]).tolist()) == {0, C["left-leg"]}
    assert set(np.unique(s.person_labels[2]).tolist()) == {0, C["face"], C["upper-clothes"]}
    assert s.has_face.tolist() == [False, False, True]
    np.testing.assert_array_equal(s.person_boxes[2], [20, 0, 28, 20])


def test_cihp_errors(tmp_path: Path) -> None:
    src = tmp_path / "cihp"
    _write_jpg(src / "Images" / "a.jpg", _img(0))
    _write_png(src / "Category_ids" / "a.png", np.zeros((H, W), np.uint8))
    with pytest.raises(GPSDataError, match="Human_ids"):
        converters.convert("cihp", src, tmp_path / "o")
    _write_png(src / "Instance_ids" / "a.png", np.zeros((H, W), np.uint8))  # fallback folder
    with pytest.raises(GPSDataError, match=r"a\.png: no person"):
        converters.convert("cihp", src, tmp_path / "o")
    assert converters.main(["--from", "cihp", str(tmp_path / "none"), str(tmp_path / "o")]) == 1

"""Reading the GPS layout and every validation error (gpsnet.data.layout)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet.classes import CLASS_ID
from gpsnet.data.layout import (GPSDataError, GPSDataset, annotation_path, global_label, image_path,
                                list_path, load_sample, read_split, write_sample, write_split)

H, W = 24, 32


def _persons() -> list[np.ndarray]:
    a = np.zeros((H, W), np.uint8)
    a[2:20, 3:10] = CLASS_ID["upper-clothes"]
    a[2:5, 4:8] = CLASS_ID["face"]
    b = np.zeros((H, W), np.uint8)
    b[5:22, 8:30] = CLASS_ID["pants"]   # overlaps person a at columns 8..9
    b[21, 29] = 255
    return [a, b]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    write_sample(tmp_path, "im1", img, _persons())
    write_split(tmp_path, "train", ["im1"])
    return tmp_path


def test_load_sample(root: Path) -> None:
    s = load_sample(root, "im1")
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    assert s.person_labels.shape == (2, H, W)
    np.testing.assert_array_equal(s.person_labels, np.stack(_persons()))
    np.testing.assert_array_equal(s.person_boxes, [[3, 2, 10, 20], [8, 5, 30, 22]])
    assert s.has_face.tolist() == [True, False]
    np.testing.assert_array_equal(s.face_boxes[0], [4, 2, 8, 5])
    assert np.isnan(s.face_boxes[1]).all()
    # overlap rule: the lower MM (first person) wins
    assert s.global_label[10, 8] == CLASS_ID["upper-clothes"]
    assert s.global_label[10, 12] == CLASS_ID["pants"]
    assert s.global_label[21, 29] == 255 and s.global_label[0, 0] == 0
    ds = GPSDataset(root, "train")
    assert len(ds) == 1 and ds[0].image_id == "im1" and ds.load("im1").num_persons == 2


def test_global_label_rule() -> None:
    a = np.zeros((2, 2), np.uint8)
    a[0, 0] = 5
    b = np.full((2, 2), 6, np.uint8)
    np.testing.assert_array_equal(global_label(np.stack([a, b])), [[5, 6], [6, 6]])


def _expect(match: str, fn, *args) -> GPSDataError:  # type: ignore[no-untyped-def]
    with pytest.raises(GPSDataError, match=match) as info:
        fn(*args)
    assert isinstance(info.value, ValueError)
    return info.value


def test_missing_image(root: Path) -> None:
    image_path(root, "im1").unlink()
    err = _expect("missing image", load_sample, root, "im1")
    assert "im1.jpg" in str(err)


def test_missing_annotation(root: Path) -> None:
    annotation_path(root, "im1", 2, 2).unlink()
    err = _expect("NN = 2", load_sample, root, "im1")
    assert "im1_02_02.png" in str(err)
    err = _expect("NN = 2", GPSDataset(root, "train").__getitem__, 0)  # through the folder index
    assert "im1_02_02.png" in str(err)
    annotation_path(root, "im1", 2, 1).unlink()
    _expect("missing annotation", load_sample, root, "im1")


def test_count_differs_from_nn(root: Path) -> None:
    extra = annotation_path(root, "im1", 2, 3)
    extra.write_bytes(annotation_path(root, "im1", 2, 1).read_bytes())
    err = _expect("NN = 2", load_sample, root, "im1")
    assert "im1_02_03.png" in str(err)
    extra.unlink()
    annotation_path(root, "im1", 3, 3).write_bytes(annotation_path(root, "im1", 2, 1).read_bytes())
    _expect("disagree on the person count", load_sample, root, "im1")


def test_annotation_size_differs(root: Path) -> None:
    cv2.imwrite(str(annotation_path(root, "im1", 2, 2)), np.zeros((H + 1, W), np.uint8))
    err = _expect("differs from its image", load_sample, root, "im1")
    assert "im1_02_02.png" in str(err)


def test_label_out_of_range(root: Path) -> None:
    lab = _persons()[0]
    lab[0, 0] = 20
    cv2.imwrite(str(annotation_path(root, "im1", 2, 1)), lab)
    err = _expect("labels outside", load_sample, root, "im1")
    assert "im1_02_01.png" in str(err) and "20" in str(err)


def test_corrupt_image(root: Path) -> None:
    image_path(root, "im1").write_bytes(b"\xff\xd8 this is not a jpeg \xff\xd9")
    _expect("corrupt", load_sample, root, "im1")
    image_path(root, "im1").write_bytes(b"GIF89a garbage")
    _expect("not a JPEG", load_sample, root, "im1")


def test_truncated_image(root: Path) -> None:
    p = image_path(root, "im1")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    err = _expect("truncated JPEG", load_sample, root, "im1")
    assert "im1.jpg" in str(err)


def test_truncated_annotation(root: Path) -> None:
    p = annotation_path(root, "im1", 2, 1)
    data = p.read_bytes()
    p.write_bytes(data[:-20])
    _expect("truncated PNG", load_sample, root, "im1")


def test_split_lists(root: Path) -> None:
    _expect("missing split list", read_split, root, "val")
    list_path(root, "test").write_text("\n\n")
    err = _expect("empty split list", GPSDataset, root, "test")
    assert "test.txt" in str(err)
    write_split(root, "val", ["im1", "nope"])
    err = _expect("unknown id 'nope'", GPSDataset, root, "val")
    assert "val.txt" in str(err)
    ds = GPSDataset(root, "train")
    _expect("unknown id 'other'", ds.load, "other")
    _expect("unknown split", GPSDataset, root, "training")


def test_empty_person_skipped_with_warning(root: Path) -> None:
    for k in (1, 2):
        cv2.imwrite(str(annotation_path(root, "im1", 2, k)), np.zeros((H, W), np.uint8))
    with pytest.warns(UserWarning, match="im1.jpg.*skipped"):
        assert GPSDataset(root, "train").load_nonempty("im1") is None

"""Bad input to the data readers and writers (issue 12, defects 9, 10, 13, 14, 15, 16, 17, 18):
each test feeds the bad file or argument and asserts the clear error or the documented behaviour
(docs/data.md, "Bad input")."""
from __future__ import annotations

import errno
import io
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gpsnet.classes import CLASS_ID
from gpsnet.data import converters, synthetic
from gpsnet.data.batch import BatchParams, BatchPrefetcher
from gpsnet.data.layout import (GPSDataError, GPSDataset, annotation_path, check_image_id, image_id_of_file,
                                image_path, list_path, load_sample, read_image, read_label, read_split,
                                write_sample, write_split)
from gpsnet.eval.predictions import PredictionsError, PredictionsFolder, PredictionWriter, person_path

H, W = 24, 40
BLOCK = (slice(0, 12), slice(0, 20))        # the bright top-left block of the test image
LABEL = CLASS_ID["upper-clothes"]


def _image() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[BLOCK] = 255
    return img


def _person() -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[BLOCK] = LABEL
    return lab


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment (big-endian TIFF, one IFD entry 0x0112 = orientation)."""
    entry = (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    entry += orientation.to_bytes(2, "big") + b"\0\0"
    tiff = b"MM\x00\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big") + entry + (0).to_bytes(4, "big")
    return jpeg[:2] + _segment(0xE1, b"Exif\0\0" + tiff) + jpeg[2:]


def _scan_range(jpeg: bytes) -> tuple[int, int]:
    """(first byte of the entropy-coded data, position of EOI) of a baseline JPEG."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big"), jpeg.rindex(b"\xff\xd9")


def _zeroed_scan_jpeg() -> bytes:
    """A JPEG whose entropy-coded data is all zero bytes: well formed, but libjpeg reports it corrupt."""
    data = bytearray(_jpeg(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)))
    start, end = _scan_range(bytes(data))
    data[start:end] = bytes(end - start)
    return bytes(data)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_sample(tmp_path, "im1", _image(), [_person()])
    write_split(tmp_path, "train", ["im1"])
    return tmp_path


# ----------------------------------------------------------------------------- (9) EXIF orientation

@pytest.mark.parametrize("orientation", [3, 6])
def test_exif_orientation_is_ignored_so_image_and_annotation_agree(root: Path, orientation: int) -> None:
    data = _with_exif_orientation(_jpeg(_image()), orientation)
    rotated = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert not np.array_equal(rotated, cv2.imdecode(np.frombuffer(_jpeg(_image()), np.uint8), cv2.IMREAD_COLOR)), \
        "the test file must carry an orientation that OpenCV applies by default"
    image_path(root, "im1").write_bytes(data)
    img = read_image(image_path(root, "im1"))
    assert img.shape == (H, W, 3)                                   # stored size, not rotated
    assert img[BLOCK].min() > 200 and img[12:, 20:].max() < 50      # stored pixels
    s = load_sample(root, "im1")                                    # no size mismatch for 6
    bright = s.image.min(axis=2) > 128
    assert (bright == (s.person_labels[0] == LABEL)).mean() > 0.98  # aligned, not 180 degrees off


# ----------------------------------------------------------------------------- (13) bytes after EOI

@pytest.mark.parametrize("trailing", [65, 1000])
def test_bytes_after_the_jpeg_end_marker_are_accepted(root: Path, trailing: int) -> None:
    p = image_path(root, "im1")
    p.write_bytes(p.read_bytes() + b"\x00" * trailing)
    assert load_sample(root, "im1").image.shape == (H, W, 3)


def test_truncated_jpeg_is_still_rejected_even_with_an_end_marker_in_a_thumbnail(root: Path) -> None:
    p = image_path(root, "im1")
    data = p.read_bytes()
    start, _ = _scan_range(data)
    # an APP1 segment whose payload holds an EOI marker (as an Exif thumbnail does), and the
    # main scan cut in the middle
    cut = data[:2] + _segment(0xE1, b"Exif\0\0thumb\xff\xd8\xff\xd9") + data[2:(start + len(data)) // 2]
    p.write_bytes(cut)
    with pytest.raises(GPSDataError, match=r"im1\.jpg: truncated JPEG"):
        load_sample(root, "im1")
    p.write_bytes(data[:40])
    with pytest.raises(GPSDataError, match=r"im1\.jpg: truncated JPEG"):
        load_sample(root, "im1")


# ----------------------------------------------------------------------------- (14) corrupt data

def test_jpeg_with_zeroed_scan_data_is_an_error_without_libjpeg_noise(root: Path,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    p = image_path(root, "im1")
    data = _zeroed_scan_jpeg()
    p.write_bytes(data)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV accepts it
    capfd.readouterr()
    with pytest.raises(GPSDataError, match=r"im1\.jpg: corrupt JPEG data \(libjpeg: Corrupt JPEG data"):
        read_image(p)
    assert "Corrupt JPEG data" not in capfd.readouterr().err   # reported once, as the error
    with pytest.raises(GPSDataError, match="corrupt JPEG data"):
        GPSDataset(root, "train")[0]


def test_prefetcher_names_a_corrupt_jpeg_from_the_consumers_thread(root: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """The background thread leaves libjpeg's check to `next` (the stderr it catches is the
    process's); the run still stops with the error naming the file, on this and later calls."""
    write_sample(root, "im2", _image(), [_person()])
    write_split(root, "train", ["im2", "im1"])
    image_path(root, "im1").write_bytes(_zeroed_scan_jpeg())
    pf = BatchPrefetcher(BatchParams.from_dict({"root": str(root), "size": 33, "batch_size": 1, "shuffle": False}))
    try:
        assert pf.next()["data"].shape == (1, 3, 33, 33)          # im2
        time.sleep(0.3)   # the thread fills its queue meanwhile (the error must not wait for room there)
        for _ in range(2):
            with pytest.raises(GPSDataError, match=r"im1\.jpg: corrupt JPEG data \(libjpeg: Corrupt JPEG data"):
                pf.next()
    finally:
        pf.close()
    assert "Corrupt JPEG data" in capfd.readouterr().err   # libjpeg's own line, from the background decode


def test_a_check_never_takes_another_threads_libjpeg_warning_as_its_own(root: Path) -> None:
    """A background decode without the check (``verify_decode=False``) of a corrupt JPEG, while the
    foreground checks a good one: the good one passes (the two hold one lock)."""
    write_sample(root, "im2", _image(), [_person()])
    image_path(root, "im1").write_bytes(_zeroed_scan_jpeg())
    stop = threading.Event()

    def decode_corrupt() -> None:
        while not stop.is_set():
            read_image(image_path(root, "im1"), verify_decode=False)

    worker = threading.Thread(target=decode_corrupt)
    worker.start()
    try:
        for _ in range(300):
            read_image(image_path(root, "im2"))
    finally:
        stop.set()
        worker.join()


def test_jpeg_bytes_named_png_are_rejected(root: Path, tmp_path: Path) -> None:
    ann = annotation_path(root, "im1", 1, 1)
    ann.write_bytes(_jpeg(np.dstack([_person()] * 3)))
    with pytest.raises(GPSDataError, match=r"im1_01_01\.png: not a PNG file"):
        load_sample(root, "im1")
    with PredictionWriter(tmp_path / "p") as w:
        w.add("im1", [1.0], [_person()])
    person_path(tmp_path / "p", "im1", 1).write_bytes(_jpeg(np.dstack([_person()] * 3)))
    with pytest.raises(PredictionsError, match=r"im1_01\.png: not a PNG file"):
        PredictionsFolder(tmp_path / "p").load("im1", (H, W))


# ----------------------------------------------------------------------------- (18) bit depth, palette

def _png(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_one_bit_png_annotation_is_refused(root: Path) -> None:
    ann = annotation_path(root, "im1", 1, 1)
    ann.write_bytes(_png(Image.fromarray(_person() > 0)))          # mode "1": a 1-bit grey PNG
    assert ann.read_bytes()[24] == 1
    with pytest.raises(GPSDataError, match=r"im1_01_01\.png: annotation is a 1-bit PNG"):
        load_sample(root, "im1")


@pytest.mark.parametrize("bits", [8, 4])
def test_palette_png_annotation_gives_its_indices(root: Path, bits: int) -> None:
    im = Image.fromarray(_person(), mode="P")
    im.putpalette([v for i in range(256) for v in ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)])
    ann = annotation_path(root, "im1", 1, 1)
    ann.write_bytes(_png(im, bits=bits))
    assert ann.read_bytes()[24] == bits and ann.read_bytes()[25] == 3
    np.testing.assert_array_equal(read_label(ann), _person())
    assert load_sample(root, "im1").person_labels[0].max() == LABEL


# ----------------------------------------------------------------------------- (15, 17) ids

@pytest.mark.parametrize("bad", ["a b", "a\tb", "#a", "a/b", "a\\b", "a\x01"])
def test_one_id_rule(bad: str) -> None:
    with pytest.raises(GPSDataError, match="bad image id"):
        check_image_id(bad, "here")
    with pytest.raises(PredictionsError, match="bad image id"):
        check_image_id(bad, "here", PredictionsError)
    assert check_image_id("img[1]", "here") == "img[1]"


def test_split_list_with_a_space_in_an_id_is_refused_at_the_entry(root: Path) -> None:
    list_path(root, "val").write_text("# ids\nim1\nmy photo\n")
    with pytest.raises(GPSDataError, match=r"val\.txt:3: bad image id 'my photo': contains whitespace"):
        read_split(root, "val")
    with pytest.raises(GPSDataError, match="bad image id"):
        write_split(root, "test", ["a b"])
    with pytest.raises(GPSDataError, match="bad image id"):
        write_sample(root, "a b", _image(), [_person()])


def test_duplicate_id_in_a_split_list_names_the_list_and_the_id(root: Path) -> None:
    list_path(root, "val").write_text("im1\n\nim1\n")
    with pytest.raises(GPSDataError, match=r"lists/val\.txt:3: id 'im1' listed twice \(first on line 1\)"):
        GPSDataset(root, "val")


def test_file_names_with_spaces_map_to_ids() -> None:
    assert image_id_of_file(Path("/x/my  holiday photo.jpg")) == "my_holiday_photo"
    with pytest.raises(GPSDataError, match="bad image id"):
        image_id_of_file(Path("/x/#1.jpg"))


# ----------------------------------------------------------------------------- converters

def _mhp1_source(src: Path, ids: list[str]) -> Path:
    for k, image_id in enumerate(ids):
        (src / "images").mkdir(parents=True, exist_ok=True)
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        (src / "images" / f"{image_id}.jpg").write_bytes(_jpeg(_image()))
        assert cv2.imwrite(str(src / "annotations" / f"{image_id}_01_01.png"), _person())
    return src


def test_convert_id_with_brackets(tmp_path: Path) -> None:
    src = _mhp1_source(tmp_path / "src", ["img[1]", "img2"])
    splits = converters.convert("mhp1", src, tmp_path / "out", all_to="train")
    assert sorted(splits["train"]) == ["img2", "img[1]"]
    assert load_sample(tmp_path / "out", "img[1]").num_persons == 1


def test_convert_source_file_with_a_space_is_refused(tmp_path: Path) -> None:
    src = _mhp1_source(tmp_path / "src", ["good", "my photo"])
    with pytest.raises(GPSDataError, match=r"my photo\.jpg: bad image id 'my photo'"):
        converters.convert("mhp1", src, tmp_path / "out")


def test_convert_into_a_non_empty_folder_is_refused_and_overwrite_replaces_it_wholly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    converters.convert("mhp1", _mhp1_source(tmp_path / "a", ["a1", "a2"]), out, all_to="train")
    with pytest.raises(GPSDataError, match=r"out: output folder is not empty.*--overwrite"):
        converters.convert("mhp1", _mhp1_source(tmp_path / "b", ["b1"]), out, all_to="train")
    converters.convert("mhp1", tmp_path / "b", out, all_to="train", overwrite=True)
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["b1_01_01.png"]   # nothing stale
    assert sorted(p.name for p in (out / "images").iterdir()) == ["b1.jpg"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(GPSDataError, match=r"not replaced: it holds \['notes.txt'\]"):
        converters.convert("mhp1", tmp_path / "b", out, all_to="train", overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_convert_into_its_own_source_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _mhp1_source(tmp_path / "src", ["a"])
    before = sorted(str(p) for p in src.rglob("*"))
    for out in (src, src / "converted"):
        assert converters.main(["--from", "mhp1", str(src), str(out), "--overwrite"]) == 1
        assert "must not be, lie inside or hold the source folder" in capsys.readouterr().err
    assert sorted(str(p) for p in src.rglob("*")) == before


def test_split_ratios_must_be_finite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for bad in ("nan:1:1", "inf:1:1", "1:-1:1", "0:0:0", "a:b:c", "1:1"):
        with pytest.raises(SystemExit) as info:
            converters.main(["--from", "mhp1", str(tmp_path), str(tmp_path / "o"), "--split", bad])
        assert info.value.code == 2
        assert "split ratios must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path / "s"), "--split", "nan:1:1"])
    assert "finite" in capsys.readouterr().err


def test_mhp1_list_ids_without_an_image_warn_and_an_empty_split_is_an_error(tmp_path: Path) -> None:
    src = _mhp1_source(tmp_path / "src", [f"i{k}" for k in range(4)])
    (src / "train_list.txt").write_text("i0.jpg\ni1.jpg\ni2.jpg\ni3.jpg\nghost1.jpg\nghost2.jpg\n")
    (src / "test_list.txt").write_text("i0.jpg\n")
    with pytest.warns(UserWarning, match=r"train_list\.txt: 2 of 6 listed ids have no image"):
        splits = converters.convert("mhp1", src, tmp_path / "out")
    assert len(splits["train"]) == 3 and len(splits["val"]) == 1      # cut after dropping
    (src / "train_list.txt").write_text("i0.jpg\ni1.jpg\ni2.jpg\ni3.jpg\n")
    (src / "test_list.txt").write_text("ghost.jpg\n")
    with pytest.warns(UserWarning, match="1 of 1"), \
            pytest.raises(GPSDataError, match=r"test_list\.txt: none of its 1 ids has an image"):
        converters.convert("mhp1", src, tmp_path / "out2")
    (src / "test_list.txt").unlink()
    (src / "train_list.txt").write_text("i0.jpg\n")              # one id: 3:1 leaves val empty
    with pytest.raises(GPSDataError, match="split 'val' given by the source lists would be empty"):
        converters.convert("mhp1", src, tmp_path / "out3")


def test_convert_disk_full_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = _mhp1_source(tmp_path / "src", ["a"])

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    assert converters.main(["--from", "mhp1", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'images' / 'a.jpg'}: cannot write (No space left on device)" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- make-data

def test_make_data_into_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    args = ["--out", str(out), "--num", "2", "--size", "64"]
    assert synthetic.main(args) == 0
    stale = out / "annotations" / "stale_01_01.png"
    stale.write_bytes((out / "annotations").iterdir().__next__().read_bytes())
    capsys.readouterr()
    assert synthetic.main(args) == 1
    assert "output folder is not empty" in capsys.readouterr().err and stale.exists()
    assert synthetic.main(args + ["--overwrite"]) == 0
    assert not stale.exists()
    (tmp_path / "file").write_text("x")
    assert synthetic.main(["--out", str(tmp_path / "file"), "--num", "1", "--size", "64"]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err

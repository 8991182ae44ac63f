"""gpsnet infer --video (gpsnet.video) on a short video made from generated frames: the overlay video
and the per-frame JSON, progress, and the errors for a file that is not a video, a video without
frames, an image, and an output that cannot be written."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gpsnet import infer, train, video  # noqa: E402
from gpsnet.data.layout import GPSDataset  # noqa: E402
from gpsnet.nets.solver import CPU_SCHEDULE  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")


@pytest.fixture(scope="module")
def weights(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video_run")
    res = train.train(train.parse_args(["--variant", "loc", "--setting", "tiny", "--data", str(data_root),
                                        "--iters", "2", "--out", str(out), "--display", "0",
                                        *CPU_SCHEDULE.argv()]))
    return Path(res["snapshot"])


@pytest.fixture(scope="module")
def clip(data_root, tmp_path_factory) -> Path:
    """A 6-frame MPEG-4 video of the generated test images (64 x 64), 5 frames/s."""
    path = tmp_path_factory.mktemp("clip") / "people.mp4"
    ds = GPSDataset(data_root, "train")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 64))
    assert writer.isOpened()
    for image_id in (ds.ids * 2)[:6]:
        writer.write(cv2.resize(ds.load(image_id).image, (64, 64)))
    writer.release()
    return path


def _infer(weights: Path, *args: str) -> int:
    return infer.main(["--variant", "loc", "--setting", "tiny", "--weights", str(weights), *args])


def test_video_writes_the_overlay_video_and_per_frame_json(weights, clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(video, "PROGRESS_SECONDS", 0.0)   # a progress line per frame
    out = tmp_path / "result" / "people_parsed.mp4"
    assert _infer(weights, "--video", str(clip), "--out", str(out), "--score-thresh", "0.05") == 0
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    ok, frame = cap.read()
    assert ok and frame.shape[1] >= 3 * 512   # the figure: three panels of at least 512 px
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["num_frames"] == 6 and len(report["frames"]) == 6 and report["size"] == [64, 64]
    assert [f["frame"] for f in report["frames"]] == list(range(6))
    assert report["frames"][1]["time"] == pytest.approx(0.2)
    for f in report["frames"]:
        scores = [p["score"] for p in f["persons"]]
        assert scores == sorted(scores, reverse=True) and all(s >= 0.05 for s in scores)
        assert all(len(p["box"]) == 4 for p in f["persons"])
    err = capsys.readouterr()
    assert "video: frame 6/6" in err.err and "frames/s" in err.err and "parsed 6 frame(s)" in err.out
    assert not list(out.parent.glob(".*tmp-*"))   # no temporary file left
    # --out a folder: <folder>/<name>.mp4
    assert _infer(weights, "--video", str(clip), "--out", str(tmp_path / "folder")) == 0
    assert (tmp_path / "folder" / "people.mp4").is_file() and (tmp_path / "folder" / "people.json").is_file()


def test_video_errors_name_the_file(weights, clip, data_root, tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    empty = tmp_path / "empty.avi"
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 64))
    w.release()                                       # a container without a single frame
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    blocked = tmp_path / "taken.mp4"
    blocked.mkdir()                                   # the output name is a folder: the writer cannot open it
    cases = [(["--video", str(tmp_path / "missing.mp4")], "missing.mp4: no such file"),
             (["--video", str(text)], "not a video OpenCV can read"),
             (["--video", str(empty)], "a video with no frames"),
             (["--video", str(image)], "an image, not a video (parse it with --image)"),
             (["--video", str(clip), "--out", str(blocked)], f"cannot write {blocked}: a folder"),
             (["--video", str(clip), "--out", "/dev/full/x.mp4"], "cannot write /dev/full/x.mp4: [Errno"),
             (["--video", str(clip), "--out", str(clip)], "is the input video")]
    for args, says in cases:
        capsys.readouterr()
        assert _infer(weights, *args) == 1, args
        err = capsys.readouterr().err
        assert says in err, (args, err)
    assert blocked.is_dir() and not list(blocked.iterdir()) and clip.stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp-*"))

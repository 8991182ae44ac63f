"""Video inference: ``gpsnet infer --variant V --weights W --video IN [--out OUT.mp4]``.

Reads the video with OpenCV, parses every frame with the predictor (as ``--image`` parses one image)
and writes, frame by frame, the figure of ``gpsnet.viz`` (image | parts | persons, the legend naming
every class so that every frame has the same size) as a video at the input's frame rate (``.mp4``:
MPEG-4 part 2, ``.avi``: Motion JPEG), and ``OUT.json`` beside it: per frame its index, time and the
persons found (score, box in pixels), best first; persons are drawn from ``--score-thresh`` up when
it is given, else from ``gpsnet.viz.MIN_SCORE``. Progress and the frames per second go to stderr.

A file OpenCV cannot open as a video (or an image: use ``--image``), a video without frames, and an
output the writer cannot open are errors naming the file; the outputs appear under their final names
only when complete (written under a temporary name, then renamed).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from gpsnet.classes import NUM_CLASSES
from gpsnet.data.layout import FOLDER_IMAGE_SUFFIXES
from gpsnet.safeio import TEMP_MARK, WriteFailed, atomic_write_text

VIDEO_CODECS: dict[str, str] = {".mp4": "mp4v", ".avi": "MJPG"}   # output suffix -> OpenCV fourcc
DEFAULT_FPS = 25.0      # when the input does not say
PROGRESS_SECONDS = 2.0  # a progress line at most this often


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


@dataclass
class VideoInput:
    capture: Any            # cv2.VideoCapture, positioned after ``first``
    first: np.ndarray       # the first frame (BGR)
    fps: float
    frames: int             # the container's frame count (0: unknown)

    def __iter__(self) -> Any:
        frame: np.ndarray | None = self.first
        while frame is not None:
            yield frame
            ok, frame = self.capture.read()
            frame = frame if ok else None


def open_video(path: Path) -> VideoInput:
    """The video at ``path`` with its first frame read; ``VideoError`` when it is none or has no frame."""
    if not path.is_file():
        raise FileNotFoundError(f"--video {path}: no such file")
    if path.suffix.lower() in FOLDER_IMAGE_SUFFIXES:
        raise VideoError(f"--video {path}: an image, not a video (parse it with --image)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"--video {path}: not a video OpenCV can read (an unknown or broken container, "
                         "or a video file without any frame)")
    if cap.getBackendName() == "CV_IMAGES":
        cap.release()
        raise VideoError(f"--video {path}: an image, not a video (parse it with --image)")
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise VideoError(f"--video {path}: a video with no frames (nothing to parse)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return VideoInput(cap, first, fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
                      int(count) if np.isfinite(count) and 0 < count < 2 ** 31 else 0)


def output_path(out: Path, video: Path) -> Path:
    """``out`` itself when it names a video file (``VIDEO_CODECS``), else ``out/<video name>.mp4``."""
    return out if out.suffix.lower() in VIDEO_CODECS else out / f"{video.stem}.mp4"


def persons_json(pred: Any) -> list[dict[str, Any]]:
    order = np.argsort(-np.asarray(pred.scores, np.float64), kind="stable")
    boxes = np.asarray(pred.boxes, np.float64).reshape(-1, 4)
    return [{"score": round(float(pred.scores[i]), 4), "box": [round(float(v), 2) for v in boxes[i]]}
            for i in order]


def parse_video(video: Path, out: Path, make_predictor: Callable[[], Any]) -> dict[str, Any]:
    """Parse every frame of ``video`` (see the module docstring); ``make_predictor`` is called once the
    video is known to be readable. Returns the JSON written beside the output video."""
    from gpsnet.viz import MIN_SCORE, figure
    src = open_video(video)
    dst = output_path(out, video)
    if dst.resolve() == video.resolve():
        raise VideoError(f"--out {dst} is the input video: give another name")
    if dst.is_dir():
        raise VideoError(f"cannot write {dst}: a folder of that name is there")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteFailed(dst, err) from None
    tmp = dst.with_name(f".{dst.stem}{TEMP_MARK}{os.getpid()}{dst.suffix}")   # the suffix picks the container
    predictor = make_predictor()
    writer = None
    frames: list[dict[str, Any]] = []
    t0 = last = time.perf_counter()
    total = f"/{src.frames}" if src.frames else ""
    try:
        for i, frame in enumerate(src):
            pred = predictor.predict(frame)
            fig = figure(frame, pred, min_score=predictor.score_thresh or MIN_SCORE,
                         legend_classes=range(1, NUM_CLASSES))
            fig = np.pad(fig, ((0, fig.shape[0] % 2), (0, fig.shape[1] % 2), (0, 0)))   # even sizes for codecs
            if writer is None:
                fourcc = VIDEO_CODECS[dst.suffix.lower()]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), src.fps,
                                         (fig.shape[1], fig.shape[0]))
                if not writer.isOpened():
                    raise VideoError(f"cannot write {dst}: OpenCV's video writer ({fourcc}) did not open it "
                                     "(a folder of that name, or no room?)")
            writer.write(fig)
            frames.append({"frame": i, "time": round(i / src.fps, 4), "persons": persons_json(pred)})
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS:
                print(f"video: frame {i + 1}{total}, {(i + 1) / (now - t0):.2f} frames/s", file=sys.stderr,
                      flush=True)
                last = now
    finally:
        src.capture.release()
        if writer is not None:
            writer.release()
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise VideoError(f"cannot write {dst}: the video writer wrote nothing (no room on the disk?)")
        try:
            os.replace(tmp, dst)
        except OSError as err:
            raise WriteFailed(dst, err) from None
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    result = {"video": str(video), "output": str(dst), "fps": src.fps, "size": [int(src.first.shape[1]),
              int(src.first.shape[0])], "num_frames": len(frames), "seconds": round(seconds, 2),
              "frames_per_second": round(len(frames) / max(seconds, 1e-9), 3), "frames": frames}
    report = dst.with_suffix(".json")
    atomic_write_text(report, json.dumps(result, indent=1) + "\n")
    print(f"parsed {len(frames)} frame(s) of {video} in {seconds:.1f}s ({result['frames_per_second']:.2f} "
          f"frames/s): {dst}, {report}")
    return result

"""Bad input to the commands (issue 12, defects 4, 11, 15, 16, 17): `gpsnet evaluate`,
`gpsnet infer --folder`, `gpsnet build-nets --check`. Each test feeds the bad argument or file
and asserts the clear error or the documented behaviour (docs/evaluation.md and docs/data.md,
"Bad input")."""
from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet import infer
from gpsnet.data.layout import list_path, read_split
from gpsnet.data.synthetic import generate_dataset
from gpsnet.eval.cli import main as evaluate
from gpsnet.eval.predictions import RESULTS_FILE, PredictionsError, PredictionWriter, read_results
from gpsnet.nets import build_nets

SPLIT = "val"


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generate_dataset(root, 5, size=64, seed=5, ratios=(1, 1, 0))
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = evaluate(["--quiet", "--split", SPLIT] + args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ----------------------------------------------------------------------------- (4) --gt-as-predictions OUT

def test_gt_as_predictions_refuses_a_non_empty_folder_unless_overwrite(data: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gt"
    assert _run(["--data", str(data), "--gt-as-predictions", str(out)], capsys)[0] == 0
    stale = out / "persons" / "stale_01.png"
    stale.write_bytes(b"old")
    before = _snapshot(out)
    rc, stdout, err = _run(["--data", str(data), "--gt-as-predictions", str(out)], capsys)
    assert rc == 1 and "output folder is not empty" in err and "--overwrite" in err and stdout == ""
    assert _snapshot(out) == before
    rc, stdout, _ = _run(["--data", str(data), "--gt-as-predictions", str(out), "--overwrite"], capsys)
    assert rc == 0 and not stale.exists()
    assert [ln.split()[2:] for ln in stdout.splitlines() if ln.startswith("ground truth")] == [["100.00"] * 7]
    (out / "my notes.txt").write_text("keep")
    rc, _, err = _run(["--data", str(data), "--gt-as-predictions", str(out), "--overwrite"], capsys)
    assert rc == 1 and "not replaced" in err and (out / "my notes.txt").read_text() == "keep"


def test_gt_as_predictions_never_replaces_a_folder_of_the_same_call(data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "runs" / "preds"
    with PredictionWriter(preds) as w:
        for image_id in read_split(data, SPLIT):
            w.add(image_id, [], [])
    before = _snapshot(preds)
    for out in (preds, preds / "gt", preds.parent):   # is it, lies inside it, holds it
        rc, stdout, err = _run(["--data", str(data), str(preds), "--gt-as-predictions", str(out),
                                "--overwrite"], capsys)
        assert rc == 1 and "the predictions folder" in err and stdout == ""
    assert _snapshot(preds) == before          # its row can not read 100


def test_gt_as_predictions_never_writes_into_the_data_root(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(data)
    for out in (data / "gt", data, data / "lists" / "gt"):
        rc, _, err = _run(["--data", str(data), "--gt-as-predictions", str(out), "--overwrite"], capsys)
        assert rc == 1 and "the data root" in err
    assert _snapshot(data) == before


# ----------------------------------------------------------------------------- (16) --json, --plot, ENOSPC

def test_output_files_are_checked_before_the_work(data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    gt = ["--data", str(data), "--gt-as-predictions", str(tmp_path / "gt")]
    cases = [(["--json", str(tmp_path / "missing" / "dir" / "r.json")], "no such folder"),
             (["--json", str(tmp_path)], "names a folder"),
             (["--plot", str(tmp_path / "x.xyz")], "unknown image format '.xyz'"),
             (["--plot", str(tmp_path / "pr")], "unknown image format '(no suffix)'")]
    for extra, message in cases:
        rc, stdout, err = _run(gt + extra, capsys)
        assert rc == 1 and message in err and "Traceback" not in err
        assert stdout == ""                        # no table: nothing was evaluated
        assert not (tmp_path / "gt").exists()      # nothing was written


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_json_names_the_file(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, stdout, err = _run(["--data", str(data), "--gt-as-predictions", str(tmp_path / "gt"),
                            "--json", "/dev/full"], capsys)
    assert rc == 1 and "/dev/full: cannot write (No space left on device)" in err
    assert "AP0.5" in stdout


def test_disk_full_while_writing_ground_truth_names_the_file(data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    rc, _, err = _run(["--data", str(data), "--gt-as-predictions", str(tmp_path / "gt")], capsys)
    assert rc == 1 and "Traceback" not in err
    assert f"{tmp_path / 'gt' / 'persons'}" in err and "cannot write (No space left on device)" in err


# ----------------------------------------------------------------------------- (15, 17) ids in lists

def test_split_list_errors_name_the_list_not_results_txt(data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ids = read_split(data, SPLIT)
    list_path(data, SPLIT).write_text(f"{ids[0]}\n{ids[0]}\n")
    rc, _, err = _run(["--data", str(data), "--gt-as-predictions", str(tmp_path / "gt")], capsys)
    assert rc == 1 and f"{SPLIT}.txt:2: id '{ids[0]}' listed twice" in err and RESULTS_FILE not in err
    list_path(data, SPLIT).write_text("my photo\n")
    rc, _, err = _run(["--data", str(data), "--gt-as-predictions", str(tmp_path / "gt")], capsys)
    assert rc == 1 and f"{SPLIT}.txt:1: bad image id 'my photo': contains whitespace" in err


def test_results_txt_ids_follow_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_text("# header\ngood 1 0.5\nbad\\id 1 0.5\n")
    with pytest.raises(PredictionsError, match=r"results\.txt:3: bad image id 'bad\\\\id'"):
        read_results(tmp_path)


# ----------------------------------------------------------------------------- (11) infer --folder

class FakePredictor:
    """Stands in for the net: one person covering the top-left quarter, score 0.5."""

    score_thresh = 0.0   # as Predictor's (the figures draw persons from it, or from viz.MIN_SCORE)

    def predict(self, image: np.ndarray) -> infer.Prediction:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2, : w // 2] = 4
        return infer.Prediction(scores=np.array([0.5]), boxes=np.array([[0, 0, w // 2, h // 2]], np.float32),
                                masks=[mask], global_seg=None)


def test_infer_folder_skips_bad_files_and_keeps_the_good_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    assert cv2.imwrite(str(folder / "a.jpg"), img)
    assert cv2.imwrite(str(folder / "my photo.jpg"), img)             # a name with a space
    assert cv2.imwrite(str(folder / "a.png"), img)                    # same id as a.jpg
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    data = bytearray((folder / "a.jpg").read_bytes())
    sos = data.index(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big"), data.rindex(b"\xff\xd9")
    data[start:end] = bytes(end - start)
    (folder / "zeroed.jpg").write_bytes(bytes(data))                  # decodes with a libjpeg warning
    (folder / "dir.jpg").mkdir()                                      # unreadable
    assert cv2.imwrite(str(folder / "z.jpg"), img)                    # after the bad ones
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")

    def fake_predictor(args: argparse.Namespace) -> FakePredictor:
        return FakePredictor()

    monkeypatch.setattr(infer, "make_predictor", fake_predictor)
    rc = infer.main(["--folder", str(folder), "--weights", str(weights), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    results = read_results(tmp_path / "out" / "predictions")
    assert sorted(results) == ["a", "my_photo", "z"]
    assert all(p == [(1, 0.5)] for p in results.values())
    assert (tmp_path / "out" / "overlays" / "my_photo.png").is_file()
    assert "4 image(s) failed" in err
    for name, why in (("a.png", "already taken by a.jpg"), ("broken.jpg", "not a JPEG"),
                      ("zeroed.jpg", "corrupt JPEG data"), ("dir.jpg", "unreadable image")):
        assert any(name in ln and why in ln for ln in err.splitlines()), (name, err)


# ----------------------------------------------------------------------------- (17) build-nets --check

def test_build_nets_check_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert build_nets.main(["--check"]) == 0
    assert "out of date" not in capsys.readouterr().out
    assert build_nets.main(["--check", "--out", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err

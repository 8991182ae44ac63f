"""The predictions format, `evaluate_folder`, `format_table` and `gpsnet evaluate-predictions` (alias `evaluate`) on real files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet.classes import IGNORE_LABEL
from gpsnet.eval import PredictionWriter, evaluate_folder, format_table, write_gt_as_predictions
from gpsnet.eval.cli import main
from gpsnet.eval.predictions import PredictionsError, PredictionsFolder, person_path, read_results

H, W = 40, 60


def person(x0: int, x1: int, parts: tuple[int, ...] = (2, 11, 4, 6)) -> np.ndarray:
    """A person occupying columns x0..x1: horizontal bands of `parts`."""
    lab = np.zeros((H, W), np.uint8)
    band = (H - 4) // len(parts)
    for i, c in enumerate(parts):
        lab[2 + i * band: 2 + (i + 1) * band, x0:x1] = c
    return lab


def write_layout(root: Path, images: dict[str, list[np.ndarray]], split: str = "val") -> Path:
    """The GPS layout (images/<id>.jpg, annotations/<id>_<NN>_<MM>.png, lists/<split>.txt)."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "lists").mkdir()
    rng = np.random.default_rng(0)
    for image_id, persons in images.items():
        cv2.imwrite(str(root / "images" / f"{image_id}.jpg"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        for k, lab in enumerate(persons, start=1):
            cv2.imwrite(str(root / "annotations" / f"{image_id}_{len(persons):02d}_{k:02d}.png"), lab)
    (root / "lists" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
    return root


def gt_images() -> dict[str, list[np.ndarray]]:
    ign = person(40, 52)
    ign[30:, 40:44] = IGNORE_LABEL
    return {
        "a": [person(2, 12), person(20, 30, (1, 2, 11, 4, 5)), ign],
        "b": [person(5, 25, (2, 11, 7))],
        "c": [person(10, 20), np.zeros((H, W), np.uint8)],  # an empty annotation
    }


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_layout(tmp_path / "data", gt_images())


def perturbed(data_root: Path, out: Path, shift: int, drop: bool = False) -> Path:
    """Predictions: the gt persons shifted right by `shift` pixels, one part relabelled."""
    with PredictionWriter(out) as w:
        for image_id, persons in gt_images().items():
            masks, scores = [], []
            for k, lab in enumerate(persons):
                if not lab.any() or (drop and k == 0):
                    continue
                m = np.roll(np.where(lab == IGNORE_LABEL, 0, lab), shift, axis=1).astype(np.uint8)
                m[m == 6] = 5
                masks.append(m)
                scores.append(0.9 - 0.1 * k)
            glob = np.maximum.reduce(masks) if masks else np.zeros((H, W), np.uint8)
            w.add(image_id, scores, masks, glob)
    return out


# ----------------------------------------------------------------------------- format

def test_writer_reader_round_trip(tmp_path: Path) -> None:
    masks = [person(2, 12), person(20, 30)]
    with PredictionWriter(tmp_path / "p", write_tags=True) as w:
        w.add("img1", [0.25, 0.75], masks, global_seg=masks[0] | masks[1])
        w.add("img2", [], [])
    res = read_results(tmp_path / "p")
    assert res == {"img1": [(1, 0.25), (2, 0.75)], "img2": []}
    folder = PredictionsFolder(tmp_path / "p")
    pred = folder.load("img1", (H, W))
    np.testing.assert_array_equal(pred.masks, np.stack(masks))
    np.testing.assert_array_equal(pred.scores, [0.25, 0.75])
    assert pred.global_seg is not None
    assert (tmp_path / "p" / "global_tag" / "img1.png").is_file()
    assert folder.load("img2", (H, W)).masks.shape == (0, H, W)


def test_persons_derived_from_global_seg_and_tag_like_mhp(tmp_path: Path) -> None:
    masks = [person(2, 12), person(20, 30)]
    with PredictionWriter(tmp_path / "p", write_tags=True) as w:
        w.add("img1", [0.5, 0.6], masks, global_seg=masks[0] | masks[1])
    for k in (1, 2):
        person_path(tmp_path / "p", "img1", k).unlink()
    pred = PredictionsFolder(tmp_path / "p").load("img1", (H, W))
    np.testing.assert_array_equal(pred.masks, np.stack(masks))


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    w = PredictionWriter(tmp_path / "p")
    with pytest.raises(PredictionsError, match="outside 0..19"):
        w.add("x", [1.0], [np.full((4, 4), 20, np.uint8)])
    with pytest.raises(PredictionsError, match="2 scores for 1 masks"):
        w.add("y", [1.0, 0.5], [np.zeros((4, 4), np.uint8)])
    with pytest.raises(PredictionsError, match="bad image id"):
        w.add("a b", [], [])
    w.add("z", [], [])
    with pytest.raises(PredictionsError, match="twice"):
        w.add("z", [], [])


def test_bad_results_file(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "results.txt").write_text("img1 1 0.5 2\n")
    with pytest.raises(PredictionsError, match=r"results.txt:1"):
        read_results(tmp_path / "p")
    with pytest.raises(PredictionsError, match="missing results file"):
        read_results(tmp_path)


# ----------------------------------------------------------------------------- evaluation

def test_gt_as_predictions_gives_one_and_perturbed_copies_less(data: Path, tmp_path: Path) -> None:
    gt_dir = write_gt_as_predictions(data, "val", tmp_path / "gt")
    res = evaluate_folder(gt_dir, data, "val")
    assert all(v == 1.0 for v in res["AP"].values())
    assert res["avg_AP"] == 1.0 and res["PCP"] == 1.0 and res["mIoU"] == 1.0
    assert res["num_gt_persons"] == 5 and res["num_predictions"] == 5 and res["num_images"] == 3
    small = evaluate_folder(perturbed(data, tmp_path / "p1", 1), data, "val")
    large = evaluate_folder(perturbed(data, tmp_path / "p3", 3, drop=True), data, "val")
    assert 1.0 > small["avg_AP"] > large["avg_AP"]
    assert small["mIoU"] < 1.0 and small["PCP"] < 1.0


@pytest.mark.filterwarnings("ignore:.*no global_seg")
def test_missing_image_counts_as_no_prediction(data: Path, tmp_path: Path) -> None:
    gt_dir = write_gt_as_predictions(data, "val", tmp_path / "gt")
    lines = (gt_dir / "results.txt").read_text().splitlines()
    (gt_dir / "results.txt").write_text("\n".join(ln for ln in lines if not ln.startswith("b")) + "\n")
    with pytest.warns(UserWarning, match="no predictions for 1 of 3"):
        res = evaluate_folder(gt_dir, data, "val")
    assert res["missing_images"] == 1
    assert res["AP"]["0.5"] == pytest.approx(4 / 5)  # 4 of 5 persons found, precision 1


def test_mask_size_mismatch_names_the_file(data: Path, tmp_path: Path) -> None:
    with PredictionWriter(tmp_path / "p") as w:
        w.add("a", [1.0], [np.zeros((H, W + 1), np.uint8)])
    with pytest.raises(PredictionsError, match=r"a_01\.png: person mask size 61x40 differs"):
        evaluate_folder(tmp_path / "p", data, "val")


def test_labels_out_of_range_on_disk_name_the_file(data: Path, tmp_path: Path) -> None:
    with PredictionWriter(tmp_path / "p") as w:
        w.add("a", [1.0], [np.zeros((H, W), np.uint8)])
    cv2.imwrite(str(person_path(tmp_path / "p", "a", 1)), np.full((H, W), 33, np.uint8))
    with pytest.raises(PredictionsError, match=r"a_01\.png: person mask labels outside 0..19: \[33\]"):
        evaluate_folder(tmp_path / "p", data, "val")


def test_format_table_is_the_papers_layout() -> None:
    res = {"AP": {f"{t / 10:.1f}": t / 10 for t in range(1, 10)}, "avg_AP": 0.5, "PCP": 0.25, "mIoU": None}
    table = format_table({"Ad. Fuse": res, "Loc.": res})
    lines = table.splitlines()
    assert lines[0].split() == ["Methods", "AP0.5", "AP0.6", "AP0.7", "AP0.8", "avg.AP", "PCP0.5", "mIoU"]
    assert lines[2].split() == ["Ad.", "Fuse", "50.00", "60.00", "70.00", "80.00", "50.00", "25.00", "-"]
    assert lines[3].startswith("Loc.")


# ----------------------------------------------------------------------------- the command

def test_command_table_json_plot(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p1 = perturbed(data, tmp_path / "p1", 1)
    out_json, out_png = tmp_path / "r.json", tmp_path / "pr.png"
    rc = main(["--data", str(data), "--split", "val", str(p1), "--names", "Shifted",
               "--gt-as-predictions", str(tmp_path / "gt"), "--json", str(out_json),
               "--plot", str(out_png), "--classes"])
    assert rc == 0
    cap = capsys.readouterr()
    assert "AP0.5" in cap.out and "avg.AP" in cap.out and "Shifted" in cap.out
    gt_row = [ln for ln in cap.out.splitlines() if ln.startswith("ground truth")][0]
    assert gt_row.split()[2:] == ["100.00"] * 7
    assert "evaluating" in cap.err and "3/3" in cap.err   # the progress bar
    payload = json.loads(out_json.read_text())
    assert payload["ground truth"]["avg_AP"] == 1.0
    assert payload["Shifted"]["avg_AP"] < 1.0
    assert "curves" not in payload["Shifted"]
    img = cv2.imread(str(out_png))
    assert img is not None and img.shape[0] > 100


def test_command_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with PredictionWriter(tmp_path / "p") as w:
        w.add("a", [1.0], [np.zeros((H + 2, W), np.uint8)])
    assert main(["--data", str(data), "--quiet", str(tmp_path / "p")]) == 1
    assert "a_01.png" in capsys.readouterr().err
    assert main(["--data", str(data), "--quiet", str(tmp_path / "nowhere")]) == 1
    assert "no such predictions folder" in capsys.readouterr().err
    assert main(["--data", str(data), "--quiet"]) == 2
    assert main(["--data", str(data), "--quiet", str(tmp_path / "p"), "--names", "x", "y"]) == 2


def test_command_warns_about_missing_images(data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with PredictionWriter(tmp_path / "p") as w:
        w.add("a", [1.0], [person(2, 12)])
    assert main(["--data", str(data), "--quiet", str(tmp_path / "p")]) == 0
    cap = capsys.readouterr()
    assert "no predictions for 2 of 3 images" in cap.err
    assert "2 images without predictions" in cap.out


def test_eval_package_does_not_import_caffe() -> None:
    import subprocess
    import sys
    code = ("import sys, gpsnet.eval, gpsnet.eval.cli, gpsnet.eval.bench; "
            "sys.exit(1 if any(m == 'caffe' or m.startswith('caffe.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

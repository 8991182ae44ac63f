"""The synthetic generator (gpsnet.data.synthetic) and `gpsnet stats`."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpsnet.classes import CLASS_ID, NUM_CLASSES
from gpsnet.data import stats, synthetic
from gpsnet.data.layout import GPSDataset, load_sample, read_split

C = CLASS_ID


@pytest.fixture(scope="module")
def mixed20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed20")
    assert synthetic.main(["--out", str(root), "--num", "20", "--size", "160", "--seed", "3",
                           "--preview", str(root / "sheet.png")]) == 0
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        synthetic.generate_dataset(tmp_path / name, 4, 128, seed=11, scene="mixed")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b and len(a) > 8
    synthetic.generate_dataset(tmp_path / "c", 4, 128, seed=12, scene="mixed")
    assert _tree(tmp_path / "c") != a


def test_split_ratio_and_layout(mixed20: Path) -> None:
    sizes = {s: len(read_split(mixed20, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 12, "val": 4, "test": 4}
    ids = sum((read_split(mixed20, s) for s in sizes), [])
    assert len(set(ids)) == 20
    assert {i.split("_")[0] for i in ids} == {"indoor", "outdoor"}
    for s in GPSDataset(mixed20, "val"):
        assert s.image.shape == (160, 160, 3)
        assert 2 <= s.num_persons <= 10
        assert not np.isnan(s.person_boxes).any()          # every person visible
        assert (s.person_boxes[:-1, 0] + s.person_boxes[:-1, 2] <= s.person_boxes[1:, 0] + s.person_boxes[1:, 2]).all()


def test_class_coverage_and_faces(mixed20: Path) -> None:
    seen = np.zeros(NUM_CLASSES, bool)
    faces = no_faces = 0
    for split in ("train", "val", "test"):
        for s in GPSDataset(mixed20, split):
            seen[np.unique(s.person_labels)] = True
            faces += int(s.has_face.sum())
            no_faces += int((~s.has_face).sum())
            if s.image_id.startswith("outdoor"):
                assert not (s.person_labels == C["tie"]).any()
            # visible pixels only: no pixel belongs to two persons
            assert ((s.person_labels != 0).sum(axis=0) <= 1).all()
    assert seen[:NUM_CLASSES].all(), [i for i in range(NUM_CLASSES) if not seen[i]]
    assert faces > 0 and no_faces > 0


def test_left_right_is_the_persons_own() -> None:
    checked = {True: 0, False: 0}
    for i in range(12):
        rng = np.random.default_rng([5, i])
        _, labels, specs = synthetic.generate_image(rng, 256, "indoor" if i % 2 else "outdoor")
        assert len(labels) == len(specs)
        for lab, spec in zip(labels, specs):
            if not spec.front:
                assert not (lab == C["face"]).any()  # facing away: no face pixels
            for left, right in ((C["left-arm"], C["right-arm"]), (C["left-shoe"], C["right-shoe"])):
                yl, xl = np.nonzero(lab == left)
                yr, xr = np.nonzero(lab == right)
                if xl.size < 20 or xr.size < 20:
                    continue
                if spec.front:   # left on the image's right
                    assert xl.mean() > xr.mean()
                else:
                    assert xl.mean() < xr.mean()
                checked[spec.front] += 1
    assert checked[True] > 5 and checked[False] > 0


def test_person_counts() -> None:
    for scene, mean in synthetic.MEAN_PERSONS.items():
        pmf = synthetic._PMF[scene]
        assert abs(float((np.arange(len(pmf)) + 2) @ pmf) - mean) < 1e-3
        rng = np.random.default_rng(0)
        counts = [synthetic.draw_count(rng, scene) for _ in range(2000)]
        assert min(counts) >= 2 and max(counts) <= 10
        assert abs(np.mean(counts) - mean) < 0.15


def test_preview(mixed20: Path) -> None:
    sheet = cv2.imread(str(mixed20 / "sheet.png"))
    assert sheet is not None and sheet.shape[0] >= 160 and sheet.shape[1] >= 2 * 160


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--split", "3:1"], ["--num", "0"], ["--scene", "moon"]):
        with pytest.raises(SystemExit):
            synthetic.main(argv)


def test_stats(mixed20: Path, tmp_path: Path) -> None:
    assert stats.main([str(mixed20), "--out", str(tmp_path)]) == 0
    for name in ("persons_per_image.png", "part_frequency.png", "stats.txt"):
        assert (tmp_path / name).stat().st_size > 0
    st = stats.collect(mixed20)
    assert st.images == 20 and sum(st.persons_per_image.values()) == 20
    assert st.persons == sum(load_sample(mixed20, i).num_persons
                             for s in ("train", "val", "test") for i in read_split(mixed20, s))
    assert (st.part_instances[1:] > 0).all()
    text = (tmp_path / "stats.txt").read_text()
    assert "mean persons per image" in text and "tie" in text
    assert stats.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 1

"""Statistics of a GPS-layout data set: the paper's Figs. 2 and 3.

`gpsnet stats ROOT --out DIR [--splits train,val,test]` writes `persons_per_image.png`,
`part_frequency.png` and `stats.txt`: the histogram of persons per image and, per part class, the
number of person instances in which it appears (and its pixel count).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from gpsnet.classes import CLASS_NAMES, NUM_CLASSES
from gpsnet.data.layout import (SPLITS, GPSDataError, annotation_files, index_annotations, list_path, read_label,
                                read_split)


@dataclass
class Stats:
    images: int = 0
    persons: int = 0
    persons_per_image: Counter = field(default_factory=Counter)
    part_instances: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    part_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def mean_persons(self) -> float:
        return self.persons / self.images if self.images else 0.0


def collect(root: str | Path, splits: Sequence[str] = SPLITS) -> Stats:
    """Counts over the listed ids of `splits` (lists that do not exist are skipped; none: error)."""
    root = Path(root)
    st = Stats()
    seen: set[str] = set()
    index = None
    for split in splits:
        if not list_path(root, split).is_file():
            continue
        ids = read_split(root, split)
        index = index_annotations(root) if index is None else index
        st.splits[split] = len(ids)
        for image_id in ids:
            if image_id in seen:
                continue
            seen.add(image_id)
            files = annotation_files(root, image_id, index)
            st.images += 1
            st.persons += len(files)
            st.persons_per_image[len(files)] += 1
            for f in files:
                counts = np.bincount(read_label(f).ravel(), minlength=256)[:NUM_CLASSES]
                st.part_pixels += counts
                st.part_instances += counts > 0
    if not st.splits:
        raise GPSDataError(f"{root / 'lists'}: no split list ({', '.join(splits)})")
    return st


def report(st: Stats) -> str:
    lines = [f"images {st.images}, persons {st.persons}, mean persons per image {st.mean_persons:.2f}",
             "splits: " + ", ".join(f"{k} {v}" for k, v in st.splits.items()), "",
             "persons per image:"]
    for n in sorted(st.persons_per_image):
        lines.append(f"  {n:3d}  {st.persons_per_image[n]}")
    lines += ["", f"{'part':<15} {'instances':>9} {'pixels':>12}"]
    for k in range(1, NUM_CLASSES):
        lines.append(f"{CLASS_NAMES[k]:<15} {st.part_instances[k]:>9d} {st.part_pixels[k]:>12d}")
    return "\n".join(lines) + "\n"


def plot(st: Stats, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ns = list(range(min(st.persons_per_image, default=1), max(st.persons_per_image, default=1) + 1))
    ax.bar(ns, [st.persons_per_image.get(n, 0) for n in ns], color="#3b75af")
    ax.set_xlabel("persons per image")
    ax.set_ylabel("images")
    ax.set_title(f"The number of persons per image (mean {st.mean_persons:.2f})")
    ax.set_xticks(ns)
    fig.tight_layout()
    paths.append(out / "persons_per_image.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(CLASS_NAMES[1:])
    ax.bar(range(len(names)), st.part_instances[1:], color="#c8553d")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right")
    ax.set_ylabel("person instances")
    ax.set_title("The appearing times of human parts")
    fig.tight_layout()
    paths.append(out / "part_frequency.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet stats", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="a GPS-layout data set")
    ap.add_argument("--out", required=True, help="folder for the plots and stats.txt")
    ap.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default all)")
    args = ap.parse_args(argv)
    try:
        st = collect(args.root, [s for s in args.splits.split(",") if s])
    except GPSDataError as err:
        print(f"stats: {err}", file=sys.stderr)
        return 1
    out = Path(args.out)
    paths = plot(st, out)
    text = report(st)
    (out / "stats.txt").write_text(text)
    print(text, end="")
    print("stats: wrote " + ", ".join(str(p) for p in paths + [out / "stats.txt"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

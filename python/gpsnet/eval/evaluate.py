"""Evaluating predictions folders against a GPS-layout data set, and the paper's table."""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np

from gpsnet.classes import NUM_CLASSES
from gpsnet.data.layout import GPSDataset
from gpsnet.data.outputs import check_apart, prepare_output_folder
from gpsnet.eval.metrics import (PCP_THRESHOLD, TABLE_THRESHOLDS, THRESHOLDS, GlobalAccumulator,
                                 InstanceAccumulator)
from gpsnet.eval.predictions import FOLDER_ENTRIES, PredictionsError, PredictionsFolder, PredictionWriter


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, otherwise one line
    per 10 %."""

    def __init__(self, total: int, label: str = "evaluating", stream: TextIO | None = None,
                 enabled: bool = True, width: int = 30) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def _line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:.0f}s elapsed, {eta:.0f}s left")

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self._line())
            self.stream.flush()
        else:
            decile = int(10 * self.done / self.total) if self.total else 10
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()


def evaluate_folders(pred_dirs: Sequence[str | os.PathLike], data_root: str | os.PathLike,
                     split: str = "val", progress: bool = False,
                     num_classes: int = NUM_CLASSES,
                     ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Evaluate several predictions folders in one pass over the ground truth (each image's
    annotations are read once). One result dict per folder, see `evaluate_folder`. ``ids``:
    only these images of the split (default: all)."""
    dataset = GPSDataset(data_root, split)
    if ids is not None:
        unknown = sorted(set(ids) - set(dataset.ids))
        if unknown:
            raise ValueError(f"images not in {split}: {unknown[:5]}")
        dataset.ids = list(ids)
    folders = [PredictionsFolder(d, num_classes) for d in pred_dirs]
    inst = [InstanceAccumulator(num_classes) for _ in folders]
    glob = [GlobalAccumulator(num_classes) for _ in folders]
    missing = [0] * len(folders)
    missing_global = [0] * len(folders)
    bar = Progress(len(dataset.ids), f"evaluating {len(folders)} folder(s) on {split}",
                   enabled=progress)
    for image_id in dataset.ids:
        sample = dataset.load(image_id)
        shape = sample.image.shape[:2]
        for i, folder in enumerate(folders):
            if image_id in folder:
                pred = folder.load(image_id, shape)
                scores, masks, global_seg = pred.scores, pred.masks, pred.global_seg
            else:
                missing[i] += 1
                scores, masks, global_seg = np.zeros(0), np.zeros((0,) + shape, np.uint8), None
            inst[i].add(scores, masks, sample.person_labels)
            if global_seg is None:
                missing_global[i] += 1
            else:
                glob[i].add(global_seg, sample.global_label)
        bar.update()
    bar.close()
    known = set(dataset.ids)
    out = []
    for i, folder in enumerate(folders):
        res: dict[str, Any] = {"pred_dir": str(folder.folder), "data": str(data_root), "split": split}
        res.update(inst[i].summary())
        res["curves"] = {f"{t:.1f}": _curve(inst[i], t) for t in THRESHOLDS}
        if glob[i].num_images:
            res.update({key: value for key, value in glob[i].summary().items() if key != "num_images"})
            res["num_global_images"] = glob[i].num_images
        else:
            res.update({"mIoU": None, "per_class_IoU": None, "pixel_accuracy": None,
                        "num_global_images": 0})
        res["missing_images"] = missing[i]
        res["missing_global_seg"] = missing_global[i] if glob[i].num_images else len(dataset.ids)
        res["extra_images"] = sum(1 for image_id in folder.ids if image_id not in known)
        if missing[i]:
            warnings.warn(f"{folder.folder}: no predictions for {missing[i]} of {len(dataset.ids)} "
                          f"images of {split} (counted as no person found)", stacklevel=2)
        if glob[i].num_images and missing_global[i]:
            warnings.warn(f"{folder.folder}: no global_seg for {missing_global[i]} images "
                          "(left out of the mIoU)", stacklevel=2)
        out.append(res)
    return out


def _curve(acc: InstanceAccumulator, t: float) -> dict[str, list[float]]:
    r = acc.evaluate(t)
    return {"precision": r.precision.tolist(), "recall": r.recall.tolist()}


def evaluate_folder(pred_dir: str | os.PathLike, data_root: str | os.PathLike, split: str = "val",
                    progress: bool = False) -> dict[str, Any]:
    """Evaluate one predictions folder. Keys (fractions in [0, 1], not %):

    `AP` ({"0.1": .., ..., "0.9": ..}), `avg_AP`, `PCP` (at 0.5), `PCP_by_threshold`, `mIoU`,
    `per_class_IoU` ({class name: IoU or None}), `pixel_accuracy` (None without global_seg),
    `num_images`, `num_gt_persons`, `num_predictions`, `true_positives`, `missing_images`
    (split images absent from results.txt: evaluated as no person found), `missing_global_seg`,
    `extra_images` (results for images outside the split: ignored), `curves` (precision and
    recall per ranked prediction at every threshold)."""
    return evaluate_folders([pred_dir], data_root, split, progress)[0]


# ----------------------------------------------------------------------------- output

def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * float(value):.2f}"


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The paper's Tables 2-3 layout (values in %), plus PCP at 0.5 and the global mIoU."""
    head = ["Methods"] + [f"AP{t:.1f}" for t in TABLE_THRESHOLDS] + ["avg.AP", f"PCP{PCP_THRESHOLD:.1f}", "mIoU"]
    rows = []
    for name, res in results.items():
        rows.append([str(name)] + [_pct(res["AP"][f"{t:.1f}"]) for t in TABLE_THRESHOLDS]
                    + [_pct(res["avg_AP"]), _pct(res.get("PCP")), _pct(res.get("mIoU"))])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
             for r in [head] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_class_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Per-class IoU (%) of the global parsing, one column per method."""
    names = list(results)
    classes: list[str] = []
    for res in results.values():
        if res.get("per_class_IoU"):
            classes = list(res["per_class_IoU"])
            break
    if not classes:
        return ""
    width = max(len(c) for c in classes + ["class"])
    cols = [max(len(n), 6) for n in names]
    lines = ["class".ljust(width) + "".join("  " + n.rjust(w) for n, w in zip(names, cols))]
    for c in classes:
        vals = [(results[n].get("per_class_IoU") or {}).get(c) for n in names]
        lines.append(c.ljust(width) + "".join("  " + _pct(v).rjust(w) for v, w in zip(vals, cols)))
    return "\n".join(lines)


def json_ready(res: Mapping[str, Any], curves: bool = False) -> dict[str, Any]:
    """A result dict for json.dump: NaN as null, curves left out unless asked for."""
    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) else v
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        return v
    return {k: clean(v) for k, v in res.items() if curves or k != "curves"}


class OutputFileError(ValueError):
    """An output file (--json, --plot) cannot be written where it was asked for."""


def plot_formats() -> list[str]:
    """The file suffixes (without the dot) that `plot_curves` can write (matplotlib's)."""
    from matplotlib.backend_bases import FigureCanvasBase
    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_output_file(path: str | os.PathLike, what: str, formats: Sequence[str] | None = None) -> Path:
    """Before any work: OutputFileError unless ``path`` can be a new file (its folder exists, it
    is not a folder) with one of ``formats`` as suffix (when given)."""
    path = Path(path)
    if path.is_dir():
        raise OutputFileError(f"{path}: {what} names a folder, not a file")
    if not path.parent.is_dir():
        raise OutputFileError(f"{path}: {what}: no such folder {path.parent}")
    if formats is not None and path.suffix.lower().lstrip(".") not in formats:
        raise OutputFileError(f"{path}: {what}: unknown image format {path.suffix or '(no suffix)'!r}; "
                              f"one of {', '.join('.' + f for f in formats)}")
    return path


def plot_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike,
                thresholds: Iterable[float] = TABLE_THRESHOLDS) -> Path:
    """Precision/recall curves (one panel per threshold, one line per method) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = list(thresholds)
    fig, axes = plt.subplots(1, len(ts), figsize=(4 * len(ts), 4), squeeze=False)
    for ax, t in zip(axes[0], ts):
        for name, res in results.items():
            c = res["curves"][f"{t:.1f}"]
            ap = res["AP"][f"{t:.1f}"]
            rec = [0.0] + list(c["recall"])
            prec = [1.0 if c["precision"] else 0.0] + list(c["precision"])
            ax.plot(rec, prec, label=f"{name} ({_pct(ap)})")
        ax.set_title(f"AP^p at {t:.1f}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    try:
        fig.savefig(path, dpi=100)
    except OSError as err:
        raise OutputFileError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        plt.close(fig)
    return path


def write_gt_as_predictions(data_root: str | os.PathLike, split: str, out: str | os.PathLike,
                            progress: bool = False, overwrite: bool = False,
                            keep_apart: Sequence[str | os.PathLike] = ()) -> Path:
    """Write a split's ground truth as a predictions folder (score 1, the persons' maps,
    global_seg = the global label with ignored pixels as background, global_tag); evaluating it
    gives AP 1 at every threshold.

    ``out`` must not be, lie inside or hold the data root or a folder of ``keep_apart`` (the
    predictions folders evaluated in the same call); an existing non-empty ``out`` is refused
    unless ``overwrite`` (then replaced wholly, if it holds nothing but a predictions folder's
    entries). PredictionsError otherwise, before anything is written."""
    check_apart(out, data_root, "the data root", PredictionsError)
    for folder in keep_apart:
        check_apart(out, folder, "the predictions folder", PredictionsError)
    dataset = GPSDataset(data_root, split)
    prepare_output_folder(out, FOLDER_ENTRIES, "predictions folder", overwrite, PredictionsError)
    bar = Progress(len(dataset.ids), "writing ground truth as predictions", enabled=progress)
    with PredictionWriter(out, write_tags=True) as writer:
        for image_id in dataset.ids:
            s = dataset.load(image_id)
            keep = [lab for lab in s.person_labels if lab.any()]
            masks = [np.where(lab < NUM_CLASSES, lab, 0).astype(np.uint8) for lab in keep]
            glob = np.where(s.global_label < NUM_CLASSES, s.global_label, 0).astype(np.uint8)
            writer.add(image_id, [1.0] * len(masks), masks, glob)
            bar.update()
    bar.close()
    return Path(out)

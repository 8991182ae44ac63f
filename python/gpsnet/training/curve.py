"""The learning curve of a run (``--eval-every``): the test net, sharing the training net's weights,
evaluated on a split every N iterations into ``curve.json`` / ``curve.png``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gpsnet.nets.config import NetConfig
from gpsnet.safeio import atomic_write_text
from gpsnet.plotlog import plot_curve


class LearningCurve:
    """Evaluates the training net's current weights on a split (the variant's test net shares
    them) and keeps ``curve.json`` / ``curve.png`` in the run folder."""

    def __init__(self, solver_net: Any, variant: str, cfg: NetConfig, test_net_text: str,
                 root: Path, split: str, limit: int, out: Path, gpu: int | None = None,
                 other_weights: tuple[Path, ...] = ()) -> None:
        from gpsnet.infer import Predictor
        # the same mode as the solver: Predictor sets Caffe's (process-wide) mode, and a CPU-mode
        # predictor would switch a GPU run's later solver steps to the CPU
        self.predictor = Predictor(variant, None, cfg, net_text_override=test_net_text, gpu=gpu)
        for path in other_weights:   # a stage's run: the test net's layers of the other stages
            self.predictor.net.copy_from(str(path))
        self.predictor.net.share_with(solver_net)
        self.root, self.split, self.limit, self.out = root, split, limit, out
        self.rows: list[dict[str, Any]] = []

    def __call__(self, it: int) -> dict[str, Any]:
        from gpsnet.evaluate_net import evaluate_predictor
        t0 = time.time()
        res = evaluate_predictor(self.predictor, self.root, self.split, self.limit)
        row = {"iter": it, "split": self.split, "AP50": res["AP"]["0.5"], "avg_AP": res["avg_AP"],
               "PCP": res["PCP"], "mIoU": res["mIoU"], "box_recall": res["box_recall"],
               "images": res["num_images"], "seconds": round(time.time() - t0, 2)}
        self.rows.append(row)
        atomic_write_text(self.out / "curve.json", json.dumps(self.rows, indent=1) + "\n")
        plot_curve(self.rows, self.out / "curve.png")
        print(f"eval  {it:6d}  {self.split} ({row['images']} images): AP0.5 {100 * row['AP50']:.1f}  "
              f"avg.AP {100 * row['avg_AP']:.1f}  box recall {100 * row['box_recall']:.1f}"
              + (f"  mIoU {100 * row['mIoU']:.1f}" if row["mIoU"] is not None else "")
              + f"  ({row['seconds']:.0f}s)", flush=True)
        return row

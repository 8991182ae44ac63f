"""The run folder's plots: the loss curves of ``log.jsonl`` (``loss.png``) and the learning curve
(``curve.png``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot_log(log_path: Path, png: Path) -> None:
    """Loss curves (every loss and the total) of a log.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = [k for k in rows[-1] if k.startswith("loss") or k == "total"]
    fig, ax = plt.subplots(figsize=(8, 5))
    its = [r["iter"] for r in rows]
    for k in keys:
        vals = [r.get(k, float("nan")) for r in rows]
        w = max(1, len(vals) // 50)
        smooth = [sum(vals[max(0, i - w + 1):i + 1]) / len(vals[max(0, i - w + 1):i + 1]) for i in range(len(vals))]
        ax.plot(its, smooth, label=k, linewidth=2 if k == "total" else 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (moving average)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_curve(rows: list[dict[str, Any]], png: Path) -> None:
    """The learning curve: AP^p at 0.5, avg.AP and box recall (%) against iterations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    its = [r["iter"] for r in rows]
    for key, label in (("AP50", "AP$^p$ at 0.5"), ("avg_AP", "avg.AP"), ("mIoU", "global mIoU"),
                       ("box_recall", "person box recall (IoU 0.5)")):
        vals = [100 * r[key] if r.get(key) is not None else float("nan") for r in rows]
        ax.plot(its, vals, marker="o", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    split = rows[-1].get("split", "val") if rows else "val"
    ax.set_title(f"learning curve on the {split} split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)

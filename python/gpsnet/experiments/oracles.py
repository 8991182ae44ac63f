"""What the nets' representations can reach at all (docs/learning.md, section 1).

``scripts/learning_oracles [--sizes 128 192 256] [--num 100]`` generates synthetic sets and scores,
with the MHP evaluator on val + test, the ground truth pushed through
* the P x P frame: mask targets by the ground-truth box, then the paste-back (P = 21, 28);
* stride-s logits: each class's indicator area-averaged over s x s and sampled at the cell
  positions (pixel index s k), bilinearly up-sampled, arg-max (s = 2, 4, 8).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from gpsnet.classes import IGNORE_LABEL, NUM_CLASSES
from gpsnet.data.layout import load_sample, read_split
from gpsnet.detection.targets import mask_targets
from gpsnet.eval.metrics import InstanceAccumulator
from gpsnet.geometry import paste, to_net, upsample_cells


def through_frame(person: np.ndarray, box: np.ndarray, pooled: int) -> np.ndarray:
    net_box = to_net(box)
    t = mask_targets(np.concatenate([[0], net_box])[None], np.zeros(1), person[None], pooled)[0]
    t = np.where(t == IGNORE_LABEL, 0, t).astype(np.int64)
    return paste(np.eye(NUM_CLASSES, dtype=np.float32)[t].transpose(2, 0, 1), net_box, *person.shape)


def through_stride(person: np.ndarray, stride: int) -> np.ndarray:
    h, w = person.shape
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[np.where(person == IGNORE_LABEL, 0, person)]
    blurred = cv2.blur(onehot, (stride, stride)) if stride > 1 else onehot
    cells = np.ascontiguousarray(blurred[::stride, ::stride].transpose(2, 0, 1))
    return upsample_cells(cells, h, w, stride).argmax(0).astype(np.uint8)


def score(root: Path, make) -> dict:
    acc = InstanceAccumulator()
    for image_id in read_split(root, "val") + read_split(root, "test"):
        s = load_sample(root, image_id)
        keep = [i for i in range(s.num_persons) if s.person_labels[i].any()]
        preds = [make(s.person_labels[i], s.person_boxes[i]) for i in keep]
        acc.add(np.linspace(1.0, 0.5, len(keep)), preds, s.person_labels)
    return acc.summary()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256])
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("out/oracles"))
    args = ap.parse_args(argv)
    from gpsnet.data.synthetic import generate_dataset
    print("size  representation        AP0.5  AP0.6  AP0.7  avg.AP")
    for size in args.sizes:
        root = args.out / f"synthetic-{size}px-{args.num}"
        if not (root / "lists" / "test.txt").is_file():
            generate_dataset(root, args.num, size=size, seed=0)
        rows = [(f"P x P frame, P = {p}", lambda m, b, p=p: through_frame(m, b, p)) for p in (21, 28)]
        rows += [(f"stride-{s} logits", lambda m, b, s=s: through_stride(m, s)) for s in (8, 4, 2)]
        for name, make in rows:
            r = score(root, make)
            print(f"{size:4d}  {name:22s} " + "  ".join(f"{100 * r['AP'][t]:5.1f}" for t in ("0.5", "0.6", "0.7"))
                  + f"  {100 * r['avg_AP']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`scripts/bench_data`: images/s of the synthetic generator and of `make_batch` on one core."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import cv2
import numpy as np

from gpsnet.data.batch import BatchParams, make_batch
from gpsnet.data.layout import GPSDataset
from gpsnet.data.synthetic import generate_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_data", description=__doc__)
    ap.add_argument("--num", type=int, default=40, help="images to generate (default 40)")
    ap.add_argument("--size", type=int, default=512, help="image size (default 512)")
    ap.add_argument("--canvas", type=int, default=513, help="data layer canvas, 8k + 1 (default 513)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="gps-bench-") as root:
        t0 = time.perf_counter()
        generate_dataset(root, args.num, args.size, args.seed, "mixed", (1, 0, 0))
        gen = args.num / (time.perf_counter() - t0)
        print(f"generator: {gen:.1f} images/s ({args.num} images, {args.size} x {args.size}, mixed, one core; goal >= 20)")
        params = BatchParams.from_dict({"root": root, "split": "train", "size": args.canvas})
        ds = GPSDataset(root, "train")
        rng = np.random.default_rng(args.seed)
        n = len(ds) - len(ds) % 2
        t0 = time.perf_counter()
        for i in range(0, n, 2):
            make_batch([ds[i], ds[i + 1]], params, rng)
        layer = n / (time.perf_counter() - t0)
        print(f"data layer (make_batch, scales {list(params.scales)}, mirror, canvas {args.canvas}, incl. "
              f"reading): {layer:.1f} images/s (one core; goal >= 30)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

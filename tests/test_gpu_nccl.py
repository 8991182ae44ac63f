"""Several-GPU training through pycaffe's NCCL (``gpsnet train --gpus``; docs/gpu.md, "Several GPUs").
These run only with a CUDA pycaffe built with NCCL on a machine with GPUs (the one-rank test on one
GPU, the two-rank test on two); elsewhere they are skipped, and docs/gpu.md says which have been run.
The CPU side of the same path (the processes, the data shard, the options): tests/test_ranks.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def gpus_with_nccl() -> int:
    """GPUs this pycaffe can train on with NCCL (0: a CPU_ONLY build, no NCCL, or no GPU)."""
    try:
        import caffe
    except ImportError:
        return 0
    from gpsnet.device import cuda_device_count, loaded_cudart
    cudart = loaded_cudart()
    if cudart is None or not caffe.has_nccl():
        return 0
    return cuda_device_count(cudart)


GPUS = gpus_with_nccl()


def train(tmp_path: Path, name: str, data_root: Path, *args: str) -> Path:
    out = tmp_path / name
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "gpsnet.cli", "train", "--setting", "tiny", "--data", str(data_root),
                          "--no-augment", "--display", "0", "--solver", "SGD", "--lr", "0.01", "--lr-policy", "step",
                          "--out", str(out), *args], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def params(model: Path) -> dict[str, list[np.ndarray]]:
    from gpsnet.weights import read_net_param
    net = read_net_param(model)
    return {layer.name: [np.array(b.data, dtype=np.float64) for b in layer.blobs] for layer in net.layer if layer.blobs}


def losses(run: Path) -> list[float]:
    import json
    return [json.loads(r)["total"] for r in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(GPUS < 1, reason="needs a CUDA pycaffe with NCCL and a GPU")
def test_one_rank_through_nccl_trains_as_one_gpu(tmp_path, data_root):
    """--gpus 0 (the NCCL path with one rank: the all-reduce of one gradient, divided by 1) gives the
    losses of --gpu 0: the first (the same weights and batch) to float rounding, the later ones
    closely (each process picks its own cuDNN algorithms, some of which add with atomics, and a
    rounding difference can move a near-tied proposal)."""
    plain = losses(train(tmp_path, "gpu", data_root, "--gpu", "0", "--iters", "4"))
    ranked = losses(train(tmp_path, "nccl", data_root, "--gpus", "0", "--iters", "4"))
    assert len(ranked) == len(plain) == 4
    np.testing.assert_allclose(ranked[0], plain[0], rtol=1e-4)
    np.testing.assert_allclose(ranked[1:], plain[1:], rtol=2e-2)


@pytest.mark.skipif(GPUS < 2, reason="needs a CUDA pycaffe with NCCL and two GPUs")
def test_two_ranks_update_as_one_process_with_the_doubled_batch(tmp_path, data_root):
    """Two ranks of batch 1 read the images one process of batch 2 reads (the shards deal out each
    epoch's order) and average their gradients: one SGD step moves the weights as that process's
    step does (up to the per-batch normalisation of the losses and the BatchNorm statistics)."""
    init = train(tmp_path, "init", data_root, "--gpu", "0", "--iters", "0")
    start = str(next((init / "snapshots").glob("*.caffemodel")))
    single = train(tmp_path, "single", data_root, "--gpu", "0", "--iters", "1", "--weights", start,
                   "--set", "batch_size=2")
    double = train(tmp_path, "ranks", data_root, "--gpus", "0,1", "--iters", "1", "--weights", start,
                   "--set", "batch_size=1")
    w0 = params(Path(start))
    w1 = params(next((single / "snapshots").glob("*_iter_1.caffemodel")))
    w2 = params(next((double / "snapshots").glob("*_iter_1.caffemodel")))
    d1 = np.concatenate([(a - b).ravel() for k in w0 for a, b in zip(w1[k], w0[k])])
    d2 = np.concatenate([(a - b).ravel() for k in w0 for a, b in zip(w2[k], w0[k])])
    cosine = float(d1 @ d2 / (np.linalg.norm(d1) * np.linalg.norm(d2)))
    assert cosine > 0.95, cosine
    assert 0.8 < np.linalg.norm(d2) / np.linalg.norm(d1) < 1.25

"""A Caffe training net's time: whole solver steps (forward + backward + update) and forward /
backward one layer at a time, summed by layer kind (Caffe's C++/CUDA layers vs the pycaffe Python
layers), its learnable parameters' shapes and its GEMM FLOPs. Used by scripts/gpu/profile_train.py
and scripts/bench_train (docs/gpu.md, docs/benchmarks.md)."""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from gpsnet.bench import median

Sync = Callable[[], object]


def make_solver(caffe: Any, variant: str, cfg: Any, schedule: Any, work: Path, data: Path | None = None,
                num: int = 40, stage: str | None = None) -> tuple[Any, Path, float]:
    """The variant's train net and solver as ``gpsnet train`` builds them, on ``data`` (default: a
    synthetic set of ``num`` images in the cache), written under ``work``. Returns (solver, data
    root, seconds to set the solver up)."""
    from gpsnet.nets.solver import solver_text
    from gpsnet.nets.prototxt import net_param_text
    from gpsnet.train import ensure_synthetic
    from gpsnet.training.patch import patch_data_layer
    root = ensure_synthetic(data, cfg.size - 1, num, 0)
    work.mkdir(parents=True, exist_ok=True)
    net_path = work / "train.prototxt"
    net_path.write_text(patch_data_layer(net_param_text(variant, cfg, True, None, stage), root.resolve(), 0))
    solver_path = work / "solver.prototxt"
    solver_path.write_text(solver_text(str(net_path), str(work / "snap"), schedule, max_iter=10 ** 6,
                                       snapshot=0, seed=0))
    caffe.set_random_seed(0)
    t0 = time.time()
    solver = caffe.get_solver(str(solver_path))
    return solver, root, time.time() - t0


def default_work(tag: str) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"{tag}-{os.getpid()}"


def step_times(solver: Any, warmup: int, iters: int, sync: Sync) -> list[float]:
    """Seconds of each of ``iters`` ``solver.step(1)`` after ``warmup`` untimed ones (``sync``
    waits for the device after each)."""
    for _ in range(warmup):
        solver.step(1)
    sync()
    steps = []
    for _ in range(iters):
        t0 = time.perf_counter()
        solver.step(1)
        sync()
        steps.append(time.perf_counter() - t0)
    return steps


def step_summary(steps: list[float]) -> dict[str, float | None]:
    return {"step_ms_median": 1000 * median(steps) if steps else None,
            "step_ms_mean": 1000 * sum(steps) / len(steps) if steps else None,
            "iters_per_s": len(steps) / sum(steps) if steps else None}


def layer_profile(net: Any, iters: int, sync: Sync) -> dict[str, Any]:
    """``iters`` passes of forward and backward one layer at a time (``net._forward(i, i)`` /
    ``net._backward(i, i)``, ``sync`` after each layer; no solver update): each layer's mean
    milliseconds, their sum by kind (a Python layer by its own name), and the totals."""
    names = list(net._layer_names)
    fwd: dict[int, float] = defaultdict(float)
    bwd: dict[int, float] = defaultdict(float)
    n = len(names)
    for _ in range(iters):
        for i in range(n):
            t0 = time.perf_counter()
            net._forward(i, i)
            sync()
            fwd[i] += time.perf_counter() - t0
        for i in reversed(range(n)):
            t0 = time.perf_counter()
            net._backward(i, i)
            sync()
            bwd[i] += time.perf_counter() - t0
    k = max(iters, 1)
    layers = [{"name": names[i], "type": net.layers[i].type, "forward_ms": 1000 * fwd[i] / k,
               "backward_ms": 1000 * bwd[i] / k} for i in range(n)]
    by_kind: dict[str, float] = defaultdict(float)
    for row in layers:
        kind = f"Python:{row['name']}" if row["type"] == "Python" else row["type"]
        by_kind[kind] += row["forward_ms"] + row["backward_ms"]
    py = sum(r["forward_ms"] + r["backward_ms"] for r in layers if r["type"] == "Python")
    total = sum(r["forward_ms"] + r["backward_ms"] for r in layers)
    return {"layerwise_ms": total, "python_layers_ms": py, "caffe_layers_ms": total - py,
            "by_kind_ms": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])), "layers": layers}


def net_layers(net_text: str) -> list[Any]:
    """The LayerParameters of a net's prototxt text."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    param = caffe_pb2.NetParameter()
    text_format.Merge(net_text, param)
    return list(param.layer)


def _followers(layers: list[Any]) -> dict[str, str]:
    """Layer -> the layer owning its params, for layers that only read another's (Caffe-shared) params."""
    owner: dict[str, str] = {}
    out = {}
    for layer in layers:
        for p in layer.param:
            if p.name:
                if p.name in owner:
                    out[layer.name] = owner[p.name]
                else:
                    owner[p.name] = layer.name
    return out


def param_shapes(net: Any, layers: list[Any]) -> dict[str, list[list[int]]]:
    """Each learnable layer's parameter shapes, keyed by the layer it belongs to: a Convolution's
    weight (and bias), with its BatchNorm's Scale (gamma, beta) under the convolution's name; an
    InnerProduct's weight and bias. BatchNorm's statistics (not learned) and the layers that only
    read another's shared params are left out."""
    followers = _followers(layers)
    types = {la.name: la.type for la in layers}
    out: dict[str, list[list[int]]] = {}
    for name, blobs in net.params.items():
        if types.get(name) == "BatchNorm" or name in followers:
            continue
        key = name[: -len("_scale")] if types.get(name) == "Scale" and name.endswith("_scale") else name
        out.setdefault(key, []).extend(list(b.data.shape) for b in blobs)
    return out


def geometry(layers: list[Any]) -> dict[str, list[int]]:
    """Each Convolution's [num_output, kernel, dilation, pad, stride] and Pooling's [kernel, stride,
    pad] (Caffe's defaults where unset: dilation and stride 1, pad 0)."""
    def first(values: Any, default: int) -> int:
        return int(values[0]) if len(values) else default
    out: dict[str, list[int]] = {}
    for la in layers:
        if la.type == "Convolution":
            c = la.convolution_param
            out[la.name] = [c.num_output, first(c.kernel_size, 1), first(c.dilation, 1), first(c.pad, 0),
                            first(c.stride, 1)]
        elif la.type == "Pooling":
            q = la.pooling_param
            out[la.name] = [q.kernel_size, q.stride, q.pad]
    return out


def gemm_flops(net: Any, layers: list[Any]) -> dict[str, dict[str, float]]:
    """Per Convolution / InnerProduct layer of the net's current shapes (after a forward): forward
    FLOPs (2 x outputs x inputs per output) and backward FLOPs (the weight gradient, and the input
    gradient unless the input is the data layer's), keyed by the layer owning the params; a layer
    that only reads shared params (the train nets' detection branch: no backward, docs/nets.md)
    counts its forward under its owner."""
    followers = _followers(layers)
    data_tops = set(layers[0].top) if layers and layers[0].type == "Python" and not layers[0].bottom else set()
    out: dict[str, dict[str, float]] = {}
    for la in layers:
        if la.type not in ("Convolution", "InnerProduct"):
            continue
        w = net.params[la.name][0].data
        per_output = int(w.size // w.shape[0])   # cin / group * kh * kw, or the inner product's K
        fwd = 2.0 * net.blobs[la.top[0]].data.size * per_output
        if la.name in followers:
            bwd = 0.0
        else:
            bwd = fwd if la.bottom[0] in data_tops else 2 * fwd
        row = out.setdefault(followers.get(la.name, la.name), {"forward": 0.0, "backward": 0.0})
        row["forward"] += fwd
        row["backward"] += bwd
    return out

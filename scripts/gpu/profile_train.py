"""Where a training iteration's time goes, on the GPU: ``python3 scripts/gpu/profile_train.py
--setting full --gpu 0 --out profile.json`` (scripts/gpu_run runs it; docs/gpu.md).

Builds the variant's train net and solver as ``gpsnet train`` does, runs ``--warmup`` solver steps,
times ``--iters`` whole steps (``solver.step(1)``, the CUDA device synchronized after each), then
``--layer-iters`` passes of forward and backward one layer at a time (``net._forward(i, i)`` /
``net._backward(i, i)``, synchronized after each layer), and sums the layers by kind: Caffe's C++/CUDA
layers vs the pycaffe Python layers (data, anchor/proposal/mask targets, ...). The per-layer pass
lacks the solver's update (the difference to the whole step). GPU memory: nvidia-smi's reading.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="ad_fuse")
    ap.add_argument("--stage", help="a stage's train net (det_par: det, par; ins_glo: glo, ins)")
    ap.add_argument("--setting", default="full", choices=("full", "small", "tiny"))
    ap.add_argument("--data", type=Path, help="GPS-layout root (default: synthetic, --num images)")
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--gpu", type=int)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--layer-iters", type=int, default=10)
    ap.add_argument("--solver", default="SGD")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--out", type=Path, required=True, help="JSON result")
    args = ap.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from gpsnet.device import loaded_cudart, use_device
    from gpsnet.nets.config import setting
    from gpsnet.nets.solver import Schedule, solver_text
    from gpsnet.train import close_net, ensure_synthetic, net_param_text, patch_data_layer
    use_device(caffe, args.gpu)
    cudart = ctypes.CDLL(loaded_cudart()) if args.gpu is not None else None
    sync = (lambda: cudart.cudaDeviceSynchronize()) if cudart is not None else (lambda: None)
    cfg = setting(args.setting)
    root = ensure_synthetic(args.data, cfg.size - 1, args.num, 0)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"profile-{args.setting}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    net_path = work / "train.prototxt"
    net_path.write_text(patch_data_layer(net_param_text(args.variant, cfg, True, None, args.stage),
                                         root.resolve(), 0))
    solver_path = work / "solver.prototxt"
    solver_path.write_text(solver_text(str(net_path), str(work / "snap"), Schedule(args.solver, args.lr, "step"),
                                       max_iter=10 ** 6, snapshot=0, seed=0))
    caffe.set_random_seed(0)
    t0 = time.time()
    solver = caffe.get_solver(str(solver_path))
    t_setup = time.time() - t0
    net = solver.net
    for _ in range(args.warmup):
        solver.step(1)
    sync()
    steps = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        solver.step(1)
        sync()
        steps.append(time.perf_counter() - t0)
    names = list(net._layer_names)
    kinds = []
    for name, layer in zip(names, net.layers):
        kinds.append(f"Python:{name}" if layer.type == "Python" else layer.type)
    fwd = defaultdict(float)
    bwd = defaultdict(float)
    n = len(names)
    for _ in range(args.layer_iters):
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
    k = max(args.layer_iters, 1)
    layers = [{"name": names[i], "type": net.layers[i].type, "forward_ms": 1000 * fwd[i] / k,
               "backward_ms": 1000 * bwd[i] / k} for i in range(n)]
    by_kind: dict[str, float] = defaultdict(float)
    for row, kind in zip(layers, kinds):
        by_kind[kind] += row["forward_ms"] + row["backward_ms"]
    py = sum(r["forward_ms"] + r["backward_ms"] for r in layers if r["type"] == "Python")
    total_layers = sum(r["forward_ms"] + r["backward_ms"] for r in layers)
    smi = ""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.used,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    steps.sort()
    res = {"variant": args.variant, "setting": args.setting, "gpu": args.gpu, "data": str(root),
           "batch_size": cfg.batch_size, "canvas": cfg.size, "solver_setup_s": round(t_setup, 2),
           "step_ms_median": 1000 * steps[len(steps) // 2] if steps else None,
           "step_ms_mean": 1000 * sum(steps) / len(steps) if steps else None,
           "iters_per_s": len(steps) / sum(steps) if steps else None,
           "layerwise_ms": total_layers, "python_layers_ms": py, "caffe_layers_ms": total_layers - py,
           "by_kind_ms": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])), "nvidia_smi": smi,
           "layers": layers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{args.variant} ({args.setting}, canvas {cfg.size}, batch {cfg.batch_size}) on "
          f"{'GPU %d' % args.gpu if args.gpu is not None else 'CPU'}: step {res['step_ms_median']:.1f} ms median "
          f"({res['iters_per_s']:.2f} it/s over {len(steps)}); layer by layer {total_layers:.1f} ms: "
          f"Caffe layers {total_layers - py:.1f} ms, Python layers {py:.1f} ms; GPU: {smi}")
    for kind, ms in list(res["by_kind_ms"].items())[:12]:
        print(f"  {kind:40s} {ms:8.2f} ms")
    close_net(net)   # the data layer's prefetch thread stops now, not in the interpreter's teardown
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

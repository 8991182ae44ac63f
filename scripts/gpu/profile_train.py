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
    from gpsnet.bench.caffe_profile import default_work, layer_profile, make_solver, step_summary, step_times
    from gpsnet.device import loaded_cudart, use_device
    from gpsnet.nets.config import setting
    from gpsnet.nets.solver import Schedule
    from gpsnet.layers.state import close_net
    use_device(caffe, args.gpu)
    cudart = ctypes.CDLL(loaded_cudart()) if args.gpu is not None else None
    sync = (lambda: cudart.cudaDeviceSynchronize()) if cudart is not None else (lambda: None)
    cfg = setting(args.setting)
    solver, root, t_setup = make_solver(caffe, args.variant, cfg, Schedule(args.solver, args.lr, "step"),
                                        default_work(f"profile-{args.setting}"), args.data, args.num, args.stage)
    net = solver.net
    steps = step_times(solver, args.warmup, args.iters, sync)
    prof = layer_profile(net, args.layer_iters, sync)
    layers, py, total_layers = prof["layers"], prof["python_layers_ms"], prof["layerwise_ms"]
    smi = ""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.used,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    res = {"variant": args.variant, "setting": args.setting, "gpu": args.gpu, "data": str(root),
           "batch_size": cfg.batch_size, "canvas": cfg.size, "solver_setup_s": round(t_setup, 2),
           **step_summary(steps), "layerwise_ms": total_layers, "python_layers_ms": py,
           "caffe_layers_ms": total_layers - py, "by_kind_ms": prof["by_kind_ms"], "nvidia_smi": smi,
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

"""scripts/bench_train: one GPSNet (Ad. Fuse) training step, Caffe beside its PyTorch twin, in one run
(docs/benchmarks.md).

    scripts/bench_train [--setting small|full|tiny] [--steps 30] [--warmup 5] [--threads N]
                        [--device cpu|cuda] [--gpu 0] [--torch-python PYTHON] [--json out.json]

Caffe (pycaffe, this process) runs ``--warmup`` then ``--steps`` solver steps (forward + backward +
update, the setting's solver), then ``--layer-iters`` passes layer by layer for its time by layer
kind; the twin (``gpsnet.bench.twin``, in the interpreter that has torch) the same counts of steps,
with as many RoIs as the Caffe net's last step. Both use ``--threads`` CPU threads (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS for Caffe and NumPy; torch.set_num_threads for the twin). The
GEMM bound: the step's conv + fc FLOPs (forward and backward) at the SGEMM rate NumPy measures at a
conv-like shape (``GEMM_SHAPE``). Exit status 1 when the twin's parameter shapes differ from the
Caffe net's (a layer of the twin off), 2 when no interpreter with torch is found, 3 when the twin
failed (Caffe's table is printed all the same). Caffe's half is printed and written to ``--json``
(``"partial": true``) as soon as it is measured, before the twin runs."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpsnet.bench import GEMM_SHAPE   # imports nothing: the thread counts are set before NumPy loads
from gpsnet.threads import thread_env  # (standard library only)

ROOT = Path(__file__).resolve().parents[3]
INSTALL_TORCH = (
    "PyTorch is a benchmark extra, not a dependency of the project (docs/benchmarks.md). Install it:\n"
    "  Debian 12 (CPU):  scripts/install_system_deps --bench   (apt: python3-torch python3-torchvision,\n"
    "                    for the system python3, /usr/bin/python3)\n"
    "  any machine:      a Python with torch (and torchvision) given as --torch-python PYTHON\n"
    "or run Caffe alone with --no-twin.")


def torch_candidates(given: str | None) -> list[str]:
    if given:
        return [given]
    out = [sys.executable]
    system = shutil.which("python3", path="/usr/bin")
    if system and system not in out:
        out.append(system)
    return out


def find_torch_python(given: str | None) -> str | None:
    """The first interpreter (``--torch-python``, else this one, else /usr/bin/python3) that imports torch."""
    for py in torch_candidates(given):
        try:
            ok = subprocess.run([py, "-c", "import torch"], capture_output=True, timeout=120,
                                env=twin_env(os.environ)).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return py
    return None


TWIN_LIBRARY_PATH = "GPSNET_TWIN_LD_LIBRARY_PATH"


def twin_env(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The twin's environment: only the project's python/ on its path (not the venv's packages), and
    where ``GPSNET_TWIN_LD_LIBRARY_PATH`` is set (scripts/gpu_run: the machine's library path before
    it put Caffe's pack first) that library path, so that torch loads its own CUDA libraries."""
    out = dict(env)
    out["PYTHONPATH"] = str(ROOT / "python")
    out.pop("PYTHONHOME", None)
    if TWIN_LIBRARY_PATH in out:
        saved = out.pop(TWIN_LIBRARY_PATH)
        if saved:
            out["LD_LIBRARY_PATH"] = saved
        else:
            out.pop("LD_LIBRARY_PATH", None)
    return out


def visible_device(env: os._Environ[str] | dict[str, str], gpu: int) -> str:
    """``CUDA_VISIBLE_DEVICES`` for the twin: GPU ``gpu`` as Caffe numbers it, i.e. the gpu-th entry of
    a list the machine already set (ids, UUIDs or MIG instances), else ``gpu`` itself."""
    given = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not given:
        return str(gpu)
    if gpu >= len(given):
        raise SystemExit(f"bench_train: --gpu {gpu}, but CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} "
                         f"shows {len(given)} device(s)")
    return given[gpu]


def set_threads(threads: int) -> None:
    os.environ.update(thread_env(threads))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench_train", description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="small", help="small (default), full or tiny (the tests')")
    ap.add_argument("--steps", type=int, default=30, help="timed steps of each (median reported)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--layer-iters", type=int, default=5, help="Caffe's layer-by-layer passes (time by kind)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--gpu", type=int, default=0, help="with --device cuda: the GPU id")
    ap.add_argument("--tf32", action="store_true",
                    help="with --device cuda: TF32 math in both, Caffe's (GPSNET_TF32=1) and the twin's (default FP32)")
    ap.add_argument("--torch-python", help="the interpreter with torch (default: this one, else /usr/bin/python3)")
    ap.add_argument("--no-twin", action="store_true", help="Caffe alone (no torch needed)")
    ap.add_argument("--data", type=Path, help="GPS-layout root (default: a synthetic set of --num images)")
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.tf32 and args.device != "cuda":
        ap.error("--tf32 needs --device cuda (TF32 is a GPU math mode)")
    if args.setting not in ("small", "full", "tiny"):
        ap.error(f"--setting {args.setting}: choose small, full or tiny")
    for name in ("steps", "warmup", "layer_iters", "threads", "num"):
        if getattr(args, name) < (1 if name in ("steps", "threads", "num") else 0):
            ap.error(f"--{name.replace('_', '-')} must be >= {1 if name in ('steps', 'threads', 'num') else 0}")
    return args


def run_caffe(args: argparse.Namespace) -> dict[str, Any]:
    import ctypes

    import caffe
    import numpy as np

    from gpsnet.bench import gemm_gflops
    from gpsnet.bench.caffe_profile import (default_work, gemm_flops, geometry, layer_profile, make_solver,
                                            net_layers, param_shapes, step_summary, step_times)
    from gpsnet.device import loaded_cudart, use_device
    from gpsnet.nets.config import named_setting
    from gpsnet.layers.state import close_net
    from gpsnet.nets.prototxt import net_param_text
    setting = named_setting(args.setting)
    gpu = args.gpu if args.device == "cuda" else None
    use_device(caffe, gpu)
    cudart = ctypes.CDLL(loaded_cudart()) if gpu is not None else None
    sync = (lambda: cudart.cudaDeviceSynchronize()) if cudart is not None else (lambda: None)
    work = default_work(f"bench-train-{args.setting}")
    # the SGEMM rate first, before the net's threads run (beside them it measured half of this)
    m, n, k = GEMM_SHAPE
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    sgemm = gemm_gflops(lambda: a @ b)
    solver, root, setup_s = make_solver(caffe, "ad_fuse", setting.cfg, setting.schedule, work, args.data, args.num)
    net = solver.net
    steps = step_times(solver, args.warmup, args.steps, sync)
    prof = layer_profile(net, args.layer_iters, sync) if args.layer_iters else {}
    if not args.layer_iters:
        net.forward()
    layers = net_layers(net_param_text("ad_fuse", setting.cfg, True, None, None))
    counts = {k: int(net.blobs[k].data.shape[0]) for k in ("rois", "rpn_rois", "mask_rois")}
    res = {"steps_s": steps, **step_summary(steps), "solver_setup_s": setup_s, "data": str(root),
           "counts": counts, "param_shapes": param_shapes(net, layers), "geometry": geometry(layers), "gemm_flops": gemm_flops(net, layers),
           "numpy_sgemm_gflops": sgemm, "profile": prof}
    close_net(net)
    shutil.rmtree(work, ignore_errors=True)   # its prototxts (no snapshots)
    return res


def run_twin(args: argparse.Namespace, python: str, plan: dict[str, Any], work: Path) -> dict[str, Any]:
    plan_path, out = work / "plan.json", work / "twin.json"
    plan_path.write_text(json.dumps(plan))
    cmd = [python, "-m", "gpsnet.bench.twin", "--plan", str(plan_path), "--out", str(out), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device]
    if args.tf32:
        cmd.append("--tf32")
    env = twin_env(os.environ)
    if args.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = visible_device(os.environ, args.gpu)
    res = subprocess.run(cmd, env=env)
    if res.returncode != 0:
        raise SystemExit(f"bench_train: the PyTorch twin failed (exit {res.returncode}): {' '.join(cmd)} "
                         f"(its plan kept in {work})")
    result = json.loads(out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return result


def differences(what: str, caffe: dict[str, Any], twin: dict[str, Any]) -> list[str]:
    """Each key whose value differs between the Caffe net's ``caffe`` and the twin's ``twin`` (or that one lacks)."""
    out = []
    for name in sorted(set(caffe) | set(twin)):
        c, t = caffe.get(name), twin.get(name)
        if c != t:
            out.append(f"{what} of {name}: Caffe {c if c is not None else 'none'}, twin {t if t is not None else 'none'}")
    return out


def mismatches(caffe: dict[str, Any], twin: dict[str, Any]) -> list[str]:
    """Where the twin is not the Caffe net: parameter shapes, convolution and pooling geometry
    ([out, kernel, dilation, pad, stride] / [kernel, stride, pad]) and the conv / fc FLOPs of the
    same step (forward, backward; the same RoI counts)."""
    def rounded(flops: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
        return {k: (round(v["forward"]), round(v["backward"])) for k, v in flops.items()}
    return (differences("parameter shapes", caffe["param_shapes"], twin["param_shapes"])
            + differences("geometry", caffe["geometry"], twin["geometry"])
            + differences("FLOPs (forward, backward)", rounded(caffe["gemm_flops"]), rounded(twin["gemm_flops"])))


def part_sums(plan: dict[str, Any], shapes: dict[str, list[list[int]]],
              flops: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    from math import prod

    from gpsnet.bench.plan import by_part
    return {"params": by_part(plan, {k: float(sum(prod(s) for s in v)) for k, v in shapes.items()}),
            "gflop_fwd": by_part(plan, {k: v["forward"] / 1e9 for k, v in flops.items()}),
            "gflop_fwd_bwd": by_part(plan, {k: (v["forward"] + v["backward"]) / 1e9 for k, v in flops.items()})}


def report(args: argparse.Namespace, caffe_res: dict[str, Any], twin: dict[str, Any] | None,
           plan: dict[str, Any], found: list[str]) -> str:
    from gpsnet.bench.plan import PARTS
    from gpsnet.nets.config import setting as setting_cfg
    cfg = setting_cfg(args.setting)
    c_ms = caffe_res["step_ms_median"]
    cp = part_sums(plan, caffe_res["param_shapes"], caffe_res["gemm_flops"])
    total = sum(cp["gflop_fwd_bwd"].values())
    # the machine's SGEMM rate: the faster of NumPy's (OpenBLAS) and, where the twin ran, torch.mm
    gf = max(caffe_res["numpy_sgemm_gflops"], twin["sgemm_gflops"] if twin else 0.0)
    bound_ms = 1000 * total / gf
    dev = f"GPU {args.gpu}, {'TF32' if args.tf32 else 'FP32'} math in both nets" if args.device == "cuda" else "CPU"
    lines = [f"GPSNet Ad. Fuse train step, setting {args.setting} (canvas {cfg.size}, batch {cfg.batch_size}), "
             f"{dev}, {args.threads} threads; median of {args.steps} steps after {args.warmup} warm-up; "
             f"load average before {caffe_res['load_before']}, after {caffe_res['load_after']}",
             f"RoIs per step (the Caffe net's last): {caffe_res['counts']}", "",
             f"| {'net':34s} | step ms | x GEMM bound |", f"|{'-' * 36}|---------|--------------|",
             f"| {'Caffe (pycaffe)':34s} | {c_ms:7.1f} | {c_ms / bound_ms:12.2f} |"]
    prof = caffe_res["profile"]
    if prof:
        lines.append(f"| {'  Caffe, less its Python layers':34s} | {c_ms - prof['python_layers_ms']:7.1f} | "
                     f"{(c_ms - prof['python_layers_ms']) / bound_ms:12.2f} |")
    if twin is not None:
        t_ms = twin["step_ms_median"]
        name = f"PyTorch {twin['torch']} twin"
        lines.append(f"| {name:34s} | {t_ms:7.1f} | {t_ms / bound_ms:12.2f} |")
        lines += ["", f"Caffe / twin: {c_ms / t_ms:.2f}x"
                  + (f" (Caffe less its Python layers: {(c_ms - prof['python_layers_ms']) / t_ms:.2f}x)" if prof else "")
                  + f"; twin's RoIAlign: {twin['roi_align']}"
                  + (f", TF32 {'on' if twin['tf32'] else 'off'}" if args.device == "cuda" else "")]
    lines += ["", f"GEMM bound {bound_ms:.1f} ms: {total:.2f} GFLOP conv + fc per step (forward "
              f"{sum(cp['gflop_fwd'].values()):.2f}, backward the rest) at {gf:.0f} GFLOPS, the faster of "
              f"NumPy SGEMM ({caffe_res['numpy_sgemm_gflops']:.0f} GFLOPS)"
              + (f" and torch.mm ({twin['sgemm_gflops']:.0f} GFLOPS)" if twin else "")
              + f" on {'x'.join(map(str, GEMM_SHAPE))}, {args.threads} threads", ""]
    tp = part_sums(plan, twin["param_shapes"], twin["gemm_flops"]) if twin else None
    lines += ["| part | params Caffe | params twin | GFLOP fwd+bwd Caffe | GFLOP fwd+bwd twin |", "|---|---|---|---|---|"]
    for part in (*PARTS, "other"):
        if part == "other" and not cp["params"]["other"] and not (tp and tp["params"]["other"]):
            continue
        lines.append(f"| {part} | {cp['params'][part]:.0f} | {tp['params'][part]:.0f} | "
                     f"{cp['gflop_fwd_bwd'][part]:.3f} | {tp['gflop_fwd_bwd'][part]:.3f} |" if tp else
                     f"| {part} | {cp['params'][part]:.0f} | - | {cp['gflop_fwd_bwd'][part]:.3f} | - |")
    if found:
        lines += ["", "THE TWIN DIFFERS from the Caffe net:", *("  " + m for m in found)]
    elif twin is not None:
        lines += ["", f"the twin's {len(twin['param_shapes'])} learnable layers equal the Caffe net's in parameter "
                  f"shapes and FLOPs, its {len(twin['geometry'])} convs and pools in geometry"]
    if prof:
        lines += ["", f"Caffe by layer kind (forward + backward, layer by layer, {args.layer_iters} passes, "
                  f"ms; sum {prof['layerwise_ms']:.1f}, Python layers {prof['python_layers_ms']:.1f}):"]
        lines += [f"  {kind:40s} {ms:8.2f}" for kind, ms in list(prof["by_kind_ms"].items())[:16]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    python = None
    if not args.no_twin:
        python = find_torch_python(args.torch_python)
        if python is None:
            tried = ", ".join(torch_candidates(args.torch_python))
            print(f"bench_train: no interpreter with torch found (tried {tried}).\n{INSTALL_TORCH}", file=sys.stderr)
            return 2
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.device == "cuda":   # read once by libcaffe, when its GPU context is made (caffe/util/math_mode.hpp)
        os.environ["GPSNET_TF32"] = "1" if args.tf32 else "0"
    caffe_res = run_caffe(args)
    caffe_res["load_before"] = load_before
    from gpsnet.bench.caffe_profile import default_work
    from gpsnet.bench.plan import twin_plan
    from gpsnet.nets.config import named_setting
    setting = named_setting(args.setting)
    plan = twin_plan(setting.cfg, setting.schedule, caffe_res["counts"])

    def write_json(twin: dict[str, Any] | None, found: list[str], text: str | None, partial: bool) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"setting": args.setting, "device": args.device, "threads": args.threads,
                                             "caffe": caffe_res, "twin": twin, "plan": plan, "mismatches": found,
                                             "table": text, "partial": partial}, indent=1) + "\n")

    # Caffe's half kept at once: a twin that fails or a step killed by a time limit loses only the twin's.
    kinds = ", ".join(f"{k} {v:.1f}" for k, v in list(caffe_res["profile"].get("by_kind_ms", {}).items())[:5])
    print(f"bench_train: Caffe {caffe_res['step_ms_median']:.1f} ms per step (median of {args.steps}); "
          f"RoIs {caffe_res['counts']}" + (f"; by kind (ms): {kinds}" if kinds else ""), flush=True)
    write_json(None, [], None, python is not None)
    twin = None
    found: list[str] = []
    if python is not None:
        work = default_work("bench-train-twin")
        work.mkdir(parents=True, exist_ok=True)
        try:
            twin = run_twin(args, python, plan, work)
        except SystemExit as e:   # the message says how it failed; Caffe's table still follows
            print(e, file=sys.stderr)
        if twin is not None:
            twin["python"] = python
            found = mismatches(caffe_res, twin)
    caffe_res["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(args, caffe_res, twin, plan, found)
    print(text)
    write_json(twin, found, text, False)
    return 1 if found else 3 if python is not None and twin is None else 0


if __name__ == "__main__":
    raise SystemExit(main())

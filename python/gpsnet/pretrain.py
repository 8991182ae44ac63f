"""The project's own DeepLab-v2 start: ``gpsnet pretrain`` (docs/nets.md "Pretrained start", DESIGN.md 9).

The paper starts every net of Tables 2-3 from one DeepLab-v2 VGG-16 model (ImageNet, then DeepLab).
No such model can be fetched on this project's machines, so this command trains its stand-in: the
Feature Extraction + Global Parsing networks alone (VGG-16 DeepLab backbone and ASPP, the Ins.+Glo.
baseline's stage ``glo``, whose net is exactly that) on generated data drawn with seeds of its own
(``PRETRAIN_DATA_SEED`` and up), disjoint from every set the demo, the tests and the ablation
evaluate on. Its output is written with DeepLab-v2's layer names (``conv1_1`` ... ``conv5_3``,
``fc6_i`` / ``fc7_i`` / ``fc8_i``, and in the small setting the ``*_bn`` / ``*_scale`` layers), so
``gpsnet init-weights --source`` maps it onto every variant as it maps a real DeepLab-v2 model.

    gpsnet pretrain --setting small --iters 4000 --out runs/pretrain-small

writes ``<out>/run/`` (the training run: log.jsonl, loss.png, curve.json/png with the val mIoU,
snapshots) and ``<out>/deeplab_<setting>.caffemodel``. Run the same command again to continue an
interrupted run from its last snapshot (``--snapshot-every``); a finished run is only exported again.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpsnet import train
from gpsnet.nets.config import SETTINGS, setting
from gpsnet.nets.prototxt import REPO_ROOT, snapshot_name
from gpsnet.nets.solver import CPU_SCHEDULE
from gpsnet.nets.variants import GLOBAL_NET_PREFIX
from gpsnet.safeio import atomic_write_bytes, atomic_write_text
from gpsnet.weights import file_sha1

# The pretraining's data seeds: the generator draws image i of seed s from rng([s, i]); the sets
# that are evaluated use seeds 0-99 (demo 0, ablation --data-seed 0, tests < 100), so seeds from
# here on are the pretraining's own.
PRETRAIN_DATA_SEED = 1000
PRETRAIN_NUM = 1800             # images (split 3:1:1: 1080 train, 360 val for the curve)
PRETRAIN_ITERS = 4000
PRETRAIN_SNAPSHOT_EVERY = 500
PRETRAIN_EVAL_EVERY = 1000
PRETRAIN_EVAL_LIMIT = 40
COMMIT_FILE = "commit.txt"      # in the run folder: the code's commit when the training started
VARIANT, STAGE = "ins_glo", "glo"   # the net that is backbone + ASPP + global loss, and nothing else


def model_name(setting_name: str) -> str:
    return f"deeplab_{setting_name}.caffemodel"


def committed_model(setting_name: str) -> Path:
    """Where the repository keeps the pretrained start of a setting (models/<name>/, with its card)."""
    return REPO_ROOT / "models" / Path(model_name(setting_name)).stem / model_name(setting_name)


def start_weights(source: Path, variant: str, setting_name: str, folder: Path, classes: bool = True,
                  overrides: list[str] | None = None) -> Path:
    """``variant``'s initial weights from the DeepLab-v2 model ``source`` (``init-weights``), written
    to ``folder/<variant>_init.caffemodel``; what a run's ``--weights`` then loads."""
    from gpsnet.nets.config import override
    from gpsnet.nets.init_weights import init_weights
    out = folder / f"{variant}_init.caffemodel"
    report: list[str] = []
    init_weights(source, variant, override(setting(setting_name), overrides), out, classes=classes,
                 log=report.append, overwrite=True)   # (the run's own file, made again)
    print(f"pretrained start: {variant} from {source} -> {out}: {report[-1]}", flush=True)
    return out




@dataclass(frozen=True)
class Exported:
    path: Path
    layers: list[str]
    sha1: str


def export_deeplab(stage_model: Path, out: Path, prefix: str = GLOBAL_NET_PREFIX) -> Exported:
    """Writes the ``prefix``-named layers of ``stage_model`` under their DeepLab-v2 names (prefix
    removed) to ``out`` (atomically; other layers dropped)."""
    from caffe.proto import caffe_pb2

    from gpsnet.weights import WeightsError, read_net_param
    src = read_net_param(stage_model)
    dst = caffe_pb2.NetParameter()
    dst.name = "deeplab_v2_vgg16_gpsnet_pretrain"
    names = []
    for layer in src.layer:
        if layer.name.startswith(prefix) and layer.blobs:
            new = dst.layer.add()
            new.CopyFrom(layer)
            new.name = layer.name[len(prefix):]
            del new.bottom[:]
            del new.top[:]
            names.append(new.name)
    if not names:
        raise WeightsError(f"{stage_model}: no layer named {prefix}* with weights (is it a stage "
                           f"{STAGE} model of {VARIANT}?)")
    atomic_write_bytes(out, dst.SerializeToString())
    return Exported(out, names, file_sha1(out))


def data_root(args: argparse.Namespace, size: int) -> Path:
    return train.ensure_synthetic(args.data, size, args.num, args.data_seed)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpsnet pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=SETTINGS, default="small", help="net setting (default small)")
    ap.add_argument("--iters", type=int, default=PRETRAIN_ITERS, help=f"iterations (default {PRETRAIN_ITERS})")
    ap.add_argument("--num", type=int, default=PRETRAIN_NUM,
                    help=f"generated images (default {PRETRAIN_NUM}, split 3:1:1)")
    ap.add_argument("--data-seed", type=int, default=PRETRAIN_DATA_SEED,
                    help=f"generator seed of those images (default {PRETRAIN_DATA_SEED}; must be >= "
                         f"{PRETRAIN_DATA_SEED}, disjoint from the evaluated sets)")
    ap.add_argument("--data", type=Path, help="a GPS-layout data set instead of the generated one")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default runs/pretrain-<setting>)")
    train.add_schedule_args(ap, CPU_SCHEDULE, "the CPU schedule")
    ap.add_argument("--snapshot-every", type=int, default=PRETRAIN_SNAPSHOT_EVERY,
                    help=f"snapshot period, the points a rerun continues from (default {PRETRAIN_SNAPSHOT_EVERY})")
    ap.add_argument("--eval-every", type=int, default=PRETRAIN_EVAL_EVERY,
                    help=f"learning curve (val mIoU) period (default {PRETRAIN_EVAL_EVERY}; 0: off)")
    ap.add_argument("--eval-limit", type=int, default=PRETRAIN_EVAL_LIMIT,
                    help=f"val images of each curve point (default {PRETRAIN_EVAL_LIMIT})")
    ap.add_argument("--seed", type=int, default=0, help="training seed (fillers, sampling)")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a run")
    args = ap.parse_args(argv)
    if args.data is None and args.data_seed < PRETRAIN_DATA_SEED:
        ap.error(f"--data-seed {args.data_seed}: seeds below {PRETRAIN_DATA_SEED} draw the evaluated sets "
                 "(the demo, the tests, the ablation); pretraining on them would leak test images")
    if args.iters < 1:
        ap.error(f"--iters {args.iters}: must be at least 1")
    for flag in ("num", "snapshot_every", "eval_every", "eval_limit"):
        if getattr(args, flag) < 0 or (flag == "num" and args.num < 5):
            ap.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: out of range")
    args.out = args.out or Path("runs") / f"pretrain-{args.setting}"
    return args


def pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Trains (or continues) the run in ``<out>/run`` and exports ``<out>/deeplab_<setting>.caffemodel``."""
    cfg = setting(args.setting)
    run = args.out / "run"
    root = data_root(args, cfg.size - 1)
    prefix = run / "snapshots" / snapshot_name(VARIANT, STAGE)
    final = train.snapshot_files(prefix, args.iters)[0]
    if final.is_file() and not args.overwrite:
        print(f"pretrain: trained before ({final}); exporting it", flush=True)
        rows = json.loads((run / "curve.json").read_text()) if (run / "curve.json").is_file() else []
    else:
        resume = (train.latest_state(prefix.parent, prefix.name)
                  if (run / "log.jsonl").is_file() and not args.overwrite else None)
        if resume:
            print(f"pretrain: continuing {resume}", flush=True)
        else:
            run.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run / COMMIT_FILE, _commit() + "\n")   # the code that trains it, for the card
        result = train.train(train.TrainOptions(
            variant=VARIANT, stage=STAGE, setting=args.setting, data=root, iters=args.iters, out=run,
            seed=args.seed, snapshot_every=args.snapshot_every, eval_every=args.eval_every,
            eval_limit=args.eval_limit, gpu=args.gpu, overwrite=resume is None,   # no snapshot: start again
            resume=str(resume) if resume else None, display=50).with_schedule(train.schedule_of(args)))
        final, rows = Path(result["snapshot"]), result["curve"]
    out = export_deeplab(final, args.out / model_name(args.setting))
    miou = next((r["mIoU"] for r in reversed(rows) if r.get("mIoU") is not None), None)
    steps = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines() if r.strip()]
    summary = {"model": out.path.name, "sha1": out.sha1, "layers": len(out.layers), "setting": args.setting,
               "iters": args.iters, "data_seed": args.data_seed, "num": args.num,
               "data": "generated" if args.data is None else str(args.data),
               "schedule": " ".join(train.schedule_of(args).argv()), "seed": args.seed, "val_mIoU": miou,
               "curve": [{"iter": r["iter"], "mIoU": r["mIoU"]} for r in rows],
               "train_seconds": round(sum(r["time"] for r in steps)),
               "curve_seconds": round(sum(r.get("seconds", 0) for r in rows)),
               "eval_limit": args.eval_limit, "command": "gpsnet pretrain " + " ".join(getattr(args, "argv", [])),
               "commit": (run / COMMIT_FILE).read_text().strip() if (run / COMMIT_FILE).is_file() else _commit()}
    atomic_write_text(args.out / "pretrain.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(args.out / "readme.md", model_card(summary))
    print(f"pretrain: {out.path} ({len(out.layers)} layers, sha1 {out.sha1})"
          + (f", val mIoU {100 * miou:.1f}" if miou is not None else ""), flush=True)
    return summary


def _commit() -> str:
    """The code's commit (``+dirty`` with uncommitted changes), or ``unknown`` outside a git checkout."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def model_card(s: dict[str, Any]) -> str:
    """The model's card in the form of Caffe's model zoo (a readme.md with a YAML front matter)."""
    curve = ", ".join(f"{r['iter']}: {100 * r['mIoU']:.1f}" for r in s["curve"] if r["mIoU"] is not None)
    miou = f"{100 * s['val_mIoU']:.2f}" if s["val_mIoU"] is not None else "-"
    return f"""---
name: GPSNet-Caffe DeepLab-v2 VGG-16 start, {s['setting']} setting (synthetic pretraining)
caffemodel: {s['model']}
caffemodel_url: in this repository, beside this card
license: same as the GPSNet-Caffe code
sha1: {s['sha1']}
caffe_commit: 99bd997 (BVLC Caffe), the fork built by this repository at {s['commit']}
---

# {s['model']}

The project's stand-in for the paper's DeepLab-v2 ImageNet start (DESIGN.md section 9): the Feature
Extraction + Global Parsing networks (VGG-16 DeepLab backbone, ASPP with four branches, {s['layers']} layers
with weights, DeepLab-v2 layer names) trained alone on generated data, mapped onto every variant by
`gpsnet init-weights --source {s['model']}` (docs/nets.md "Pretrained start").

| field | value |
|---|---|
| command | `{s['command']}` |
| code commit | `{s['commit']}` |
| data | {s['data']}: {s['num']} images (split 3:1:1), generator seed {s['data_seed']} (the evaluated sets use seeds < 100) |
| schedule | {s['schedule']}, {s['iters']} iterations, batch 2, training seed {s['seed']} |
| wall time | {s['train_seconds']} s of training steps, {s['curve_seconds']} s of learning-curve evaluation |
| val mIoU (global parser, {s['eval_limit']} val images of its own set) | {miou} |
| learning curve (iteration: val mIoU %) | {curve or '-'} |
| sha1 | `{s['sha1']}` |
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        pretrain(args)
    except train.TrainingStopped as err:   # (its own hint is train's --resume; pretrain resumes by itself)
        print(f"gpsnet pretrain: {err.args[0]}" + (f"; log {err.log}" if err.log else "")
              + "; run the same command again to continue", file=sys.stderr)
        return err.rc
    except (OSError, ValueError) as err:   # bad files and options (named), a full disk (WriteFailed)
        print(f"gpsnet pretrain: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `gpsnet` entry point: `gpsnet <command> [args]` runs `<module>.main(args)` (`ALIASES`: other
names of a command).

Commands are imported lazily, so `gpsnet --help` works without pycaffe and each command only
imports what it needs.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gpsnet.demo", "synthetic data, train Ad. Fuse (small) on the CPU, learning curve, evaluate, draw"),
    "make-data": ("gpsnet.data.synthetic", "write a synthetic GPS-layout data set"),
    "convert": ("gpsnet.data.converters", "convert MHP v1 / MHP v2 / CIHP into the GPS layout"),
    "stats": ("gpsnet.data.stats", "persons-per-image and part-frequency plots of a data set"),
    "build-nets": ("gpsnet.nets.build_nets", "write the train/test prototxts of every variant"),
    "pretrain": ("gpsnet.pretrain", "train the project's DeepLab-v2 start (backbone + ASPP) on generated data"),
    "init-weights": ("gpsnet.nets.init_weights", "a variant's initial .caffemodel from ImageNet VGG-16 or DeepLab-v2 VGG-16"),
    "train": ("gpsnet.train", "run a solver (--variant, --data, --weights, --iters, --gpu)"),
    "infer": ("gpsnet.infer", "parse an image, a folder or a video with a trained net"),
    "eval": ("gpsnet.evaluate_net", "run a trained net over a split and print the paper's AP table"),
    "evaluate-predictions": ("gpsnet.eval.cli", "score predictions folders (gpsnet infer's) against a data set "
                                                "(alias: evaluate)"),
    "ablate": ("gpsnet.ablate", "train and evaluate every variant of Tables 2-3 (the ablation table)"),
    "plot-log": ("gpsnet.plotlog", "loss and learning curves (PNG, CSV) of gpsnet train's log.jsonl or a caffe train log"),
    "draw-net": ("gpsnet.drawnet", "draw a net prototxt (or every committed one) with Caffe's caffe.draw"),
    "docs-figures": ("gpsnet.docfigures", "regenerate docs/img's overlay, loss and curve figures from a trained model"),
}

# Other names of a command, kept for the users' scripts written with them.
ALIASES: dict[str, str] = {"evaluate": "evaluate-predictions"}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: gpsnet <command> [options]   (gpsnet <command> --help for its options)", "",
             "GPSNet group people segmentation in Caffe. Commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = ALIASES.get(args[0], args[0]), args[1:]
    if name not in COMMANDS:
        print(f"gpsnet: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Net drawings: ``gpsnet draw-net PROTOTXT [--out FILE]`` or ``gpsnet draw-net --committed --out DIR``.

Caffe's own drawing (``caffe.draw``, what Caffe's ``python/draw_net.py`` calls: pydot and graphviz's
``dot``, both installed by ``scripts/setup``), with one change for this project's nets: a Python layer
is labelled by its class (``AnchorTargetLayer``) instead of ``Python``. The format follows the output
suffix (``.svg``, ``.png``, ``.pdf``, ``.dot``, ...). ``--committed`` draws every net under
``prototxt/`` (the solvers excepted) into ``DIR``, mirroring its folders.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpsnet.nets.prototxt import read_net_prototxt

PHASES = ("ALL", "TRAIN", "TEST")
ROOT = Path(__file__).resolve().parents[2]


class DrawError(RuntimeError):
    """The drawing tools are missing or failed (the message says which and how to get them)."""


def committed_nets(root: Path = ROOT) -> list[Path]:
    """The committed net prototxts (train and test nets of every variant and setting)."""
    return sorted(p for p in (root / "prototxt").rglob("*.prototxt") if not p.name.startswith("solver"))


def net_param(path: Path) -> Any:
    """The ``NetParameter`` of a prototxt, Python layers renamed to their class for the drawing."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(read_net_prototxt(path), net)
    for layer in net.layer:
        if layer.type == "Python" and layer.python_param.layer:
            layer.type = layer.python_param.layer
    return net


def draw(path: Path, out: Path, rankdir: str = "TB", phase: str = "ALL") -> Path:
    """Draw the net of ``path`` into ``out`` (format by suffix) with Caffe's ``caffe.draw``."""
    try:
        import pydot  # noqa: F401  (caffe.draw needs it; said here, before Caffe's own ImportError)
        from caffe import draw as caffe_draw
        from caffe.proto import caffe_pb2
    except ImportError as err:
        raise DrawError(f"drawing needs pydot ({err}; scripts/setup installs it: pip install pydot)") from None
    net = net_param(path)
    fmt = out.suffix.lstrip(".") or "svg"
    which = None if phase == "ALL" else getattr(caffe_pb2, phase)
    graph = caffe_draw.get_pydot_graph(net, rankdir, which)
    try:
        data = graph.create(format=fmt) if fmt != "dot" else graph.to_string().encode()
    except FileNotFoundError as err:
        raise DrawError(f"graphviz's dot is not installed ({err}); scripts/install_system_deps installs "
                        "the Debian package graphviz") from None
    except Exception as err:   # pydot raises its own assertion / exception types for dot failures
        raise DrawError(f"{path}: dot could not draw it as {fmt} ({err})") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    from gpsnet.safeio import atomic_write_bytes
    atomic_write_bytes(out, data)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet draw-net", description=__doc__.splitlines()[0])
    ap.add_argument("prototxt", nargs="?", type=Path, help="a net prototxt")
    ap.add_argument("--committed", action="store_true", help="draw every committed net under prototxt/")
    ap.add_argument("--out", type=Path, help="output file (default: the prototxt's name .svg), with "
                                             "--committed a folder")
    ap.add_argument("--rankdir", default="TB", help="graphviz rankdir: TB (top to bottom), LR, BT, RL")
    ap.add_argument("--phase", choices=PHASES, default="ALL", help="draw the layers of one phase only")
    ap.add_argument("--format", default="svg", help="with --committed: the files' format (default svg)")
    args = ap.parse_args(argv)
    if args.committed == (args.prototxt is not None):
        ap.error("give a PROTOTXT or --committed")
    if args.committed and args.out is None:
        ap.error("--committed needs --out DIR")
    if args.committed:
        jobs = [(p, args.out / p.relative_to(ROOT / "prototxt").with_suffix("." + args.format))
                for p in committed_nets()]
    else:
        jobs = [(args.prototxt, args.out or Path(args.prototxt.stem + ".svg"))]
    try:
        for src, dst in jobs:
            print(f"{src} -> {draw(src, dst, args.rankdir, args.phase)}")
    except (DrawError, OSError, ValueError) as err:
        print(f"gpsnet draw-net: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

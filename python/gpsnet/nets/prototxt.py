"""A variant's prototxt text and file names: built (``net_text``), committed (under prototxt/), or the
user's ``--net``; the names of the train nets, solvers and snapshots of its stages."""
from __future__ import annotations

from pathlib import Path

from gpsnet.nets.config import NetConfig, committed_setting
from gpsnet.nets.variants import spec_of

REPO_ROOT = Path(__file__).resolve().parents[3]   # the committed prototxt/ lives here
NET_NAME_PREFIX = "gpsnet_"          # every net the builder writes begins `name: "gpsnet_<variant>_...`


def net_text(variant: str, cfg: NetConfig, train: bool, stage: str | None = None) -> str:
    """The prototxt text of a variant's net as ``gpsnet.nets.graphs.build`` makes it (needs pycaffe)."""
    from gpsnet.nets.graphs import build
    proto = build(variant, cfg, train, stage)
    proto.name = f"{NET_NAME_PREFIX}{variant}_{'train' if train else 'test'}" + (f"_{stage}" if stage else "")
    return str(proto)


DEPLOY_FILE = "deploy.prototxt"


def deploy_text(variant: str, cfg: NetConfig) -> str:
    """A variant's deploy net (docs/deploy.md): its test net, of C++ layers only (no Python layer
    module needed), named ``gpsnet_<variant>_deploy``; inputs ``data`` and ``im_info``."""
    from gpsnet.nets.graphs import build
    proto = build(variant, cfg, False)
    python = [layer.name for layer in proto.layer if layer.type == "Python"]
    if python:
        raise ValueError(f"variant {variant}: the deploy net would hold Python layers {python}")
    proto.name = f"{NET_NAME_PREFIX}{variant}_deploy"
    return str(proto)


def train_net_file(stage: str | None) -> str:
    """A variant's train prototxt's name in its folder (a stage's: ``train_<stage>.prototxt``)."""
    return f"train_{stage}.prototxt" if stage else "train.prototxt"


def solver_file(stage: str | None) -> str:
    return f"solver_{stage}.prototxt" if stage else "solver.prototxt"


def snapshot_name(variant: str, stage: str | None) -> str:
    """The snapshots' file-name prefix of a variant's (stage's) training."""
    return f"{variant}_{stage}" if stage else variant


def net_param_text(variant: str, cfg: NetConfig, train: bool, net: str | None = None,
                   stage: str | None = None) -> str:
    """The prototxt text: ``--net`` if given (checked: a NetParameter prototxt), the committed file
    when ``cfg`` is a setting with committed nets and the file exists, else the builder."""
    if net:
        return read_net_prototxt(Path(net))
    if stage is not None:
        spec_of(variant).stage(stage)   # (named when unknown)
    committed = committed_setting(cfg)
    if committed is not None:
        path = committed.variant_dir(REPO_ROOT / "prototxt", variant) / (train_net_file(stage) if train else "test.prototxt")
        if path.is_file():
            return path.read_text()
    return net_text(variant, cfg, train, stage)


def read_net_prototxt(path: Path, option: str = "--net") -> str:
    """A prototxt's text; ``ValueError`` naming the option and the file when it is not a readable NetParameter."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    try:
        text = path.read_text()
        text_format.Merge(text, caffe_pb2.NetParameter())
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{option} {path}: unreadable ({err})") from None
    except text_format.ParseError as err:
        raise ValueError(f"{option} {path}: not a Caffe net prototxt (NetParameter): {err}") from None
    return text

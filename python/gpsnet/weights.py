"""Checked loading of Caffe weights (``.caffemodel``) and solver states (``.solverstate``).

``load_weights(net, path)`` (``path`` may join several files by commas, as Caffe's ``-weights``)
reads each file as a ``NetParameter`` first: a missing, empty or
unparsable file, a file with no layer the net can take, or a blob whose shape differs from the
net's is a ``WeightsError`` (a ``ValueError``) naming the file, where pycaffe would load nothing
without a word, or abort. It prints which learnable layers were filled and which were left at
their fillers (a warning on stderr when some were).

Every model file loaded (``load_weights``, ``gpsnet init-weights``'s source) has its sha1 printed
(``model_sha1``) and compared with the known models: the model cards ``models/*.md``, each with Caffe's
Model Zoo front matter (``caffemodel:`` file name, ``sha1:``, ``name:``; ``known_models``). A file
whose sha1 is a card's is named; a file with a card's file name and another sha1 is named as a corrupt
or different download (a warning).

``python -m gpsnet.weights SPEC...`` checks ``-weights`` values that way for the Caffe tool
(``scripts/caffe_env``).

``resumable_state(path, ...)`` checks a ``--resume`` file: a ``.caffemodel`` is refused with a hint
(``--weights``); a solverstate whose stored ``learned_net`` path is gone (its run folder moved)
gets that path resolved beside the solverstate.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_SUFFIX = ".caffemodel"
STATE_SUFFIX = ".solverstate"
LISTED_NAMES = 8   # layer names shown in messages
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"   # the model cards (known_models)
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"   # Caffe's -weights also reads HDF5 files (H5Fis_hdf5)


class WeightsError(ValueError):
    """A weights or solver-state file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class WeightsReport:
    path: Path
    filled: list[str]   # the net's learnable layers given weights by the file
    left: list[str]     # the net's learnable layers left at their fillers


@dataclass(frozen=True)
class KnownModel:
    """A model card's front matter: the model's name, its file name and sha1 (None: not recorded)."""
    name: str
    caffemodel: str
    sha1: str | None
    card: Path


def known_models(folder: Path | None = None) -> list[KnownModel]:
    """The model cards ``folder/*.md`` and ``folder/<model>/readme.md`` (default ``MODELS_DIR``) with a front matter (``---`` lines around ``key: value`` lines,
    as Caffe's Model Zoo readme.md) naming a ``caffemodel``; a malformed ``sha1`` is a ``ValueError``."""
    folder = MODELS_DIR if folder is None else folder
    out = []
    for card in sorted([*folder.glob("*.md"), *folder.glob("*/readme.md")]) if folder.is_dir() else []:
        lines = card.read_text().splitlines()
        if not lines or lines[0].strip() != "---" or "---" not in [line.strip() for line in lines[1:]]:
            continue
        end = [line.strip() for line in lines[1:]].index("---") + 1
        meta = dict(line.split(":", 1) for line in lines[1:end] if ":" in line)
        meta = {k.strip(): v.strip() for k, v in meta.items()}
        if not meta.get("caffemodel"):
            continue
        sha1 = meta.get("sha1", "").lower() or None
        if sha1 is not None and not SHA1_RE.match(sha1):
            raise ValueError(f"{card}: sha1 {sha1!r} is not 40 hex digits")
        out.append(KnownModel(meta.get("name", meta["caffemodel"]), meta["caffemodel"], sha1, card))
    return out


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha1(path: str | Path, folder: Path | None = None, quiet: bool = False) -> str:
    """The sha1 of a model file, printed with what the model cards say of it: the card whose sha1 it
    is, or (a warning on stderr) the card of the same file name whose sha1 differs."""
    path = Path(path)
    sha1 = file_sha1(path)
    known = known_models(folder)
    same = [m for m in known if m.sha1 == sha1]
    named = [m for m in known if m.caffemodel == path.name and m.sha1 != sha1]
    if same:
        what = f"the known model {same[0].name} ({same[0].card.name})"
    elif named and named[0].sha1 is None:
        what = f"{named[0].card} records no sha1 for {named[0].caffemodel} yet"
    elif named:
        what = "unknown"
        m = named[0]
        print(f"warning: {path}: sha1 {sha1} is not the sha1 {m.sha1} of {m.caffemodel} ({m.name}, "
              f"{m.card}): a corrupt or different download", file=sys.stderr, flush=True)
    else:
        what = "not in the model cards"
    if not quiet:
        print(f"model {path}: sha1 {sha1} ({what})", flush=True)
    return sha1


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > LISTED_NAMES else "")


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    data = path.read_bytes()
    if not data:
        raise WeightsError(f"{path}: empty file (0 bytes), not a {what} file")
    return data


def read_net_param(path: str | Path) -> Any:
    """The ``NetParameter`` of a binary ``.caffemodel``; ``WeightsError`` when it is none."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    path = Path(path)
    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(_read(path, "weights"))
    except DecodeError as err:
        raise WeightsError(f"{path}: not a Caffe {WEIGHTS_SUFFIX} (does not parse as a NetParameter: "
                           f"{err})") from None
    if not any(layer.blobs for layer in [*param.layer, *param.layers]):
        raise WeightsError(f"{path}: not a Caffe {WEIGHTS_SUFFIX}: no layer with weights in it")
    return param


def _blob_shape(blob: Any) -> tuple[int, ...]:
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)   # legacy 4-D blobs


def _same_shape(saved: tuple[int, ...], net: tuple[int, ...]) -> bool:
    if saved == net:
        return True
    # Caffe's ShapeEquals for a legacy blob: the net's shape padded to 4 axes on the left.
    return len(saved) == 4 and len(net) <= 4 and saved == (1,) * (4 - len(net)) + net


def _blob_address(blob: Any) -> int:
    return blob.data.__array_interface__["data"][0]


def owned_params(net: Any) -> dict[str, list[Any]]:
    """``net.params`` without the layers that only read another layer's params (Caffe's sharing by
    ``param { name: ... }``: the blobs of such a layer are the owner's, same memory), i.e. the
    layers whose blobs are Caffe's learnable params (the solver's history has one entry per blob)."""
    seen: set[int] = set()
    out: dict[str, list[Any]] = {}
    for name, blobs in net.params.items():
        addresses = [_blob_address(b) for b in blobs if b.count]
        if addresses and all(a in seen for a in addresses):
            continue
        seen.update(addresses)
        out[name] = list(blobs)
    return out


def weight_files(spec: str | Path) -> list[Path]:
    """The files of a ``--weights`` value: one path, or several joined by commas (Caffe's
    ``-weights a.caffemodel,b.caffemodel``: copied in turn, a later file's layers replacing an
    earlier one's)."""
    files = [Path(part) for part in str(spec).split(",") if part.strip()]
    if not files:
        raise WeightsError(f"--weights {spec!r}: no file named")
    return files


def load_weights(net: Any, path: str | Path, quiet: bool = False) -> WeightsReport:
    """Copy a ``.caffemodel`` (or several: ``weight_files``) into ``net`` by layer name, checked
    (see the module docstring). A layer sharing another's params is filled with its owner (not
    counted, never "left")."""
    files = weight_files(path)
    learnable = list(owned_params(net).keys())
    filled_any: set[str] = set()
    for one in files:
        param = read_net_param(one)
        saved = {layer.name: [_blob_shape(b) for b in layer.blobs]
                 for layer in [*param.layer, *param.layers] if layer.blobs}
        filled = [name for name in learnable if name in saved]
        if not filled:
            raise WeightsError(f"{one}: none of the net's {len(learnable)} learnable layers has weights in "
                               f"this file (weights of another net? its layers: {_names(sorted(saved))})")
        for name in filled:
            shapes = [tuple(b.data.shape) for b in net.params[name]]
            if len(shapes) != len(saved[name]) or not all(map(_same_shape, saved[name], shapes)):
                raise WeightsError(f"{one}: layer {name!r} has blobs of shapes {saved[name]} in the file, "
                                   f"{shapes} in the net")
        filled_any.update(filled)
    for one in files:
        model_sha1(one, quiet=quiet)
        net.copy_from(str(one))
    shown = ",".join(map(str, files))
    filled = [name for name in learnable if name in filled_any]
    left = [name for name in learnable if name not in filled_any]
    if not quiet:
        print(f"weights {shown}: filled {len(filled)} of {len(learnable)} learnable layers", flush=True)
    if left:
        print(f"warning: weights {shown}: {len(left)} of {len(learnable)} learnable layers left at their "
              f"fillers (not in the file): {_names(left)}", file=sys.stderr, flush=True)
    return WeightsReport(files[0] if len(files) == 1 else Path(shown), filled, left)


def weights_bytes(net: Any) -> int:
    """An upper bound of the size of ``net``'s ``.caffemodel``: every layer's blobs (shared ones
    included: the file holds them per layer), plus 1 MiB of structure."""
    return sum(b.data.nbytes for blobs in net.params.values() for b in blobs) + (1 << 20)


def save_weights(net: Any, path: Path) -> Path:
    """``net.save(path)`` (a ``.caffemodel``) without its failure modes: Caffe aborts the process
    on a failed write and leaves a partial file. The file is written into a folder with room for
    it (``safeio.Staging``: the system's temporary folder, else ``path``'s own), checked first,
    then moved to ``path`` complete (``safeio.publish``): a full disk is a ``WriteFailed`` naming the
    folder or ``path``, and ``path`` keeps what it held."""
    import tempfile
    from gpsnet.safeio import Staging, publish
    with tempfile.TemporaryDirectory(prefix="gpsnet-save-") as work:
        staging = Staging(Path(work), [Path(tempfile.gettempdir()), path.parent])
        try:
            staged = staging.point(weights_bytes(net)) / path.name
            net.save(str(staged))
            publish(staged, path)
        finally:
            staging.close()
    return path


def history_copies(solver_type: str) -> int:
    """How many history blobs Caffe's solver keeps per learnable blob: two (Adam), else one."""
    return 2 if solver_type == "Adam" else 1


def _history_blobs(net: Any, solver_type: str) -> int:
    """The history blobs Caffe's solver keeps."""
    return sum(len(blobs) for blobs in owned_params(net).values()) * history_copies(solver_type)


def resumable_state(path: str | Path, net: Any, solver_type: str, staging: Path) -> Path:
    """The solverstate to give ``solver.restore``: ``path`` itself, or a copy in ``staging`` whose
    ``learned_net`` is resolved beside ``path`` when the stored one is gone."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    path = Path(path)
    if path.suffix == WEIGHTS_SUFFIX:
        raise WeightsError(f"--resume {path}: a {WEIGHTS_SUFFIX} holds weights only; --resume takes the "
                           f"{STATE_SUFFIX} written beside it (to start from these weights, pass "
                           f"--weights {path})")
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(_read(path, "solver state"))
    except DecodeError as err:
        raise WeightsError(f"--resume {path}: not a Caffe {STATE_SUFFIX} ({err})") from None
    expected = _history_blobs(net, solver_type)
    if len(state.history) != expected:
        raise WeightsError(f"--resume {path}: {len(state.history)} history blobs where the {solver_type} solver "
                           f"of this net keeps {expected}: not a {STATE_SUFFIX} of this net and --solver "
                           f"(a {WEIGHTS_SUFFIX} goes to --weights)")
    if not state.learned_net or Path(state.learned_net).is_file():
        return path
    beside = path.parent / Path(state.learned_net).name
    if not beside.is_file():
        raise FileNotFoundError(f"--resume {path}: its weights {state.learned_net} are gone, and {beside} "
                                "is missing too")
    print(f"resume: {state.learned_net} is gone; using {beside} beside the solverstate", flush=True)
    state.learned_net = str(beside.resolve())
    fixed = staging / path.name
    fixed.write_bytes(state.SerializeToString())
    return fixed


def _is_hdf5(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def main(argv: list[str] | None = None) -> int:
    """``python -m gpsnet.weights SPEC...``: every file of each ``-weights`` value (``weight_files``)
    must be a Caffe ``.caffemodel`` (``read_net_param``); else the first bad one is named, exit
    code 1. The Caffe tool's wrapper (``scripts/caffe_env``) runs it before the tool, which logs
    "Finetuning from" an empty or foreign file and trains from the fillers. An HDF5 file is left
    to the tool (it reads HDF5 weights too)."""
    for spec in sys.argv[1:] if argv is None else argv:
        try:
            for path in weight_files(spec):
                if not _is_hdf5(path):
                    read_net_param(path)
        except (OSError, WeightsError) as err:
            print(f"caffe: -weights {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

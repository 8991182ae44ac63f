"""``gpsnet build-nets``: writes the train/test/deploy prototxts and solvers of every variant in the full and the
small setting under prototxt/ (``--check``: only compares them with the builder's output)."""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from gpsnet.nets.config import named_setting
from gpsnet.nets.prototxt import (DEPLOY_FILE, NET_NAME_PREFIX, REPO_ROOT, deploy_text, net_text, snapshot_name,
                                  solver_file, train_net_file)
from gpsnet.nets.solver import SOLVER_HEADER, solver_text
from gpsnet.nets.variants import VARIANTS, spec_of

def expected_files(out: Path = Path("prototxt")) -> dict[Path, str]:
    """Every committed file under ``out`` with its content."""
    files: dict[Path, str] = {}
    for st in (named_setting("full"), named_setting("small")):
        for variant in VARIANTS:
            d = st.variant_dir(out, variant)
            rel = st.variant_dir(Path("prototxt"), variant)   # paths from the repository root
            for stage in spec_of(variant).train_stages:
                files[d / train_net_file(stage)] = net_text(variant, st.cfg, True, stage)
                snap = st.variant_dir(Path("snapshots"), variant) / snapshot_name(variant, stage)
                files[d / solver_file(stage)] = solver_text(str(rel / train_net_file(stage)), str(snap),
                                                            st.schedule, st.max_iter)
            files[d / "test.prototxt"] = net_text(variant, st.cfg, False)
            files[d / DEPLOY_FILE] = deploy_text(variant, st.cfg)
            files[d / "config.json"] = json.dumps(asdict(st.cfg), indent=1, sort_keys=True) + "\n"
    return files


def builder_file_name(path: Path) -> str | None:
    """The name the builder gives a file of this content in its variant folder, from the content (a
    net's ``name: "gpsnet_<variant>_train_<stage>"``, a solver's ``train_net``); None when the content
    is not the builder's (or names another variant)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    variant = re.escape(path.parent.name)
    if text.startswith(SOLVER_HEADER):   # its train net and snapshots name one stage, its net is not a user's
        net = re.search(rf'^train_net: ".*/{variant}/train(?:_(\w+))?\.prototxt"$', text, re.MULTILINE)
        stage = net.group(1) if net else None
        snaps = re.search(r'^snapshot_prefix: ".*/(\w+)"$', text, re.MULTILINE)
        own_net = path.parent / train_net_file(stage)
        if not net or not snaps or snaps.group(1) != snapshot_name(path.parent.name, stage) or (
                own_net.exists() and builder_file_name(own_net) != own_net.name):
            return None
        return solver_file(stage)
    name = re.match(rf'name: "{NET_NAME_PREFIX}{variant}_(?:(test|deploy)|train(?:_(\w+))?)"\n', text)
    if not name:
        return None
    if name.group(1):
        return DEPLOY_FILE if name.group(1) == "deploy" else "test.prototxt"
    return train_net_file(name.group(2))


def written_by_builder(path: Path) -> bool:
    """Whether a prototxt is one the builder wrote, under the name it gave it: not a user's own file,
    nor a user's copy of the builder's under another name (it keeps the builder's first line)."""
    return builder_file_name(path) == path.name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet build-nets", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "prototxt",
                    help="output folder (default: the repository's prototxt/, wherever the command runs)")
    ap.add_argument("--check", action="store_true",
                    help="only compare the files under --out with the builder's output")
    args = ap.parse_args(argv)
    out = args.out
    if args.check and not out.is_dir():
        print(f"gpsnet build-nets: {out}: no such folder", file=sys.stderr)
        return 1
    stale = []
    expected = expected_files(out)
    for folder in {path.parent for path in expected}:   # files it wrote before and no longer writes
        for path in sorted(folder.glob("*.prototxt")) if folder.is_dir() else []:
            if path not in expected and written_by_builder(path):
                if args.check:
                    stale.append(f"{path} (the builder no longer writes it: remove it)")
                else:
                    path.unlink()
                    print(f"removed {path}")
    for path, text in expected.items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("out of date (run gpsnet build-nets):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

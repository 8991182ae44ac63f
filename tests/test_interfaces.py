"""The package's map (docs/interfaces.md) and its one home per name (issue 21): the split net builder's
modules are imported directly, ``gpsnet.nets.builder`` is only a re-export kept for users' scripts."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "python" / "gpsnet"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_nothing_in_the_repository_imports_the_builder_re_export():
    users = [p for folder in ("python", "tests", "scripts") for p in (REPO / folder).rglob("*.py")
             if p.name != "builder.py" and p != Path(__file__).resolve()
             and "gpsnet.nets.builder" in _imported_modules(p)]
    assert users == []


def test_the_builder_re_export_gives_each_name_from_its_own_module():
    builder = importlib.import_module("gpsnet.nets.builder")
    homes = {"config": ("NetConfig", "Setting", "override", "chosen_setting"),
             "variants": ("VariantSpec", "REGISTRY", "spec_of"), "solver": ("CPU_SCHEDULE", "solver_text"),
             "prototxt": ("net_text", "snapshot_name"), "build_nets": ("main",)}
    for module, names in homes.items():
        home = importlib.import_module(f"gpsnet.nets.{module}")
        for name in names:
            assert getattr(builder, name) is getattr(home, name), name

"""The package's map (docs/interfaces.md) and its one home per name (issue 21): the split net builder's
modules are imported directly, ``gpsnet.nets.builder`` is only a re-export kept for users' scripts."""
from __future__ import annotations

import ast
import importlib
import re
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


def test_evaluate_is_a_documented_alias_of_evaluate_predictions(capsys):
    from gpsnet import cli
    assert cli.ALIASES == {"evaluate": "evaluate-predictions"}
    assert "alias: evaluate" in cli.usage() and "evaluate-predictions" in cli.usage()
    for name in ("evaluate", "evaluate-predictions"):
        try:
            cli.main([name, "--help"])
        except SystemExit as stop:
            assert stop.code == 0
        assert capsys.readouterr().out.startswith("usage: gpsnet evaluate-predictions ")


def _named_in_the_module_table() -> set[str]:
    """The files the module table of docs/interfaces.md names (``a/{b,c}.py`` read as both)."""
    text = (REPO / "docs" / "interfaces.md").read_text()
    table = text[text.index("## Python package `python/gpsnet/`"):]
    table = table[:table.index("\n\n", table.index("| module |"))]
    named: set[str] = set()
    for row in table.splitlines():
        cell = row.split("|")[1] if row.startswith("|") else ""
        for token in re.findall(r"`([^`]+)`", cell):
            head, brace, rest = token.partition("{")
            if brace:
                inner, _, tail = rest.partition("}")
                named.update(f"{head}{part.strip()}{tail}" for part in inner.split(","))
            else:
                named.add(token)
    return named


def test_the_module_table_names_every_module():
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    named = _named_in_the_module_table()
    assert sorted(modules - named) == []
    assert sorted(n for n in named if n.endswith(".py") and n not in modules) == []   # no stale row

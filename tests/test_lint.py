"""The linter (ruff, pinned in pyproject.toml's test extra, rules in [tool.ruff.lint]) passes on the
package, the tests and the Python scripts, so unused names and imports do not accumulate."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def python_scripts() -> list[Path]:
    return [p for p in sorted((ROOT / "scripts").rglob("*"))
            if p.is_file() and (p.suffix == ".py" or p.read_bytes()[:64].split(b"\n")[0].endswith(b"python3"))]


def _ruff(*paths: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), "check", "--no-cache", "--output-format", "concise", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_passes():
    assert python_scripts(), "the Python scripts under scripts/ are linted too"
    out = _ruff("python", "tests", *python_scripts())
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_finds_an_unused_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x=[]):\n    return x\n")
    out = _ruff(bad)
    assert out.returncode == 1
    assert "F401" in out.stdout and "B006" in out.stdout

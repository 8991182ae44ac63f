"""The CUDA image's pinned wheels (docker/cuda-wheels.txt) and what docker/cuda_toolkit and the
Dockerfile take from them: the file is the one place for the CUDA versions, so a renamed, unpinned or
missing wheel must fail here, not half-way through a 20-minute image build."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "docker" / "cuda-wheels.txt"
TOOLKIT = ROOT / "docker" / "cuda_toolkit"
LINE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)==(?P<version>[0-9][0-9.]*) --hash=sha256:[0-9a-f]{64}$")
# what the toolkit laid out from the wheels needs: nvcc and its front and back ends, the headers and
# libraries the fork compiles and links against (CUDA runtime, CCCL's thrust, cuBLAS, cuRAND, cuDNN,
# NCCL), NVRTC for cuDNN's runtime-compiled engines
NEEDED = {"nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-runtime", "nvidia-cuda-cccl",
          "nvidia-cublas", "nvidia-curand", "nvidia-cuda-nvrtc", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"}


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in WHEELS.read_text().splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        m = LINE.match(raw)
        assert m, f"not 'name==version --hash=sha256:...': {raw!r}"
        assert m["name"] not in pins, f"{m['name']} pinned twice"
        pins[m["name"]] = m["version"]
    return pins


def test_every_wheel_the_toolkit_needs_is_pinned_with_its_hash():
    pins = pinned()
    assert set(pins) == NEEDED, (sorted(NEEDED - set(pins)), sorted(set(pins) - NEEDED))
    # one CUDA release for the toolkit's pieces (nvcc 13.0 with a 13.0 runtime, CCCL, NVVM, NVRTC)
    assert {v.split(".")[:2] == ["13", "0"] for n, v in pins.items()
            if n.startswith("nvidia-cuda-") or n == "nvidia-nvvm"} == {True}, pins


def test_the_repository_route_takes_cudnn_and_nccl_from_the_pins():
    """Where NVIDIA's repository answers, only cuDNN and NCCL come from the wheels: the pattern that
    cuda_toolkit gives pip_wheels must select exactly those two pinned lines."""
    text = TOOLKIT.read_text()
    calls = re.findall(r"^\s*pip_wheels '([^']+)'$", text, re.M)
    assert len(calls) == 2, calls
    names = list(pinned())
    select = {pattern: [n for n in names if re.fullmatch(f"({pattern})", n)] for pattern in calls}
    assert sorted(select[calls[0]]) == ["nvidia-cudnn-cu13", "nvidia-nccl-cu13"], select
    assert sorted(select[calls[1]]) == sorted(names), select


def test_the_dockerfile_copies_the_pins_and_builds_the_cuda_tests():
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY docker/cuda_toolkit docker/cuda-wheels.txt /tmp/cuda/" in text
    assert "scripts/build_fork --cuda --tests" in text   # CI's proof that every CUDA layer and test compiles


def test_cuda_toolkit_refuses_an_unknown_route():
    done = subprocess.run([str(TOOLKIT), "conda"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "auto, repo or pypi" in done.stderr, done.stderr

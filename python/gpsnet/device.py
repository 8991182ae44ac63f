"""Caffe's device: ``use_device(caffe, gpu)`` for the ``--gpu N`` option of train, infer, eval, demo.

pycaffe has no query for the build or the GPUs, and ``caffe.set_device`` on a CPU_ONLY build or a
missing GPU aborts the process (glog FATAL). So the build is read off the libraries pycaffe loaded
(a CUDA build maps libcudart), and the GPUs are counted through that same CUDA runtime.
"""
from __future__ import annotations

import ctypes
from typing import Any


def loaded_cudart() -> str | None:
    """The path of the CUDA runtime mapped into this process (pycaffe's, once it is imported)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libcudart.so" in path:
                    return path
    except OSError:
        pass
    return None


def cuda_device_count(cudart: str) -> int:
    """CUDA devices visible through the runtime library ``cudart`` (0 when the driver has none)."""
    lib = ctypes.CDLL(cudart)
    count = ctypes.c_int(0)
    return count.value if lib.cudaGetDeviceCount(ctypes.byref(count)) == 0 else 0


def check_gpu(caffe: Any, gpu: int, option: str = "--gpu") -> None:
    """ValueError, with the reason, where ``caffe.set_device(gpu)`` would abort: a negative id, a
    CPU_ONLY pycaffe, no such CUDA device (``option``: the option that named it, for the message)."""
    if gpu < 0:
        raise ValueError(f"{option} {gpu}: a GPU id is >= 0")
    cudart = loaded_cudart()
    if cudart is None:
        raise ValueError(f"{option} {gpu}: this pycaffe is a CPU_ONLY build ({caffe.__file__}); "
                         "build the CUDA one (scripts/build_fork --cuda, docs/gpu.md)")
    count = cuda_device_count(cudart)
    if gpu >= count:
        raise ValueError(f"{option} {gpu}: the CUDA runtime ({cudart}) sees {count} GPU(s)")


def use_device(caffe: Any, gpu: int | None, option: str = "--gpu") -> None:
    """Caffe's mode: the CPU for ``gpu`` None, else GPU ``gpu`` (``check_gpu`` first: a ValueError
    naming ``option`` where Caffe would abort)."""
    if gpu is None:
        caffe.set_mode_cpu()
        return
    check_gpu(caffe, gpu, option)
    caffe.set_device(gpu)
    caffe.set_mode_gpu()

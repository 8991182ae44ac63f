"""Helpers shared by the Python layers (errors shown in the Caffe tool, param_str parsing, seeded
sampling)."""
from __future__ import annotations

import functools
import json
import sys
import traceback
from dataclasses import fields
from typing import Any, Callable, TypeVar

T = TypeVar("T")


LAYER_METHODS = ("setup", "reshape", "forward", "backward")


def _shown(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except BaseException:
            if sys._getframe().f_back is None:   # called by C++ with no Python below: the Caffe tool
                print(f"Python layer {type(self).__name__}.{method.__name__} failed:", file=sys.stderr)
                traceback.print_exc()
                sys.stderr.flush()
            raise
    return call


class ShowsErrors:
    """Base of every Python layer: an exception leaving its ``setup`` / ``reshape`` / ``forward`` /
    ``backward`` where no Python code called it (the Caffe tool's embedded interpreter, whose
    C++ ends in ``terminate called after throwing ... error_already_set`` without printing it) is
    printed with its traceback on stderr first. Under pycaffe (``gpsnet train``, ``infer``, ...)
    the exception reaches the Python caller, which reports it: nothing is printed here."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in LAYER_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _shown(cls.__dict__[name]))


def parse_params(layer_name: str, param_str: str, allowed: set[str]) -> dict[str, Any]:
    """``param_str`` as a JSON object; unknown keys are an error naming the layer."""
    text = (param_str or "").strip()
    try:
        params = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"layer {layer_name!r}: param_str is not JSON: {exc}: {text!r}") from None
    if not isinstance(params, dict):
        raise ValueError(f"layer {layer_name!r}: param_str must be a JSON object, got {text!r}")
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"layer {layer_name!r}: unknown param_str keys {sorted(unknown)}; "
                         f"allowed: {sorted(allowed)}")
    return params


def config_keys(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def make_config(cls: type[T], params: dict[str, Any]) -> T:
    keys = config_keys(cls)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in keys}
    return cls(**kwargs)


def read_blob(blob, cols: int | None = None):
    """A blob's data, or an empty array for a zero-count blob (whose ``.data`` aborts pycaffe)."""
    import numpy as np
    if blob.count == 0:
        shape = tuple(blob.shape)
        return np.zeros(shape if cols is None else (0, cols), dtype=np.float32)
    return blob.data


def write_blob(blob, arr) -> None:
    """Reshape ``blob`` to ``arr`` and copy it (nothing to copy for zero-size arrays)."""
    blob.reshape(*arr.shape)
    if arr.size:
        blob.data[...] = arr


class SeededSampling:
    """Mixin of the Python layers that sample (anchor, proposal and detection targets): the RNG of
    forward pass i is seeded with (``seed``, i), so a run resumed at iteration i
    (``train.fast_forward`` sets ``forward_count``) samples as the uninterrupted run."""
    seed: int = 0
    forward_count: int = 0

    def init_sampling(self, params: dict[str, Any]) -> None:
        self.seed = int(params.get("seed", 0))
        self.forward_count = 0

    def next_rng(self):
        import numpy as np
        rng = np.random.default_rng([self.seed, self.forward_count])
        self.forward_count += 1
        return rng

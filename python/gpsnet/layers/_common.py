"""Helpers shared by the Python layers (errors shown in the Caffe tool, param_str parsing, seeded
sampling)."""
from __future__ import annotations

import functools
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from gpsnet.nets.config import DEFAULT_CONFIG
from gpsnet.typedconfig import check_keys, field_types, json_object, make


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


def layer_params(layer: Any, *classes: type) -> tuple[Any, ...]:
    """``layer.param_str`` (a JSON object) read into the dataclasses ``classes``: each key goes to the
    classes with a field of its name and is converted by the field's type (``gpsnet.typedconfig``); a
    missing key takes the field's default, taken from ``NetConfig`` where the key is one of its fields
    (``DEFAULT_CONFIG``). Errors (not JSON, an unknown key, a bad value) name the layer."""
    where = f"layer {type(layer).__name__!r}: param_str"
    values = json_object(layer.param_str, where)
    kinds = [field_types(cls) for cls in classes]
    check_keys(values, set().union(*kinds), where)
    return tuple(make(cls, {k: v for k, v in values.items() if k in known}, where)
                 for cls, known in zip(classes, kinds))


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


@dataclass(frozen=True)
class SamplingParams:
    """The sampling layers' ``seed`` key (param_str)."""
    seed: int = DEFAULT_CONFIG.seed


class SeededSampling:
    """Mixin of the Python layers that sample (anchor, proposal and detection targets): the RNG of
    forward pass i is seeded with (``seed``, i), so a run resumed at iteration i
    (``state.fast_forward`` sets ``forward_count``) samples as the uninterrupted run."""
    seed: int = DEFAULT_CONFIG.seed
    forward_count: int = 0

    def init_sampling(self, params: "SamplingParams") -> None:
        self.seed = params.seed
        self.forward_count = 0

    def next_rng(self):
        import numpy as np
        rng = np.random.default_rng([self.seed, self.forward_count])
        self.forward_count += 1
        return rng

"""Tiny pycaffe nets around one layer (tests and scripts/bench_layers)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def param_fields(params: Mapping | None) -> str:
    """The body of a layer's parameter message in prototxt text: `key: value` per field, a list
    value repeated as a repeated field; bools as true/false, floats by repr, the rest (ints,
    enum names) as they print."""
    out = []
    for key, value in (params or {}).items():
        for x in (value if isinstance(value, (list, tuple)) else [value]):
            out.append(f"{key}: {_fmt(x)}")
    return " ".join(out)


def input_layer(name: str, shape: Sequence[int], top: str | None = None) -> str:
    """One Input layer (a prototxt line) whose top (`name` unless given) has `shape`."""
    dims = " ".join(f"dim: {int(d)}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{top or name}" '
            f"input_param {{ shape {{ {dims} }} }} }}\n")


def layer_prototxt(layer_type: str, bottom_shapes: Sequence[Sequence[int]], num_tops: int,
                   param_field: str | None = None, params: Mapping | None = None) -> str:
    """A net with one Input layer per bottom (blobs b0, b1, ...) feeding one layer of
    layer_type with tops t0, t1, ...; force_backward so that differentiable bottoms get diffs."""
    lines = ['name: "single_layer"', "force_backward: true"]
    lines += [input_layer(f"in{i}", shape, top=f"b{i}").rstrip("\n")
              for i, shape in enumerate(bottom_shapes)]
    body = [f'name: "layer" type: "{layer_type}"']
    body += [f'bottom: "b{i}"' for i in range(len(bottom_shapes))]
    body += [f'top: "t{i}"' for i in range(num_tops)]
    if param_field:
        body.append(f"{param_field} {{ {param_fields(params)} }}")
    lines.append("layer { " + " ".join(body) + " }")
    return "\n".join(lines) + "\n"


def layer_net(layer_type: str, bottom_shapes, num_tops: int, param_field=None, params=None):
    """caffe.Net (TEST phase) of layer_prototxt(...)."""
    return text_net(layer_prototxt(layer_type, bottom_shapes, num_tops, param_field, params))


def text_net(text: str):
    """caffe.Net (TEST phase) of a net prototxt given as text."""
    import caffe

    fd, path = tempfile.mkstemp(suffix=".prototxt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return caffe.Net(path, caffe.TEST)
    finally:
        os.unlink(path)


def run_layer(net, bottoms, top_diffs=None):
    """Sets the bottoms (arrays; a bottom with no rows is only reshaped), runs forward (and
    backward when top_diffs are given) and returns (tops, bottom diffs) as float64 copies."""
    import numpy as np

    for i, arr in enumerate(bottoms):
        arr = np.asarray(arr)
        blob = net.blobs[f"b{i}"]
        blob.reshape(*arr.shape)
        if arr.size:
            blob.data[...] = arr
    last = len(net.layers) - 1
    net._forward(0, last)
    tops = [np.array(net.blobs[f"t{i}"].data, dtype=np.float64)
            if net.blobs[f"t{i}"].count else np.zeros(net.blobs[f"t{i}"].shape)
            for i in range(len(net.top_names["layer"]))]
    diffs = None
    if top_diffs is not None:
        for i, d in enumerate(top_diffs):
            if d is not None and np.asarray(d).size:
                net.blobs[f"t{i}"].diff[...] = d
        net._backward(last, 0)
        diffs = [np.array(net.blobs[f"b{i}"].diff, dtype=np.float64)
                 if net.blobs[f"b{i}"].count else None for i in range(len(bottoms))]
    return tops, diffs

"""What ``gpsnet train`` changes in a train prototxt before it runs it: the data layer's root, split and
seed (``patch_data_layer``), and a ``FiniteLossGuardLayer`` on the loss outputs (``add_loss_guard``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def net_outputs(net: Any) -> list[str]:
    """The output blobs of a NetParameter's TRAIN net: tops no later layer reads."""
    from caffe.proto import caffe_pb2
    outputs: dict[str, None] = {}
    for layer in net.layer:
        if any(rule.HasField("phase") and rule.phase != caffe_pb2.TRAIN for rule in layer.include):
            continue
        for b in layer.bottom:
            outputs.pop(b, None)
        for t in layer.top:
            outputs[t] = None
    return list(outputs)


def add_loss_guard(text: str) -> tuple[str, list[str]]:
    """Append ``FiniteLossGuardLayer`` (reading the loss outputs) to a train prototxt: a NaN or
    infinite loss then stops ``solver.step`` before its backward pass. Returns the text and the
    loss names (the outputs with "loss" in their name). Its one top is a constant 0 with loss
    weight 1: a layer outside the loss reading a loss blob would make Caffe skip that loss's
    backward pass (Net::Init marks the blob as needing no gradient), silently training without
    it; so the guard is "in the loss", adding 0 to it, with a backward pass that does nothing."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    losses = [b for b in net_outputs(net) if "loss" in b]
    if not losses:
        raise ValueError("the train net has no loss output (no output blob named *loss*)")
    guard = net.layer.add()
    guard.name, guard.type = "finite_loss_guard", "Python"
    guard.bottom.extend(losses)
    guard.top.append(guard.name)
    guard.loss_weight.append(1.0)
    guard.python_param.module = "gpsnet.layers.finite_loss"
    guard.python_param.layer = "FiniteLossGuardLayer"
    guard.python_param.param_str = json.dumps({"losses": losses})
    return text_format.MessageToString(net), losses


def patch_data_layer(text: str, root: Path, seed: int, split: str = "train", augment: bool = True) -> str:
    """Set the data layer's root, split and seed in a train prototxt; ``augment=False`` turns off
    its random scaling and flipping."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    found = False
    def update(layer: Any, **values: Any) -> None:
        params = json.loads(layer.python_param.param_str or "{}")
        params.update(values)
        layer.python_param.param_str = json.dumps(params, sort_keys=True)

    for layer in net.layer:
        kind = layer.python_param.layer if layer.type == "Python" else None
        if kind == "GPSDataLayer":
            update(layer, root=str(root), seed=seed, split=split,
                   **({} if augment else dict(scales=[1.0, 1.0], mirror=False)))
            found = True
        elif kind == "ClassWeightsLayer":   # the class weights follow the data the net trains on
            update(layer, root=str(root), split=split)
    if not found:
        raise ValueError("the train net has no GPSDataLayer")
    return text_format.MessageToString(net)

"""`FiniteLossGuardLayer`: stops a training step whose loss is NaN or infinite before its backward pass.

```
layer { name: "finite_loss_guard" type: "Python" bottom: "loss_a" bottom: "loss_b"
  python_param { module: "gpsnet.layers.finite_loss" layer: "FiniteLossGuardLayer"
                 param_str: '{"losses": ["loss_a", "loss_b"]}' } }
```
It reads the net's loss outputs and has no top; last in the net (``gpsnet train`` appends it, see
``gpsnet.train.add_loss_guard``). Its forward pass raises ``NonFiniteLoss`` (a
``FloatingPointError`` naming the losses) when a loss is not finite: the exception leaves
``solver.step`` before any backward pass runs (upstream max-pooling backward writes out of bounds
on NaN data) and before the update, so the step never happens. With no top it contributes no loss
and has no backward pass: the losses' gradients are those of the net without it (Caffe's split
of a loss blob read by it gives its branch a zero gradient).
"""
from __future__ import annotations

from typing import Any

import caffe
import numpy as np

from gpsnet.layers._common import parse_params


class NonFiniteLoss(FloatingPointError):
    """A loss of the training net is NaN or infinite; ``losses`` maps its name to its value."""

    def __init__(self, losses: dict[str, float]) -> None:
        super().__init__("non-finite loss: " + ", ".join(f"{k}={v}" for k, v in losses.items()))
        self.losses = losses


class FiniteLossGuardLayer(caffe.Layer):
    def setup(self, bottom: Any, top: Any) -> None:
        if top or not bottom:
            raise ValueError("FiniteLossGuardLayer reads the losses (bottoms) and has no top")
        names = parse_params("FiniteLossGuardLayer", self.param_str, {"losses"}).get("losses")
        self.names = list(names) if names and len(names) == len(bottom) else [str(i) for i in range(len(bottom))]

    def reshape(self, bottom: Any, top: Any) -> None:
        pass

    def forward(self, bottom: Any, top: Any) -> None:
        data = [bottom[i].data for i in range(len(bottom))]
        bad = {name: float(d.reshape(-1)[0]) for name, d in zip(self.names, data) if not np.isfinite(d).all()}
        if bad:
            raise NonFiniteLoss(bad)

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        pass

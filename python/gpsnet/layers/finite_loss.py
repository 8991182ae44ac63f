"""`FiniteLossGuardLayer`: stops a training step whose loss is NaN or infinite before its backward pass.

```
layer { name: "finite_loss_guard" type: "Python" bottom: "loss_a" bottom: "loss_b"
  top: "finite_loss_guard" loss_weight: 1
  python_param { module: "gpsnet.layers.finite_loss" layer: "FiniteLossGuardLayer"
                 param_str: '{"losses": ["loss_a", "loss_b"]}' } }
```
It reads the net's loss outputs; last in the net (``gpsnet train`` appends it, see
``gpsnet.training.patch.add_loss_guard``). Its forward pass raises ``NonFiniteLoss`` (a
``FloatingPointError`` naming the losses) when a loss is not finite: the exception leaves
``solver.step`` before any backward pass runs (upstream max-pooling backward writes out of bounds
on NaN data) and before the update, so the step never happens.

Its one top is a constant 0 with loss weight 1 (adds nothing to the loss) and its backward pass
does nothing: Caffe skips the backward pass of a loss whose blob is read by a layer outside the
loss, so the guard must count as part of the loss for the losses it reads to keep their
gradients (tested: the same gradients as the net without it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import caffe
import numpy as np

from gpsnet.layers._common import ShowsErrors, layer_params


@dataclass(frozen=True)
class FiniteLossParams:
    losses: tuple[str, ...] = ()   # the bottoms' names (default: their indices)


class NonFiniteLoss(FloatingPointError):
    """A loss of the training net is NaN or infinite; ``losses`` maps its name to its value."""

    def __init__(self, losses: dict[str, float]) -> None:
        super().__init__("non-finite loss: " + ", ".join(f"{k}={v}" for k, v in losses.items()))
        self.losses = losses


class FiniteLossGuardLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom: Any, top: Any) -> None:
        if len(top) != 1 or not bottom:
            raise ValueError("FiniteLossGuardLayer reads the losses (bottoms) and has one top (a constant 0)")
        (p,) = layer_params(self, FiniteLossParams)
        names = p.losses
        self.names = list(names) if names and len(names) == len(bottom) else [str(i) for i in range(len(bottom))]

    def reshape(self, bottom: Any, top: Any) -> None:
        top[0].reshape(1)

    def forward(self, bottom: Any, top: Any) -> None:
        data = [bottom[i].data for i in range(len(bottom))]
        bad = {name: float(d.reshape(-1)[0]) for name, d in zip(self.names, data) if not np.isfinite(d).all()}
        if bad:
            raise NonFiniteLoss(bad)
        top[0].data[...] = 0

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        pass  # leaves the losses' diffs (their loss weights) untouched

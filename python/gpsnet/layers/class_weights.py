"""`ClassWeightsLayer`: the infogain matrix of class-balanced parsing losses (CPU setting).

```
layer { name: "class_weights" type: "Python" top: "class_weights"
  python_param { module: "gpsnet.layers.class_weights" layer: "ClassWeightsLayer"
                 param_str: '{"root": "data/synthetic", "split": "train", "power": 0.5}' } }
```
Top: 1 x 1 x K x K, ``diag(w)`` for Caffe's ``InfogainLoss`` (softmax + weighted log loss, ignore 255).
``w_c = clip((median_f / f_c) ** power, 1 / max_weight, max_weight)`` from the pixel frequencies
``f_c`` of the whole-image labels of the first ``images`` images of the split (median-frequency
balancing, SegNet; ``power`` 1 is SegNet's, 0.5 a milder one; a class that never occurs gets 1).
Computed once at setup, so the weights follow the data set the net trains on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import caffe
import numpy as np

from gpsnet.classes import NUM_CLASSES
from gpsnet.layers._common import ShowsErrors, layer_params


@dataclass(frozen=True)
class ClassWeightsParams:
    """The layer's param_str; ``root`` (the data set folder) is required."""
    root: str
    split: str = "train"
    power: float = 0.5
    images: int = 100
    max_weight: float = 4.0


def class_weights(root: str, split: str = ClassWeightsParams.split, power: float = ClassWeightsParams.power,
                  images: int = ClassWeightsParams.images, max_weight: float = ClassWeightsParams.max_weight
                  ) -> np.ndarray:
    """The K class weights of a data set's split (see the module docstring)."""
    from gpsnet.data.layout import GPSDataset
    dataset = GPSDataset(root, split)
    hist = np.zeros(256, np.float64)
    for image_id in dataset.ids[:images]:
        hist += np.bincount(dataset.load(image_id).global_label.ravel(), minlength=256)
    freq = hist[:NUM_CLASSES] / max(hist[:NUM_CLASSES].sum(), 1.0)
    present = freq > 0
    w = np.ones(NUM_CLASSES)
    if present.any():
        med = np.median(freq[present])
        w[present] = np.clip((med / freq[present]) ** power, 1.0 / max_weight, max_weight)
    return w


class ClassWeightsLayer(ShowsErrors, caffe.Layer):
    def setup(self, bottom: Any, top: Any) -> None:
        if len(bottom) != 0 or len(top) != 1:
            raise ValueError("ClassWeightsLayer takes no bottom and has one top")
        (p,) = layer_params(self, ClassWeightsParams)
        self.weights = class_weights(p.root, p.split, p.power, p.images, p.max_weight)
        top[0].reshape(1, 1, NUM_CLASSES, NUM_CLASSES)

    def reshape(self, bottom: Any, top: Any) -> None:
        top[0].reshape(1, 1, NUM_CLASSES, NUM_CLASSES)

    def forward(self, bottom: Any, top: Any) -> None:
        top[0].data[...] = np.diag(self.weights)[None, None]

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        pass

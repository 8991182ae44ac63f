"""`GPSDataLayer`: the pycaffe data layer of GPSNet (docs/interfaces.md, docs/data.md).

```
layer { name: "data" type: "Python"
  top: "data" top: "im_info" top: "label" top: "label_s8" top: "gt_persons" top: "gt_faces" top: "gt_masks"
  top: "iteration"   (optional)
  python_param { module: "gpsnet.layers.data_layer" layer: "GPSDataLayer"
                 param_str: '{"root": "out/synthetic", "split": "train", "size": 513}' } }
```
The batches are made by `gpsnet.data.batch.make_batch` in a background thread, `prefetch` ahead.
The optional eighth top ``iteration`` (one value) is the index of the batch, counted from 0 (the
``AnchorTarget`` layer's pass index: ``state.fast_forward`` sets ``forward_count`` on a resumed
run, so the C++ sampling layers downstream draw as in the uninterrupted run).
In a several-GPU run (``gpsnet train --gpus``, pycaffe's ``caffe.solver_count() > 1``) the layer of
a TRAIN net reads its rank's share of every epoch (``caffe.solver_rank()``: ``gpsnet.data.batch.Shard``);
a TEST net reads the whole split.
"""
from __future__ import annotations

from typing import Any

import caffe

from gpsnet.data.batch import TOP_NAMES, BatchParams, BatchPrefetcher, Shard
from gpsnet.layers._common import ShowsErrors


ITERATION_TOP = "iteration"


class GPSDataLayer(ShowsErrors, caffe.Layer):
    """Two (batch_size) augmented images per forward, with instance and face ground truth."""

    def setup(self, bottom: Any, top: Any) -> None:
        if len(bottom) != 0:
            raise ValueError(f"GPSDataLayer takes no bottoms, got {len(bottom)}")
        if len(top) not in (len(TOP_NAMES), len(TOP_NAMES) + 1):
            raise ValueError(f"GPSDataLayer has {len(TOP_NAMES)} tops {list(TOP_NAMES)} and optionally "
                             f"{ITERATION_TOP!r}, got {len(top)}")
        self.forward_count = 0
        self.params = BatchParams.from_json(self.param_str)
        p = self.params
        S, k1, B = p.size, p.label_cells, p.batch_size
        shapes = {"data": (B, 3, S, S), "im_info": (B, 3), "label": (B, 1, S, S), "label_s8": (B, 1, k1, k1),
                  "gt_persons": (1, 5), "gt_faces": (1, 5), "gt_masks": (1, 1, S, S)}
        for i, name in enumerate(TOP_NAMES):  # (pycaffe's blob vectors do not iterate)
            top[i].reshape(*shapes[name])
        if len(top) > len(TOP_NAMES):
            top[len(TOP_NAMES)].reshape(1)
        self.shard = (Shard(caffe.solver_rank(), caffe.solver_count())
                      if self.phase == caffe.TRAIN and caffe.solver_count() > 1 else Shard())
        self.prefetcher = BatchPrefetcher(p, shard=self.shard)

    def reshape(self, bottom: Any, top: Any) -> None:
        pass  # shapes change in forward (the number of persons and faces varies)

    def forward(self, bottom: Any, top: Any) -> None:
        batch = self.prefetcher.next()
        for i, name in enumerate(TOP_NAMES):
            arr = batch[name]
            top[i].reshape(*arr.shape)
            if arr.size:
                top[i].data[...] = arr
        if len(top) > len(TOP_NAMES):
            top[len(TOP_NAMES)].data[0] = self.forward_count
        self.forward_count += 1

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        pass

    def __del__(self) -> None:
        pf = getattr(self, "prefetcher", None)
        if pf is not None:
            pf.close()

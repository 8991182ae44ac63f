"""What the project's Python layers keep between passes, seen from a pycaffe net holding them:
the pass counter of the data layer and of the sampling layers (``forward_count``,
``_common.SeededSampling``) and the data layer's prefetch thread (``prefetcher``). Training
(``gpsnet.train``), its worker ranks (``gpsnet.training.ranks``) and the tools that build a
train net use these two functions; they need no caffe import."""
from __future__ import annotations

from typing import Any


def fast_forward(net: Any, iters: int) -> None:
    """Bring the data stream and the sampling layers of a fresh net to iteration ``iters``."""
    for i in range(len(net.layers)):
        layer = net.layers[i]
        if hasattr(layer, "forward_count"):
            layer.forward_count = iters
        pf = getattr(layer, "prefetcher", None)
        if pf is not None:
            for _ in range(iters):
                pf.next()


def close_net(net: Any) -> None:
    """Stop the data layer's prefetch thread now (not during interpreter teardown)."""
    for i in range(len(net.layers)):
        pf = getattr(net.layers[i], "prefetcher", None)
        if pf is not None:
            pf.close()

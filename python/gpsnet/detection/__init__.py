"""NumPy cores of the detector and mask Python layers (testable without Caffe).

Boxes are continuous image coordinates ``x1, y1, x2, y2`` with ``x1 = min col`` and
``x2 = max col + 1`` (docs/interfaces.md): a box's width is ``x2 - x1``.
"""

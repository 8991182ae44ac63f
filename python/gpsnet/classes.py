"""The GPS class table (DESIGN.md section 5): the one place that names the classes.

Everything that needs class names, ids, the left/right pairs, the ignore value or the colour
palette imports it from here.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress",
    "belt", "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm",
    "right-arm", "bag", "scarf", "socks", "tie",
)
NUM_CLASSES: int = len(CLASS_NAMES)  # K = 20
IGNORE_LABEL: int = 255
BACKGROUND: int = 0
FACE: int = CLASS_NAMES.index("face")  # 11
TIE: int = CLASS_NAMES.index("tie")    # 19, indoor only
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# (left, right) pairs, a person's own left and right; a horizontal flip swaps them.
LR_PAIRS: tuple[tuple[int, int], ...] = (
    (CLASS_ID["left-shoe"], CLASS_ID["right-shoe"]),
    (CLASS_ID["left-leg"], CLASS_ID["right-leg"]),
    (CLASS_ID["left-arm"], CLASS_ID["right-arm"]),
)


def flip_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table that swaps left/right classes (255 and others unchanged)."""
    lut = np.arange(256, dtype=np.uint8)
    for left, right in LR_PAIRS:
        lut[left], lut[right] = right, left
    return lut


def flip_labels(label: np.ndarray) -> np.ndarray:
    """Mirror a label map (..., H, W) horizontally and swap the left/right classes."""
    return flip_lut()[np.ascontiguousarray(label[..., ::-1]).astype(np.uint8, copy=False)]


def palette() -> np.ndarray:
    """(256, 3) uint8 RGB colours: PASCAL VOC's bit-interleaved palette, 255 drawn white."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[IGNORE_LABEL] = (255, 255, 255)
    return pal


def colorize(label: np.ndarray) -> np.ndarray:
    """An (H, W) label map as an (H, W, 3) uint8 BGR image for OpenCV."""
    return palette()[label.astype(np.uint8)][..., ::-1].copy()

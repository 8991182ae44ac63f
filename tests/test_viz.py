"""The one figure (gpsnet.viz.figure) of infer, eval --overlays, the demo and the video: panels at
least 512 px wide and separated, part-colour maps not blended with the image, persons outlined and
boxed, an instance view, a legend; a degenerate image cannot blow up its size."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gpsnet.classes import colorize
from gpsnet.viz import (BACKDROP, GAP, MAX_PANEL_PIXELS, MIN_FIGURE_WIDTH, TITLE, display_size, figure,
                        person_colours)


def _scene(h: int = 40, w: int = 60) -> tuple[np.ndarray, SimpleNamespace, SimpleNamespace]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    a, b = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    a[5:30, 4:20] = 4          # upper-clothes
    a[5:10, 4:20] = 11         # face
    b[10:38, 30:50] = 6        # pants
    boxes = np.array([[2, 3, 22, 32], [28, 8, 52, 39]], np.float64)   # a little larger than the masks
    pred = SimpleNamespace(masks=[a, b], boxes=boxes, scores=np.array([0.9, 0.7]))
    truth = SimpleNamespace(person_labels=np.stack([a, b]), person_boxes=boxes.astype(np.float32))
    return image, pred, truth


def test_panels_are_wide_separated_and_titled():
    image, pred, truth = _scene()
    fig = figure(image, pred, truth)
    panel_h, panel_w = display_size(40, 60)
    assert panel_w >= MIN_FIGURE_WIDTH and panel_w % 60 == 0 and panel_h * 60 == panel_w * 40  # integer factor
    # two rows of three cells (title bar + panel), GAP between and around
    assert fig.shape[:2] == (2 * (panel_h + TITLE) + 3 * GAP, 3 * panel_w + 4 * GAP)
    for j in range(4):   # the gaps between the cells are the backdrop, top to bottom
        x = j * (panel_w + GAP)
        assert (fig[:, x:x + GAP] == BACKDROP).all()
    # the image panel is the image enlarged by nearest neighbour
    factor = panel_w // 60
    y0, x0 = GAP + TITLE, GAP
    np.testing.assert_array_equal(fig[y0:y0 + panel_h:factor, x0:x0 + panel_w:factor], image)


def test_parts_are_part_colours_not_blended_and_persons_get_their_colour():
    image, pred, truth = _scene()
    fig = figure(image, pred, truth)
    panel_h, panel_w = display_size(40, 60)
    factor = panel_w // 60
    y0, x0 = GAP + TITLE, 2 * GAP + panel_w                    # the prediction's parts panel
    parts = fig[y0:y0 + panel_h, x0:x0 + panel_w]
    # inside a part, away from outline and boxes: exactly the part colour, nothing of the image
    np.testing.assert_array_equal(parts[20 * factor + factor // 2, 12 * factor], colorize(np.array([[4]]))[0, 0])
    np.testing.assert_array_equal(parts[25 * factor, 40 * factor], colorize(np.array([[6]]))[0, 0])
    np.testing.assert_array_equal(parts[2 * factor, 55 * factor], [0, 0, 0])    # background
    # the outline is white, the boxes in the person's colour
    white = (parts == 255).all(axis=2)
    assert white[5 * factor:30 * factor, 4 * factor - 2:4 * factor + 3].any()
    colours = person_colours(2)
    assert (parts == colours[0]).all(axis=2).any() and (parts == colours[1]).all(axis=2).any()
    # the persons panel colours each person as an instance
    inst = fig[y0:y0 + panel_h, x0 + panel_w + GAP:x0 + 2 * panel_w + GAP]
    np.testing.assert_array_equal(inst[20 * factor, 12 * factor], colours[0])
    np.testing.assert_array_equal(inst[25 * factor, 40 * factor], colours[1])
    # not blended: the parts and persons panels do not depend on the image
    other = figure(255 - image, pred, truth)
    np.testing.assert_array_equal(other[:, x0:], fig[:, x0:])
    assert not np.array_equal(other[:, :x0], fig[:, :x0])


def test_low_scores_are_left_out_and_the_legend_can_be_fixed():
    image, pred, _ = _scene()
    pred.scores = np.array([0.9, 0.1])
    one = figure(image, pred)
    pred.scores = np.array([0.9, 0.6])
    two = figure(image, pred)
    assert one.shape == two.shape and not np.array_equal(one, two)
    # a fixed legend (the video's) keeps the size whatever is drawn
    empty = SimpleNamespace(masks=[], boxes=np.zeros((0, 4)), scores=np.zeros(0))
    assert figure(image, empty, legend_classes=range(1, 20)).shape == figure(image, pred, legend_classes=range(1, 20)).shape


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (3, 2), (4000, 3000)])
def test_degenerate_and_large_images_stay_bounded(shape):
    h, w = shape
    image = np.full((h, w, 3), 100, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[: max(1, h // 2), : max(1, w // 2)] = 2
    pred = SimpleNamespace(masks=[mask], boxes=np.array([[0, 0, max(1, w // 2), max(1, h // 2)]], float),
                           scores=np.array([1.0]))
    ph, pw = display_size(h, w)
    assert ph * pw <= MAX_PANEL_PIXELS and ph >= 1 and pw >= 1
    fig = figure(image, pred)
    assert fig.shape[0] * fig.shape[1] <= 5 * MAX_PANEL_PIXELS   # uncapped, 5000 x 1 would need 11 GB

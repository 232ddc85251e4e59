"""Tests of the pixel analysis: VOC boxes and the void band."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.io.voc.components import mask_bbox, void_band


def test_bbox_is_one_based_inclusive():
    m = np.zeros((10, 12), bool)
    m[0, 0] = True
    assert mask_bbox(m) == (1, 1, 1, 1)
    m[:] = False
    m[5:10, 3:8] = True  # rows 5..9, cols 3..7
    assert mask_bbox(m) == (4, 6, 8, 10)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("lower", [0, 2])  # object on background, object next to object
def test_void_band_is_exactly_width_pixels_across_an_edge(width: int, lower: int):
    labels = np.full((20, 40), lower, np.int32)
    labels[:, 20:] = 3
    band = void_band(labels, width)
    high, low = (width + 1) // 2, width // 2  # the higher label (3) takes the odd pixel
    for row in band:
        assert row.sum() == width
        assert row[20 - low:20 + high].all()
    assert not band[:, :20 - low].any() and not band[:, 20 + high:].any()
    # The same across a horizontal edge.
    assert (void_band(labels.T, width).sum(axis=0) == width).all()
    assert not void_band(labels, 0).any()
    # Image borders are not edges.
    assert not void_band(np.full((9, 9), 2), 5).any()


def test_void_band_on_a_slanted_edge_is_width_pixels_measured_across_it():
    rows, cols = np.mgrid[:60, :60]
    labels = (cols > rows).astype(np.int32) * 5  # a 45 degree edge
    band = void_band(labels, 4)
    # Along a row a band of orthogonal width 4 spans about 4 * sqrt(2) pixels.
    assert 5 <= band[30].sum() <= 6
    # An object well inside a larger one gets its band on both sides of its outline.
    inner = np.zeros((40, 40), np.int32)
    inner[10:30, 10:30] = 7
    inner[15:25, 15:25] = 9
    b = void_band(inner, 4)
    assert b[20, 8:12].all() and not b[20, 7] and not b[20, 12]
    assert b[20, 13:17].all() and not b[20, 12] and not b[20, 17]

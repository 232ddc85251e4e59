"""Coordinates: the core's (row, col) and SAM's (x, y)."""

import numpy as np

from napari_samlabel.core.coords import box_rc_to_xyxy, rc_to_xy, xy_to_rc, xyxy_to_box_rc
from napari_samlabel.core.prompts import Box


def test_rc_xy_round_trip_swaps_axes():
    rc = np.array([[10.0, 50.0], [3.5, 7.25]])
    xy = rc_to_xy(rc)
    assert xy.tolist() == [[50.0, 10.0], [7.25, 3.5]]
    assert np.array_equal(xy_to_rc(xy), rc.astype(np.float32))


def test_box_conversion_normalises_corners():
    assert box_rc_to_xyxy((40, 30), (10, 80)).tolist() == [30, 10, 80, 40]
    tl, br = xyxy_to_box_rc([30, 10, 80, 40])
    assert tl.tolist() == [10, 30] and br.tolist() == [40, 80]
    assert Box((40, 80), (10, 30)).top_left == (10.0, 30.0)

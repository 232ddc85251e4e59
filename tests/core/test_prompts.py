"""Prompts: scribble pixels and serialisation."""

import numpy as np
import pytest

from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble, prompt_from_dict


def test_scribble_pixels_follow_path_and_clip():
    s = Scribble(np.array([[0, 0], [0, 4], [3, 4]]))
    pix = s.pixels()
    assert pix[0].tolist() == [0, 0] and pix[-1].tolist() == [3, 4]
    assert len(pix) == 8  # 5 along the row, 3 down the column, the corner once
    clipped = Scribble(np.array([[-2, 1], [2, 1]])).pixels(shape=(10, 10))
    assert clipped[:, 0].min() == 0 and len(clipped) == 3


def test_thick_scribble_covers_more_pixels():
    thin = Scribble(np.array([[10, 10], [10, 20]]), width=1).pixels()
    thick = Scribble(np.array([[10, 10], [10, 20]]), width=5).pixels()
    assert len(thick) > 3 * len(thin)
    assert {9, 10, 11} <= set(thick[:, 0].tolist())


def test_prompt_serialisation_round_trip():
    op = ObjectPrompts(3, 12, (Point((1.5, 2.0), False), Box((0, 0), (5, 6)),
                               Scribble(np.array([[1, 1], [4, 5]]), True, 3.0)))
    again = ObjectPrompts.from_dict(op.to_dict())
    assert again == op
    assert len(again.points) == 1 and len(again.boxes) == 1 and len(again.scribbles) == 1
    with pytest.raises(ValueError, match="unknown prompt type"):
        prompt_from_dict({"type": "circle"})
    with pytest.raises(ValueError, match="bad point"):
        prompt_from_dict({"type": "point", "rc": [1]})

"""Composing object masks into label maps: the overlap rule."""

import numpy as np
import pytest

from napari_samlabel.core.compose import MaskEntry, compose_label_maps, paint_order


def test_compose_overlap_rule():
    a = np.zeros((4, 4), bool)
    a[:, :3] = True
    b = np.zeros((4, 4), bool)
    b[:, 1:] = True
    sem, inst = compose_label_maps((4, 4), [MaskEntry(1, 1, a, 0.9), MaskEntry(2, 2, b, 0.8)])
    assert sem[0].tolist() == [1, 1, 1, 2] and inst[0].tolist() == [1, 1, 1, 2]
    sem, _ = compose_label_maps((4, 4), [MaskEntry(1, 1, a, 0.8), MaskEntry(2, 2, b, 0.8)])
    assert sem[0].tolist() == [1, 2, 2, 2]  # tie: later wins
    assert paint_order([None, 0.1, None]) == [0, 2, 1]
    with pytest.raises(ValueError, match="mask shape"):
        compose_label_maps((5, 5), [MaskEntry(1, 1, a, 0.8)])

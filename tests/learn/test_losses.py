import numpy as np
import pytest
import torch

from napari_samlabel.learn.losses import (
    boundary_weights,
    distance_weights,
    pixel_weights,
    weighted_cross_entropy,
)


def square(size=21, lo=5, hi=16, value=1):
    lab = np.zeros((size, size), np.uint8)
    lab[lo:hi, lo:hi] = value
    return lab


def test_distance_weights_centre_outweighs_edge():
    lab = square()
    w = distance_weights(lab)
    centre, edge, corner_inside = w[10, 10], w[5, 10], w[6, 6]
    assert centre > corner_inside > edge
    # background just outside the square is an edge of the background region too
    assert w[4, 10] < w[0, 10] or w[4, 10] < w[1, 1]
    assert 0 < edge < 0.5 < centre < 1


def test_distance_weights_void_is_zero():
    lab = square()
    lab[0:3, :] = 255
    w = distance_weights(lab)
    assert np.all(w[0:3] == 0)
    assert np.all(w[3:] > 0)


def test_boundary_weights_on_the_border_only():
    lab = square()
    w = boundary_weights(lab, radius=1, boundary=3.0)
    assert w[10, 10] == 1.0 and w[0, 0] == 1.0  # far from any edge
    assert w[5, 10] == 3.0 and w[4, 10] == 3.0  # on the class border, both sides
    lab[0:2, :] = 255
    w = boundary_weights(lab, radius=1, boundary=3.0)
    assert np.all(w[0:2] == 0)
    assert w[3, 10] == 1.0  # the edge to void is not a class boundary


def test_pixel_weights_none_and_bad_kind():
    lab = square()
    lab[0, 0] = 255
    w = pixel_weights(lab, "none")
    assert w[0, 0] == 0 and w.sum() == lab.size - 1
    with pytest.raises(ValueError, match="weighting"):
        pixel_weights(lab, "nope")


def test_weighted_ce_ignores_void_and_follows_weights():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 1, 0, 0] = 5.0  # pixel 0 right (class 1), pixel 1 wrong (class 1 vs 0)
    logits[0, 1, 0, 1] = 5.0
    target = torch.tensor([[[1, 0, 255]]])
    only_right = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 0.0, 1.0]]]))
    only_wrong = weighted_cross_entropy(logits, target, torch.tensor([[[0.0, 1.0, 1.0]]]))
    assert only_right < 0.01 < 4.9 < only_wrong
    zero = weighted_cross_entropy(logits, torch.full((1, 1, 3), 255), torch.ones(1, 1, 3))
    assert float(zero) == 0.0

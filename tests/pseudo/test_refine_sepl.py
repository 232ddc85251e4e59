"""SEPL voting on hand-made masks: each threshold at and just past its boundary."""

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import AutoMask, sepl_refine, sepl_votes


def _mask(shape, rows, cols):
    m = np.zeros(shape, dtype=bool)
    m[rows, cols] = True
    return m


def _flat_mask(shape, n_in, region, n_out):
    """A mask with ``n_in`` pixels inside ``region`` and ``n_out`` pixels outside it."""
    m = np.zeros(shape, dtype=bool).reshape(-1)
    inside = np.flatnonzero(region.reshape(-1))
    outside = np.flatnonzero(~region.reshape(-1))
    m[inside[:n_in]] = True
    m[outside[:n_out]] = True
    return m.reshape(shape)


@pytest.fixture()
def big_class():
    """40 x 50 map, class 3 on 1000 pixels (rows 0-19), so the 0.85 rule needs > 850."""
    coarse = np.zeros((40, 50), dtype=np.uint8)
    coarse[:20] = 3
    return coarse


def test_segment_ratio_exactly_half_does_not_vote(big_class):
    region = big_class == 3
    half = _flat_mask(big_class.shape, 100, region, 100)  # 100 / 200 = 0.5
    above = _flat_mask(big_class.shape, 101, region, 100)  # 101 / 201 > 0.5
    assert sepl_votes(big_class, np.stack([half, above])).tolist() == [0, 3]


def test_class_ratio_exactly_085_does_not_vote():
    coarse = np.zeros((40, 50), dtype=np.uint8)
    coarse[0, :20] = 1  # class 1 has 20 pixels; 17 / 20 = 0.85 exactly
    region = coarse == 1
    at = _flat_mask(coarse.shape, 17, region, 200)  # 17/217 of the mask: segment rule silent
    above = _flat_mask(coarse.shape, 18, region, 200)  # 18 / 20 = 0.9
    assert sepl_votes(coarse, np.stack([at, above])).tolist() == [0, 1]


def test_thresholds_are_parameters(big_class):
    region = big_class == 3
    m = _flat_mask(big_class.shape, 100, region, 100)
    assert sepl_votes(big_class, m[None], segment_ratio=0.49).tolist() == [3]
    assert sepl_votes(big_class, m[None], segment_ratio=0.5).tolist() == [0]


def test_refined_map_takes_voted_masks_and_keeps_uncovered_coarse_pixels():
    coarse = np.zeros((10, 10), dtype=np.uint8)
    coarse[2:6, 2:6] = 1  # 16 pixels
    coarse[8, 8] = 1  # a stray coarse pixel no mask covers: kept
    voted = _mask(coarse.shape, slice(1, 7), slice(1, 7))  # 16 of 36 in class: 16/17 > 0.85
    ignored = _mask(coarse.shape, slice(0, 1), slice(0, 10))  # all background: no vote
    out = sepl_refine(coarse, [AutoMask(voted, 36, 0.9, 0.9, (1, 1, 6, 6), 2, (3, 3)),
                               AutoMask(ignored, 10, 0.9, 0.9, (0, 0, 10, 1), 2, (5, 0))])
    expected = np.zeros_like(coarse)
    expected[1:7, 1:7] = 1
    expected[8, 8] = 1
    np.testing.assert_array_equal(out, expected)


def test_class_pixels_under_a_non_voting_mask_become_background():
    coarse = np.zeros((10, 10), dtype=np.uint8)
    coarse[0:2, 0:2] = 2  # 4 pixels
    big = np.ones((10, 10), dtype=bool)  # covers them, but 4/100 and 4/4=1.0 -> votes!
    assert sepl_votes(coarse, big[None]).tolist() == [2]
    small_bg = _mask(coarse.shape, slice(0, 1), slice(0, 10))  # 2 of 10 class, 2/4 class
    out = sepl_refine(coarse, small_bg[None])
    assert out[0, 0] == 0 and out[0, 1] == 0  # covered by a mask that voted for nobody
    assert out[1, 0] == 2 and out[1, 1] == 2  # not covered: coarse label kept


def test_mask_voting_for_two_classes_joins_the_lower_index():
    coarse = np.zeros((10, 10), dtype=np.uint8)
    coarse[0, :5] = 1
    coarse[1, :5] = 2
    mask = np.ones((10, 10), dtype=bool)  # holds all of both classes: votes for 1 and 2
    assert sepl_votes(coarse, mask[None]).tolist() == [1]
    out = sepl_refine(coarse, mask[None])
    assert set(np.unique(out).tolist()) == {1}


def test_overlap_between_class_regions_goes_to_the_higher_class():
    coarse = np.zeros((10, 10), dtype=np.uint8)
    coarse[0:4, 0:4] = 1
    coarse[0:4, 6:10] = 2
    a = _mask(coarse.shape, slice(0, 4), slice(0, 6))  # 16 of 24 in class 1
    b = _mask(coarse.shape, slice(0, 4), slice(4, 10))  # 16 of 24 in class 2
    b[0:4, 4:6] = True
    a[0:4, 4:6] = True  # columns 4-5 in both masks
    assert sepl_votes(coarse, np.stack([a, b])).tolist() == [1, 2]
    out = sepl_refine(coarse, np.stack([a, b]))
    assert (out[0:4, 4:6] == 2).all()
    assert (out[0:4, 0:4] == 1).all()


def test_void_stays_void_unless_a_voted_mask_claims_it():
    coarse = np.zeros((10, 10), dtype=np.uint8)
    coarse[0:3, 0:3] = 4
    coarse[0:3, 3] = 255
    coarse[9, 9] = 255
    mask = _mask(coarse.shape, slice(0, 3), slice(0, 4))  # 9 of 12 in class 4
    out = sepl_refine(coarse, mask[None])
    assert (out[0:3, 0:4] == 4).all()  # the void column is claimed
    assert out[9, 9] == 255
    assert sepl_votes(coarse, mask[None]).tolist() == [4]


def test_no_masks_returns_coarse_with_void_kept():
    coarse = np.zeros((6, 7), dtype=np.uint8)
    coarse[1:3, 1:3] = 5
    coarse[5, 6] = 255
    np.testing.assert_array_equal(sepl_refine(coarse, []), coarse)


def test_bad_inputs_raise():
    coarse = np.zeros((6, 7), dtype=np.uint8)
    with pytest.raises(ValueError, match="expected N x 6 x 7"):
        sepl_refine(coarse, np.zeros((1, 7, 6), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        sepl_refine(np.zeros((6, 7, 3), dtype=np.uint8), [])
    with pytest.raises(ValueError, match="segment_ratio"):
        sepl_votes(coarse, [], segment_ratio=1.5)

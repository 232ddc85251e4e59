"""SAMS on hand-made masks and maps: occupation filter, classification, seed painting."""

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import (
    AutoMask,
    classify_quasi_superpixels,
    paint_seeds,
    sams_seeds,
    select_quasi_superpixels,
)

SHAPE = (20, 20)


def _cover(n_total, n_inside, region):
    """A mask of ``n_total`` pixels, ``n_inside`` of them inside ``region``."""
    flat = np.zeros(region.size, dtype=bool)
    inside = np.flatnonzero(region.reshape(-1))
    outside = np.flatnonzero(~region.reshape(-1))
    flat[inside[:n_inside]] = True
    flat[outside[:n_total - n_inside]] = True
    return flat.reshape(region.shape)


def _auto(mask, level):
    return AutoMask(mask, int(mask.sum()), 0.9, 0.95, (0, 0, 1, 1), level, (0, 0))


@pytest.fixture()
def whole():
    m = np.zeros(SHAPE, dtype=bool)
    m[:10] = True  # 200 pixels
    return m


def test_occupation_exactly_t_r_is_dropped_just_below_is_kept(whole):
    at = _cover(100, 30, whole)  # 30 / 100 = 0.3: not below t_r
    below = _cover(100, 29, whole)  # 0.29
    kept = select_quasi_superpixels([_auto(whole, 2), _auto(at, 1), _auto(below, 1)])
    assert kept.tolist() == [0, 2]


def test_masks_of_one_level_do_not_filter_each_other(whole):
    twin = whole.copy()
    part_a = _cover(50, 0, whole)
    part_b = part_a.copy()  # identical parts, not covered by the whole masks
    kept = select_quasi_superpixels([_auto(whole, 2), _auto(twin, 2), _auto(part_a, 1),
                                     _auto(part_b, 1)])
    assert kept.tolist() == [0, 1, 2, 3]


def test_without_whole_masks_parts_lead():
    part = np.zeros(SHAPE, dtype=bool)
    part[:5] = True  # 100 px
    sub = _cover(10, 5, part)  # half inside the part: dropped
    lone = _cover(10, 0, part)
    assert select_quasi_superpixels([_auto(sub, 0), _auto(part, 1), _auto(lone, 0)]).tolist() \
        == [1, 2]


def test_union_versus_max_occupation(whole):
    part = np.zeros(SHAPE, dtype=bool)
    part[10:15] = True  # 100 px, disjoint from the whole mask
    sub = np.zeros(SHAPE, dtype=bool)
    sub[9, :10] = True  # 10 px in the whole mask
    sub[10, :10] = True  # 10 px in the part
    sub[19, :20] = True  # 20 px free: 20/40 covered by the union, 10/40 by either alone
    masks = [_auto(whole, 2), _auto(part, 1), _auto(sub, 0)]
    assert select_quasi_superpixels(masks, occupation="union").tolist() == [0, 1]
    assert select_quasi_superpixels(masks, occupation="max").tolist() == [0, 1, 2]


def _three_regions():
    masks = np.zeros((3, *SHAPE), dtype=bool)
    masks[0, :, :5] = True
    masks[1, :, 5:10] = True
    masks[2, :, 10:15] = True
    return masks


def test_classification_min_max_and_background_power():
    masks = _three_regions()
    cam = np.zeros((1, *SHAPE))
    cam[0, :, :5] = 0.2
    cam[0, :, 5:10] = 0.2 + 0.55 * 0.6  # normalised score 0.55
    cam[0, :, 10:15] = 0.8
    labels, scores = classify_quasi_superpixels(cam, [7], masks, alpha=0.6)
    np.testing.assert_allclose(scores[:, 1], [0.0, 0.55, 1.0])
    np.testing.assert_allclose(scores[:, 0], [1.0, 0.45 ** 0.6, 0.0])
    # 0.45 ** 0.6 = 0.619 > 0.55: background at alpha 0.6, the class at alpha 1.
    assert labels.tolist() == [0, 0, 7]
    labels_1, _ = classify_quasi_superpixels(cam, [7], masks, alpha=1.0)
    assert labels_1.tolist() == [0, 7, 7]


def test_classification_picks_the_best_class_and_is_invariant_to_affine_scores():
    masks = _three_regions()
    maps = np.zeros((2, *SHAPE))
    maps[0, :, :5], maps[1, :, :5] = 0.9, 0.1
    maps[0, :, 5:10], maps[1, :, 5:10] = 0.1, 0.9
    maps[0, :, 10:15], maps[1, :, 10:15] = 0.0, 0.0
    labels, _ = classify_quasi_superpixels(maps, [3, 12], masks)
    assert labels.tolist() == [3, 12, 0]
    # Logits of a network: any positive scale and shift per class gives the same labels.
    logits = maps * np.array([4.0, 0.5])[:, None, None] + np.array([-3.0, 10.0])[:, None, None]
    labels_logits, _ = classify_quasi_superpixels(logits, [3, 12], masks)
    assert labels_logits.tolist() == labels.tolist()


def test_single_quasi_superpixel_uses_the_raw_mean():
    masks = np.ones((1, *SHAPE), dtype=bool)
    labels, scores = classify_quasi_superpixels(np.full((1, *SHAPE), 0.8), [2], masks)
    assert scores[0, 1] == pytest.approx(0.8)
    assert labels.tolist() == [2]  # 0.8 > 0.2 ** 0.6 = 0.38


def test_paint_seeds_level_then_score_then_order():
    masks = np.zeros((4, *SHAPE), dtype=bool)
    masks[0, :10, :10] = True  # whole, low score
    masks[1, 5:15, 5:15] = True  # part, high score: loses to the whole mask on the overlap
    masks[2, 15:, 15:] = True  # two part masks with equal scores: the first one wins
    masks[3, 15:, 15:] = True
    seeds = paint_seeds(masks, np.array([1, 2, 3, 4]), np.array([2, 1, 1, 1]),
                        np.array([0.1, 0.9, 0.5, 0.5]))
    assert seeds[7, 7] == 1
    assert seeds[12, 12] == 2
    assert seeds[17, 17] == 3
    assert seeds[0, 19] == 0  # uncovered: background


def test_paint_seeds_higher_score_wins_within_a_level():
    masks = np.zeros((2, *SHAPE), dtype=bool)
    masks[0, :10] = True
    masks[1, 5:15] = True
    seeds = paint_seeds(masks, np.array([1, 2]), np.array([1, 1]), np.array([0.8, 0.6]))
    assert seeds[7, 0] == 1


def test_sams_seeds_end_to_end(whole):
    part = np.zeros(SHAPE, dtype=bool)
    part[12:16, :8] = True  # free part, kept
    buried = np.zeros(SHAPE, dtype=bool)
    buried[2:4, :] = True  # inside the whole mask, dropped
    cam = np.zeros((1, *SHAPE))
    cam[0, :10] = 1.0
    masks = [_auto(whole, 2), _auto(part, 1), _auto(buried, 1)]
    res = sams_seeds(cam, [15], masks)
    assert res.kept.tolist() == [0, 1]
    assert res.labels.tolist() == [15, 0]
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[:10] = 15
    np.testing.assert_array_equal(res.seeds, expected)


def test_sams_input_errors(whole):
    with pytest.raises(ValueError, match="background"):
        sams_seeds(np.zeros((1, *SHAPE)), [0], [_auto(whole, 2)])
    with pytest.raises(ValueError, match="2 score maps but 1"):
        sams_seeds(np.zeros((2, *SHAPE)), [1], [_auto(whole, 2)])
    with pytest.raises(ValueError, match="levels are needed"):
        sams_seeds(np.zeros((1, *SHAPE)), [1], whole[None])
    with pytest.raises(ValueError, match="NaN"):
        sams_seeds(np.full((1, *SHAPE), np.nan), [1], [_auto(whole, 2)])
    with pytest.raises(ValueError, match="occupation"):
        select_quasi_superpixels([_auto(whole, 2)], occupation="sum")

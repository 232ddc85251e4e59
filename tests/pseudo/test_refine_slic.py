"""SLIC snapping rules and the adaptive-ratio confidence threshold."""

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import (
    adaptive_threshold,
    label_confidence,
    mark_low_confidence,
    object_confidence,
    slic_refine,
    snap_to_superpixels,
    superpixels,
)


@pytest.fixture()
def segments():
    """Four 1 x 10 superpixels (rows), ids 5, 6, 7, 8."""
    return np.repeat(np.array([[5], [6], [7], [8]]), 10, axis=1)


@pytest.fixture()
def coarse():
    c = np.zeros((4, 10), dtype=np.uint8)
    c[0, :6] = 1  # 6 of 10 class 1: a strict majority
    c[1, :5] = 1  # 5 of 10: a tie, no majority
    c[2, :] = 2  # all class 2
    c[3, :3] = 3  # 3 class-3 pixels, the rest void
    c[3, 3:] = 255
    return c


def test_majority_rule(coarse, segments):
    out = snap_to_superpixels(coarse, segments, rule="majority")
    assert out[0].tolist() == [1] * 10
    assert out[1].tolist() == [255] * 10
    assert out[2].tolist() == [2] * 10
    assert out[3].tolist() == [3] * 10  # void pixels do not count against the class


def test_all_rule(coarse, segments):
    out = snap_to_superpixels(coarse, segments, rule="all")
    assert out[0].tolist() == [255] * 10
    assert out[2].tolist() == [2] * 10
    assert out[3].tolist() == [3] * 10


def test_all_void_superpixel_stays_void(segments):
    c = np.full((4, 10), 255, dtype=np.uint8)
    c[0] = 0
    out = snap_to_superpixels(c, segments)
    assert (out[0] == 0).all() and (out[1:] == 255).all()


def test_adaptive_threshold_ratio():
    conf = np.random.default_rng(0).permutation(100).astype(float).reshape(10, 10)
    assert adaptive_threshold(conf, 0.2) == 20.0
    assert adaptive_threshold(conf, 0.0) == 0.0
    assert adaptive_threshold(conf, 1.0) == 99.0
    labels = np.ones((10, 10), dtype=np.uint8)
    out = mark_low_confidence(labels, conf, 0.2)
    np.testing.assert_array_equal(out == 255, conf < 20)
    assert (out == 255).sum() == 20
    assert (mark_low_confidence(labels, conf, 0.0) == 255).sum() == 0


def test_ties_at_the_threshold_are_kept():
    conf = np.array([[0.1, 0.5, 0.5, 0.5, 0.9]])
    out = mark_low_confidence(np.ones((1, 5), dtype=np.uint8), conf, 0.4)  # index 2 -> 0.5
    assert out.tolist() == [[255, 1, 1, 1, 1]]


def test_nan_confidence_is_void_and_left_out_of_the_sort():
    conf = np.array([[np.nan, 0.0, 1.0, 2.0, 3.0]])
    out = mark_low_confidence(np.ones((1, 5), dtype=np.uint8), conf, 0.25)  # among 4 -> 1.0
    assert out.tolist() == [[255, 255, 1, 1, 1]]


def test_label_confidence():
    labels = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    maps = np.array([[[0.2, 1.0, 0.0, 0.0]], [[0.5, 0.0, 1.0, 2.0]]])  # maxima 1.0 and 2.0
    conf = label_confidence(labels, maps, [1, 2])
    np.testing.assert_allclose(conf[0, :3], [1 - 0.25, 1.0, 0.5])
    assert np.isnan(conf[0, 3])


def test_slic_snaps_a_misaligned_rectangle_to_the_image_edges(rect_image):
    truth = np.zeros(rect_image.shape[:2], dtype=bool)
    truth[20:60, 30:90] = True
    coarse = np.zeros(truth.shape, dtype=np.uint8)
    coarse[23:63, 33:93] = 1  # shifted by 3 pixels
    out = slic_refine(rect_image, coarse, n_segments=100)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(out == 1, truth) > iou(coarse == 1, truth)


def test_slic_refine_with_maps_voids_the_least_confident(rect_image):
    coarse = np.zeros(rect_image.shape[:2], dtype=np.uint8)
    coarse[20:60, 30:90] = 1
    cam = np.zeros((1, *coarse.shape))
    cam[0, 20:60, 30:90] = np.linspace(0.1, 1.0, 60)[None, :]  # weak on the left
    segs = superpixels(rect_image)
    out = slic_refine(rect_image, coarse, maps=cam, class_ids=[1], ignore_ratio=0.1,
                      segments=segs)
    snapped = snap_to_superpixels(coarse, segs)
    changed = (out == 255) & (snapped != 255)
    assert 0 < changed.sum() <= 0.1 * coarse.size
    assert (snapped[changed] == 1).all()  # background has confidence 1: never voided here
    assert changed[:, 30:40].any() and not changed[:, 80:90].any()


def test_bad_inputs(segments, coarse):
    with pytest.raises(ValueError, match="rule"):
        snap_to_superpixels(coarse, segments, rule="most")
    with pytest.raises(ValueError, match="differ in size"):
        snap_to_superpixels(coarse, segments[:2])
    with pytest.raises(ValueError, match="ratio"):
        adaptive_threshold(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="either confidence or maps"):
        slic_refine(np.zeros((4, 10, 3), np.uint8), coarse, np.ones((4, 10)),
                    maps=np.ones((1, 4, 10)), class_ids=[1])


def test_object_confidence_voids_the_least_trusted_sam_masks():
    """SLIC with SAM's per-object predicted IoU as the confidence source (no CAMs needed)."""
    inst = np.zeros((10, 10), dtype=np.uint8)
    inst[0:2, :] = 1   # 20 px, IoU 0.95
    inst[2:4, :] = 2   # 20 px, IoU 0.40: the worst object
    inst[4:6, :] = 3   # 20 px, IoU 0.80
    inst[6, :] = 4     # no score (an imported object): kept, like the background
    inst[9, 9] = 255
    conf = object_confidence(inst, {1: 0.95, 2: 0.4, 3: 0.8, 4: None})
    assert conf[0, 0] == 0.95 and conf[2, 0] == 0.4 and np.isinf(conf[8, 0])
    assert np.isinf(conf[6, 0]) and np.isnan(conf[9, 9])
    labels = np.where(inst == 255, 255, np.where(inst > 0, 7, 0)).astype(np.uint8)
    out = mark_low_confidence(labels, conf, 0.3)  # ranked: 60 scored pixels -> 18th = 0.4
    assert (out[2:4] == 7).all()  # ties at the threshold are kept
    out = mark_low_confidence(labels, conf, 0.4)  # 24th of 60 -> 0.8
    assert (out[2:4] == 255).all() and (out[0:2] == 7).all() and (out[4:6] == 7).all()
    assert (out[7:9] == 0).all() and (out[6] == 7).all()  # background, unscored: kept
    # only background and void: nothing to rank, background stays
    bg = mark_low_confidence(np.zeros((2, 2), np.uint8),
                             object_confidence(np.array([[0, 0], [0, 255]], np.uint8), {}))
    assert bg.tolist() == [[0, 0], [0, 255]]
    out = slic_refine(np.zeros((10, 10, 3), np.uint8), labels, conf, ignore_ratio=0.4,
                      segments=np.arange(100).reshape(10, 10))
    assert (out[2:4] == 255).all() and (out[0:2] == 7).all()

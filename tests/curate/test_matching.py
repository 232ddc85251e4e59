"""Ground-truth matching: one-to-one instances, class regions, merges, misses, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.curate.assessment import assess_image, assess_object
from napari_samlabel.curate.matching import GroundTruth
from napari_samlabel.curate.signals import Thresholds

from ._cases import SHAPE, _moved, _with, clean_mask, clean_object


def test_gt_uses_instances_and_ignores_void():
    obj, _ = clean_object()
    sem = np.where(clean_mask(), 1, 0).astype(np.uint8)
    inst = np.where(clean_mask(), 1, 0).astype(np.uint8)
    # A second GT instance of the same class elsewhere; void band on the object's first row.
    sem[80:90, 80:90] = 1
    inst[80:90, 80:90] = 2
    sem[30, 30:60] = 255
    inst[30, 30:60] = 255
    a = assess_object(obj, SHAPE, gt=GroundTruth(sem, inst))
    assert a.signals["gt_iou"] == pytest.approx(1.0)  # void row ignored on both sides
    img = assess_image("x", SHAPE, [obj], gt=GroundTruth(sem, inst))
    assert "gt_missed" in img.flags and img.signals["gt_missed"] == 1
    assert img.signals["gt_objects"] == 2


def test_parts_are_not_matched_against_object_ground_truth():
    obj, _ = clean_object()
    rows, cols = np.nonzero(obj.mask)
    head = np.zeros(SHAPE, bool)
    head[rows.min():rows.min() + 5, cols.min():cols.min() + 5] = True
    part = AnnotatedObject(2, 3, head, score=0.95)
    gt = GroundTruth(np.where(clean_mask(), 1, 0).astype(np.uint8),
                     np.where(clean_mask(), 1, 0).astype(np.uint8))
    # Matched as an object, the head is a mismatch (issue 16: it lies under its dog in the
    # class map, so the image's score, 1 - its mIoU, does not see it; the flag does).
    flat = assess_image("x", SHAPE, [obj, part], gt=gt)
    assert "gt_mismatch" in flat.objects[1].flags and "gt_mismatch" in flat.flags
    img = assess_image("x", SHAPE, [obj, part], gt=gt, parts=[2])
    assert "gt_iou" not in img.objects[1].signals and not img.objects[1].flags
    assert img.objects[0].signals["gt_iou"] == pytest.approx(1.0)
    assert img.flags == [] and img.score == 0.0 and img.signals["gt_objects"] == 1


def test_gt_class_regions_split_into_components():
    sem = np.zeros(SHAPE, dtype=np.uint8)
    sem[30:50, 30:60] = 1
    sem[80:90, 80:90] = 1  # another object of class 1, apart from the first
    gt = GroundTruth(sem)
    obj, _ = clean_object()
    # The mask is compared with its own component only, not with the whole class region.
    assert assess_object(obj, SHAPE, gt=gt).signals["gt_iou"] == pytest.approx(1.0)
    img = assess_image("x", SHAPE, [obj], gt=gt)
    assert img.signals["gt_objects"] == 2 and img.signals["gt_missed"] == 1
    # Half the mask on background: IoU 0.5 against the component.
    half, _ = clean_object(mask=_with(clean_mask(), slice(30, 50), slice(60, 90), True))
    assert assess_object(half, SHAPE, gt=gt).signals["gt_iou"] == pytest.approx(600 / 1200)
    # A mask on background only matches nothing.
    off, _ = clean_object(mask=_moved(clean_mask(), 0, -25))
    away = assess_object(off, SHAPE, gt=gt)
    assert away.signals["gt_iou"] < 0.2 and "gt_mismatch" in away.flags
    # Both objects found: nothing missed.
    both, _ = clean_object(object_id=2, mask=sem == 1)
    assert "gt_missed" not in assess_image("y", SHAPE, [obj, both], gt=gt).flags


# -- ground truth: one-to-one matching, merges, duplicates -------------------------------------
def _instances(*rects):
    sem = np.zeros(SHAPE, dtype=np.uint8)
    inst = np.zeros(SHAPE, dtype=np.uint8)
    for k, (cls, rows, cols) in enumerate(rects, 1):
        sem[rows, cols] = cls
        inst[rows, cols] = k
    return GroundTruth(sem, inst)


def _mask(rows, cols):
    return _with(np.zeros(SHAPE, bool), rows, cols, True)


def test_a_mask_that_merges_two_instances_is_caught():
    """The seed paper's failure: one mask over two neighbouring objects."""
    gt = _instances((15, slice(20, 60), slice(10, 40)), (15, slice(20, 60), slice(40, 70)))
    merged = AnnotatedObject(1, 15, _mask(slice(20, 60), slice(10, 70)), (), 0.97)
    img = assess_image("m", SHAPE, [merged], gt=gt)
    [o] = img.objects
    assert o.signals["gt_iou"] == pytest.approx(0.5)  # not a match: PASCAL needs > 0.5
    assert o.signals["gt_merge"] == 1.0
    assert {"gt_merged", "gt_mismatch"} <= set(o.flags)
    assert img.signals["gt_missed"] == 2 and "gt_missed" in img.flags
    # Issue 16: the score is 1 - the image's mIoU, and the class map is right (one mask of
    # the right class over both dogs); the flags and the main reason name the merge.
    assert img.score == 0.0 and img.signals["gt_miou"] == 1.0
    assert img.main_reason["signal"] == "gt_missed"


def test_a_mask_that_swallows_a_small_neighbour_is_caught():
    # IoU with the large instance is high (a match), yet the small one is inside the mask.
    gt = _instances((15, slice(10, 70), slice(10, 60)), (11, slice(40, 55), slice(60, 70)))
    mask = _mask(slice(10, 70), slice(10, 60)) | _mask(slice(40, 55), slice(60, 70))
    img = assess_image("s", SHAPE, [AnnotatedObject(1, 15, mask, (), 0.97)], gt=gt)
    [o] = img.objects
    assert o.signals["gt_iou"] > 0.9 and "gt_mismatch" not in o.flags
    assert "gt_merged" in o.flags and o.score >= 0.9 * 0.99
    assert img.signals["gt_missed"] == 1  # the small one has no mask of its own


def test_gt_instances_are_matched_one_to_one():
    gt = _instances((1, slice(10, 40), slice(10, 40)), (1, slice(50, 90), slice(50, 90)))
    a = AnnotatedObject(1, 1, _mask(slice(10, 40), slice(10, 40)), (), 0.97)
    twin = AnnotatedObject(2, 1, _mask(slice(11, 40), slice(10, 40)), (), 0.97)
    img = assess_image("d", SHAPE, [twin, a], gt=gt)
    by_id = {o.object_id: o for o in img.objects}
    # The better mask takes the instance whatever the order; the other is a duplicate.
    assert by_id[1].signals["gt_iou"] == 1.0 and by_id[1].flags == []
    assert by_id[2].signals["gt_iou"] == 0.0
    assert {"gt_duplicate", "gt_mismatch"} <= set(by_id[2].flags)
    # Covering the instance it duplicates is not a merge.
    assert by_id[2].signals["gt_merge"] == 0.0 and "gt_merged" not in by_id[2].flags
    assert img.signals["gt_missed"] == 1  # the second instance has no mask
    # The ground truth's compare() does the same directly.
    res = gt.compare([twin.mask, a.mask])
    assert [m.duplicate for m in res.matches] == [True, False]
    assert (res.objects, res.missed) == (2, 1)


def test_gt_match_needs_an_iou_above_one_half():
    gt = _instances((1, slice(0, 20), slice(0, 20)))
    exactly_half = _mask(slice(0, 20), slice(0, 40))  # 400 / 800
    assert gt.compare([exactly_half]).missed == 1
    assert gt.compare([_mask(slice(0, 20), slice(0, 39))]).missed == 0  # 400 / 780
    assert "gt_mismatch" in assess_image("h", SHAPE, [AnnotatedObject(1, 1, exactly_half)],
                                         gt=gt).flags


def test_class_region_merges_count_other_classes_only():
    sem = np.zeros(SHAPE, dtype=np.uint8)
    sem[20:60, 10:40] = 15  # a person
    sem[20:60, 40:70] = 13  # a horse touching it
    sem[70:90, 10:30] = 15  # another part of a person, apart (an occluded person, perhaps)
    gt = GroundTruth(sem)
    both = AnnotatedObject(1, 15, (sem == 15) | (sem == 13), (), 0.97)
    a = assess_object(both, SHAPE, gt=gt)
    assert a.signals["gt_merge"] == 1.0 and "gt_merged" in a.flags
    person = AnnotatedObject(1, 15, sem == 15, (), 0.97)
    p = assess_object(person, SHAPE, gt=gt)
    assert p.signals["gt_merge"] == 0.0 and "gt_merged" not in p.flags


def test_ground_truth_specks_are_neither_missed_nor_merged():
    # Instance maps written from VOC class maps carry specks of a few pixels as instances.
    gt = _instances((8, slice(20, 60), slice(20, 60)), (8, slice(61, 62), slice(20, 25)),
                    (8, slice(10, 12), slice(70, 72)))
    cat = AnnotatedObject(1, 8, _mask(slice(20, 62), slice(20, 60)), (), 0.97)  # + a speck
    img = assess_image("s", SHAPE, [cat], gt=gt)
    assert img.signals["gt_objects"] == 1 and img.signals["gt_missed"] == 0
    assert img.objects[0].signals["gt_merge"] == 0.0 and img.flags == []
    # With the floor at 0 they count: both specks missed, one of them merged.
    img = assess_image("s", SHAPE, [cat], gt=gt, thresholds=Thresholds(tiny=0.0))
    assert img.signals["gt_objects"] == 3 and img.signals["gt_missed"] == 2
    assert "gt_merged" in img.flags

"""Failure signals: hand-worked values, every flag firing on a constructed case, ranking order."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.curate.signals import (
    AREA_HUGE_SPEC,
    AREA_TINY_SPEC,
    FLAG_LEVEL,
    FLAGS,
    SIGNAL_SPECS,
    GroundTruth,
    GtMatch,
    Thresholds,
    assess_image,
    assess_object,
    combine,
    fragmentation,
    logits_to_image,
    multimask_disagreement,
    prompt_consistency,
    rank_images,
    stability_score,
)

SHAPE = (100, 100)


# -- stability score ----------------------------------------------------------------------------
def test_stability_score_hand_worked():
    logits = np.array([[2.0, 0.5, -0.5], [-2.0, 1.5, 0.9]])
    # > +1: {2, 1.5} -> 2 pixels; > -1: {2, 0.5, -0.5, 1.5, 0.9} -> 5 pixels.
    assert stability_score(logits) == pytest.approx(2 / 5)
    # offset 0.5: > 0.5: {2, 1.5, 0.9} = 3; > -0.5 (strict): {2, 0.5, 1.5, 0.9} = 4.
    assert stability_score(logits, offset=0.5) == pytest.approx(3 / 4)
    # threshold 1, offset 1: > 2: none; > 0: 4 pixels.
    assert stability_score(logits, offset=1.0, threshold=1.0) == pytest.approx(0.0)


def test_stability_score_matches_segment_anything():
    torch = pytest.importorskip("torch")
    amg = pytest.importorskip("segment_anything.utils.amg")
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(3, 40, 50)).astype(np.float32)
    ours = stability_score(logits, offset=1.0, threshold=0.0)
    theirs = amg.calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours.shape == (3,)


def test_stability_of_empty_mask_is_zero():
    assert stability_score(np.full((8, 8), -5.0)) == 0.0


def test_logits_to_image_follows_sam_geometry():
    # A 512 x 256 (H x W) image is resized to 1024 x 512 and padded to 1024 x 1024, so the
    # image covers the left half of the 256 x 256 low-res grid: columns 0..127.
    low = np.full((1, 256, 256), -10.0, dtype=np.float32)
    low[:, :, :64] = 10.0  # left half of the image part
    up = logits_to_image(low, (512, 256))
    assert up.shape == (512, 256)
    mask = up > 0
    assert mask[:, :124].all() and not mask[:, 132:].any()
    full = np.zeros((20, 30), dtype=np.float32)
    assert logits_to_image(full, (20, 30)) is not None
    with pytest.raises(ValueError, match="logits"):
        logits_to_image(np.zeros(5), (20, 30))


def test_logits_to_image_agrees_with_sam_postprocessing():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    low = ndi.gaussian_filter(rng.normal(0, 40, (256, 256)), 6).astype(np.float32)
    h, w = 300, 451
    # SamPredictor.postprocess_masks: to 1024 x 1024, crop the resized image, to (h, w).
    scale = 1024 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    t = F.interpolate(torch.from_numpy(low)[None, None], (1024, 1024), mode="bilinear",
                      align_corners=False)[..., :newh, :neww]
    ref = F.interpolate(t, (h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    ours = logits_to_image(low, (h, w))
    # One bilinear pass at SAM's sample positions vs SAM's two passes: nearly identical.
    assert np.abs(ours - ref).max() < 0.05
    assert np.mean((ours > 0) == (ref > 0)) > 0.999
    assert stability_score(ours) == pytest.approx(stability_score(ref), abs=0.002)


def test_stability_from_low_res_logits_of_the_real_sam_code_path(astronaut):
    """The tiny random-weight SAM through SamPredictor: our upsampling of its low-res logits
    matches its own full-resolution logits, so the stability scores agree."""
    pytest.importorskip("segment_anything")
    from segment_anything import SamPredictor

    from napari_samlabel.testing.models import build_tiny_sam

    image = astronaut[:96]  # 96 x 128: not square, so the padding geometry matters
    predictor = SamPredictor(build_tiny_sam())
    predictor.set_image(image)
    full, _, low = predictor.predict(point_coords=np.array([[60.0, 40.0]]),
                                     point_labels=np.array([1]), multimask_output=True,
                                     return_logits=True)
    for k in range(3):
        ours = logits_to_image(low[k], image.shape[:2])
        scale = max(1.0, float(np.abs(full[k]).max()))
        assert np.abs(ours - full[k]).max() < 0.02 * scale
        assert stability_score(ours) == pytest.approx(stability_score(full[k]), abs=0.01)


# -- individual signals -------------------------------------------------------------------------
def test_multimask_disagreement():
    a = np.zeros((3, 10, 10), dtype=bool)
    a[:, 2:8, 2:8] = True
    assert multimask_disagreement(a) == pytest.approx(0.0)
    b = np.zeros((2, 10, 10), dtype=bool)
    b[0, :5] = True
    b[1, 5:] = True
    assert multimask_disagreement(b) == pytest.approx(1.0)
    assert multimask_disagreement(a[:1]) is None


def test_prompt_consistency_counts_scribble_pixels():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:, :50] = True
    # A horizontal scribble over columns 40..59: 10 of its 20 pixels are outside the mask.
    s = Scribble(np.array([[10, 40], [10, 59]]), positive=True)
    got = prompt_consistency(mask, [s])
    assert got["positive_outside"] == pytest.approx(0.5)
    assert "negative_inside" not in got and "box_fill" not in got
    # Points outside the image are ignored.
    got = prompt_consistency(mask, [Point((500, 500), positive=False), Point((5, 5), False)])
    assert got["negative_inside"] == pytest.approx(1.0)


def test_box_fill_and_outside_box():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:30, 10:30] = True  # 400 px
    tight = prompt_consistency(mask, [Box((10, 10), (29, 29))])
    assert tight["box_fill"] == pytest.approx(1.0)
    assert tight["outside_box"] == pytest.approx(0.0)
    half = prompt_consistency(mask, [Box((10, 10), (29, 19))])  # columns 10..19 only
    assert half["outside_box"] == pytest.approx(0.5)
    big = prompt_consistency(mask, [Box((0, 0), (39, 39))])
    assert big["box_fill"] == pytest.approx(400 / 1600)


def test_negative_boxes_are_exclusion_regions_not_bounds():
    """A negative box (the GUI's exclusion region) never counts as the object's box."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:30, 10:30] = True
    cut = Box((20, 0), (39, 39), positive=False)   # rows 20..39: half of the mask lies in it
    got = prompt_consistency(mask, [Box((10, 10), (29, 29)), cut])
    assert got["box_fill"] == pytest.approx(1.0) and got["outside_box"] == 0.0
    assert got["negative_inside"] == pytest.approx(200 / (20 * 40))
    only = prompt_consistency(mask, [cut])
    assert "box_fill" not in only and "box_gap" not in only


def test_fragmentation_counts_pieces_and_holes():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:50, 10:50] = True  # 1600
    mask[20:30, 20:30] = False  # hole of 100
    mask[70:80, 70:80] = True  # second piece of 100
    f = fragmentation(mask)
    assert f["components"] == 2
    assert f["fragment_fraction"] == pytest.approx(100 / 1600)
    assert f["holes"] == 1
    assert f["hole_fraction"] == pytest.approx(100 / 1700)
    # A concavity open to the outside of the bounding box is not a hole.
    u = np.zeros(SHAPE, dtype=bool)
    u[10:50, 10:50] = True
    u[10:40, 20:40] = False
    assert fragmentation(u)["holes"] == 0


def test_combine_is_a_noisy_or():
    assert combine({}, {}) == 0.0
    assert combine({"a": 1.0}, {"a": 1.0}) == pytest.approx(1.0)
    assert combine({"a": 0.5, "b": 0.5}, {"a": 1.0, "b": 1.0}) == pytest.approx(0.75)
    assert combine({"a": 1.0}, {"a": 0.6}) == pytest.approx(0.6)


# -- flags ------------------------------------------------------------------------------------
def clean_mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[30:50, 30:60] = True  # 600 px, 6 % of the image
    return m


def clean_object(**changes) -> tuple[AnnotatedObject, dict]:
    """A mask that every signal finds fine, plus keyword arguments for assess_object."""
    mask = changes.pop("mask", clean_mask())
    logits = np.where(mask, 8.0, -8.0).astype(np.float32)
    fields = dict(object_id=1, class_id=1, mask=mask,
                  prompts=(Point((40, 45)), Point((35, 35)), Point((80, 80), positive=False),
                           Box((30, 30), (49, 59))),
                  score=0.97, logits=logits, signals={"overlap_lost": 0.0})
    extra = {"multimask": np.stack([mask, mask, mask]),
             "gt": GroundTruth(np.where(clean_mask(), 1, 0).astype(np.uint8))}
    for k in list(changes):
        if k in extra:
            extra[k] = changes.pop(k)
    fields.update(changes)
    return AnnotatedObject(**fields), extra


def test_clean_object_raises_no_flag():
    obj, extra = clean_object()
    a = assess_object(obj, SHAPE, **extra)
    assert a.flags == []
    assert a.score < 0.05
    # Every signal was measured.
    for name in SIGNAL_SPECS:
        assert name in a.signals, name
    img = assess_image("clean", SHAPE, [obj], gt=extra["gt"])
    assert img.flags == [] and img.score == pytest.approx(a.score)


def _soft_logits(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    ring = ndi.binary_dilation(mask, iterations=10)
    return np.where(mask, 0.5, np.where(ring, -0.5, -8.0)).astype(np.float32)


def _moved(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    return np.roll(mask, (dr, dc), axis=(0, 1))


def _with(mask: np.ndarray, rows: slice, cols: slice, value: bool) -> np.ndarray:
    m = mask.copy()
    m[rows, cols] = value
    return m


FIRING = {
    "low_iou": dict(score=0.5),
    "unstable": dict(logits=_soft_logits(clean_mask())),
    "ambiguous": dict(multimask=np.stack([clean_mask(), _moved(clean_mask(), 40, 0),
                                          _moved(clean_mask(), 0, -30)])),
    "positive_outside": dict(prompts=(Point((40, 45)), Point((90, 5)))),
    "negative_inside": dict(prompts=(Point((40, 45)), Point((42, 50), positive=False))),
    "box_underfilled": dict(prompts=(Point((40, 45)), Box((0, 0), (99, 99)))),
    # The top 8 of the box's 20 rows: "part of the table instead of the table".
    "box_partial": dict(mask=_with(np.zeros(SHAPE, bool), slice(30, 38), slice(30, 60), True),
                        prompts=(Point((33, 45)), Box((30, 30), (49, 59)))),
    "outside_box": dict(prompts=(Point((40, 45)), Box((30, 30), (49, 44)))),
    "fragmented": dict(mask=_with(clean_mask(), slice(80, 90), slice(80, 90), True)),
    "holes": dict(mask=_with(clean_mask(), slice(35, 45), slice(35, 50), False)),
    "overlapped": dict(signals={"overlap_lost": 0.5}),
    "tiny": dict(mask=_with(np.zeros(SHAPE, bool), slice(40, 43), slice(40, 43), True),
                 prompts=(Point((41, 41)),)),
    "huge": dict(mask=_with(np.zeros(SHAPE, bool), slice(1, 99), slice(1, 99), True),
                 prompts=(Point((41, 41)),)),
    "gt_mismatch": dict(gt=GroundTruth(np.where(_moved(clean_mask(), 45, 0), 1, 0)
                                       .astype(np.uint8))),
    "gt_wrong_class": dict(gt=GroundTruth(np.where(clean_mask(), 2, 0).astype(np.uint8))),
    # Two ground-truth instances side by side, one mask over both: "grabs the neighbour".
    "gt_merged": dict(gt=GroundTruth(np.where(clean_mask(), 1, 0).astype(np.uint8),
                                     (np.where(clean_mask(), 1, 0)
                                      + _with(np.zeros(SHAPE, bool), slice(30, 50),
                                              slice(45, 60), True)).astype(np.uint8))),
    # Several signals just inside their thresholds add up.
    "borderline": dict(score=0.81, signals={"overlap_lost": 0.29}),
    "empty": dict(mask=np.zeros(SHAPE, bool), prompts=(Point((41, 41)),)),
}


@pytest.mark.parametrize("flag", sorted(FIRING))
def test_each_flag_fires_on_its_case(flag):
    clean, clean_extra = clean_object()
    clean_score = assess_object(clean, SHAPE, **clean_extra).score
    obj, extra = clean_object(**FIRING[flag])
    a = assess_object(obj, SHAPE, **extra)
    assert flag in a.flags
    assert flag in FLAGS
    assert a.score > clean_score + 0.1


def test_every_object_flag_has_a_case():
    image_level = {"gt_missed", "no_objects", "flagged"}
    several_objects = {"gt_duplicate"}  # test_gt_instances_are_matched_one_to_one
    assert set(FLAGS) - image_level - several_objects == set(FIRING)


def test_given_signals_are_used_when_raw_data_is_missing():
    obj, extra = clean_object(logits=None, signals={"stability": 0.5, "disagreement": 0.95})
    extra.pop("multimask")
    a = assess_object(obj, SHAPE, **extra)
    assert a.signals["stability"] == 0.5
    assert {"unstable", "ambiguous"} <= set(a.flags)


def test_thresholds_are_configurable():
    obj, extra = clean_object(score=0.85)
    assert "low_iou" not in assess_object(obj, SHAPE, **extra).flags
    assert "low_iou" in assess_object(obj, SHAPE, thresholds=Thresholds(low_iou=0.9),
                                      **extra).flags


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
    # Matched as an object, the head is a mismatch and decides the image's score.
    flat = assess_image("x", SHAPE, [obj, part], gt=gt)
    assert "gt_mismatch" in flat.objects[1].flags
    img = assess_image("x", SHAPE, [obj, part], gt=gt, parts=[2])
    assert "gt_iou" not in img.objects[1].signals and not img.objects[1].flags
    assert img.objects[0].signals["gt_iou"] == pytest.approx(1.0)
    assert img.score < flat.score and img.signals["gt_objects"] == 1


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


def test_image_level_flags():
    obj, _ = clean_object()
    empty = assess_image("e", SHAPE, [])
    assert empty.flags == ["no_objects"] and empty.score == 0.5
    flagged = assess_image("f", SHAPE, [obj], status="flagged")
    assert "flagged" in flagged.flags and flagged.score == 1.0
    with pytest.raises(ValueError, match="image bad"):
        assess_image("bad", (50, 50), [obj])


def test_ranking_worst_first():
    clean, _ = clean_object()
    mild, _ = clean_object(score=0.8)
    bad, _ = clean_object(prompts=(Point((90, 5)), Point((40, 45), positive=False)),
                          mask=_with(clean_mask(), slice(80, 90), slice(80, 90), True))
    images = [
        assess_image("b_clean", SHAPE, [clean]),
        assess_image("mild", SHAPE, [clean, mild]),
        assess_image("bad", SHAPE, [bad, clean]),
        assess_image("a_clean", SHAPE, [clean]),
        assess_image("flagged", SHAPE, [clean], status="flagged"),
    ]
    ranked = rank_images(images)
    assert [a.image_id for a in ranked] == ["flagged", "bad", "mild", "a_clean", "b_clean"]
    assert [a.rank for a in ranked] == [1, 2, 3, 4, 5]
    scores = [a.score for a in ranked]
    assert scores == sorted(scores, reverse=True)
    # The image score is its worst object's score.
    assert ranked[1].score == pytest.approx(max(o.score for o in ranked[1].objects))
    d = ranked[1].to_dict()
    assert d["rank"] == 2 and d["objects"][0]["flags"]


def test_combined_score_worked_example_of_the_docs():
    # docs/curation.md: predicted IoU 0.85 and 10 % of the mask in a stray piece -> 0.417.
    mask = np.zeros(SHAPE, dtype=bool)
    mask[30:48, 30:60] = True  # 540 px
    mask[80:86, 80:90] = True  # 60 px stray: 60 / 600 = 10 %
    a = assess_object(AnnotatedObject(1, 1, mask, (), 0.85), SHAPE)
    assert a.signals["fragment_fraction"] == pytest.approx(0.10)
    # Predicted IoU on the good side of its threshold: 0 at 0.95 to 0.25 / 0.6 at 0.80.
    b_iou = (0.25 / 0.6) * (0.95 - 0.85) / (0.95 - 0.80)
    # Fragments beyond theirs: 0.25 / 0.5 at 0.05 to 1 at 0.30.
    b_frag = 0.5 + (1 - 0.5) * (0.10 - 0.05) / (0.30 - 0.05)
    assert a.badness["predicted_iou"] == pytest.approx(b_iou) and round(b_iou, 3) == 0.278
    assert a.badness["fragment_fraction"] == pytest.approx(b_frag) and b_frag == 0.6
    expected = 1 - (1 - 0.6 * b_iou) * (1 - 0.5 * b_frag)
    assert a.score == pytest.approx(expected) and round(a.score, 3) == 0.417
    assert a.flags == ["fragmented"]
    assert a.main_reason["signal"] == "fragment_fraction"
    assert a.main_reason["contribution"] == pytest.approx(0.3)


# -- scores and flags agree ---------------------------------------------------------------
def test_signal_at_its_threshold_contributes_exactly_the_flag_level():
    t = Thresholds()
    for name, spec in SIGNAL_SPECS.items():
        limit = getattr(t, spec.flag)
        assert spec.weight * spec.badness(limit, limit) == pytest.approx(FLAG_LEVEL), name
        assert spec.badness(spec.good, limit) == 0.0 and spec.badness(spec.bad, limit) == 1.0
    for spec, limit in ((AREA_TINY_SPEC, t.tiny), (AREA_HUGE_SPEC, t.huge)):
        assert spec.weight * spec.badness(limit, limit) == pytest.approx(FLAG_LEVEL)
    with pytest.raises(ValueError, match="weight"):
        type(AREA_TINY_SPEC)(good=0.0, bad=1.0, weight=0.1, flag="x")


def _random_object(rng: np.random.Generator) -> tuple[AnnotatedObject, GtMatch | None]:
    mask = np.zeros(SHAPE, dtype=bool)
    side = int(rng.choice([2, 3, 8, 12, 20, 30, 40, 50, 60, 70, 96]))
    r, c = rng.integers(0, SHAPE[0] - side + 1, size=2)
    mask[r:r + side, c:c + side] = True
    if rng.random() < 0.15 and side >= 8:  # a hole
        mask[r + side // 4:r + side // 2, c + side // 4:c + side // 2] = False
    if rng.random() < 0.15:  # a stray piece
        k = int(rng.integers(1, 6))
        mask[:k, -k:] = True
    # Values between good and bad, mostly near good (u**4), some beyond either end.
    names = ("stability", "disagreement", "positive_outside", "negative_inside", "box_fill",
             "box_gap", "outside_box", "overlap_lost")
    signals = {}
    for name in names:
        if rng.random() < 0.3:
            spec = SIGNAL_SPECS[name]
            u = float(rng.uniform(-0.1, 1.1)) ** 4
            signals[name] = float(np.clip(spec.good + u * (spec.bad - spec.good), 0.0, 1.0))
    score = float(0.97 - rng.uniform(0.0, 0.7) ** 3) if rng.random() < 0.8 else None
    gt = None
    if rng.random() < 0.4:
        gt = GtMatch(float(1.0 - rng.uniform(0.0, 0.8) ** 2), int(rng.choice([1, 1, 1, 1, 2])),
                     float(rng.uniform(0.0, 1.0)) ** 3)
    return AnnotatedObject(1, 1, mask, (), score, None, signals), gt


@pytest.mark.parametrize("thresholds", [Thresholds(), Thresholds(low_iou=0.97, holes=0.01),
                                        Thresholds(fragmented=0.5, gt_mismatch=0.2)])
def test_every_score_at_the_flag_level_has_a_flag_and_no_flag_scores_below(thresholds):
    """A score high enough to rank with flagged failures always comes with a flag."""
    rng = np.random.default_rng(7)
    flagged = clean = 0
    for _ in range(400):
        obj, gt = _random_object(rng)
        a = assess_object(obj, SHAPE, gt=gt, thresholds=thresholds)
        if a.flags:
            assert a.score >= FLAG_LEVEL - 1e-9, (a.flags, a.signals)
            flagged += 1
        else:
            assert a.score < FLAG_LEVEL, (a.score, a.badness)
            clean += 1
    assert flagged > 10 and clean > 10  # both sides were exercised


def test_a_clean_small_object_ranks_below_a_flagged_failure():
    shape = (200, 300)
    small = np.zeros(shape, dtype=bool)
    small[100:112, 100:112] = True  # 144 px, 0.24 % of the image: small, not tiny
    a = assess_object(AnnotatedObject(1, 1, small, (Point((106, 106)),), 0.97), shape)
    assert a.flags == [] and a.score < FLAG_LEVEL
    big = np.zeros(shape, dtype=bool)
    big[50:150, 80:220] = True
    stray = big.copy()
    stray[160:170, 10:30] = True  # a stray piece: 1.4 % of the mask
    holes = big.copy()
    holes[80:100, 120:160] = False  # 5.7 % holes: mild, below the holes threshold
    ranked = rank_images([assess_image("small", shape, [AnnotatedObject(1, 1, small)]),
                          assess_image("holes", shape, [AnnotatedObject(1, 1, holes)]),
                          assess_image("low", shape, [AnnotatedObject(1, 1, big, (), 0.79)])])
    assert ranked[0].image_id == "low" and ranked[0].flags == ["low_iou"]
    assert all(not r.flags for r in ranked[1:])
    assert fragmentation(stray)["fragment_fraction"] < Thresholds().fragmented


def test_main_reason_is_the_largest_weighted_badness():
    obj, extra = clean_object(score=0.82, signals={"overlap_lost": 0.5})
    a = assess_object(obj, SHAPE, **extra)
    c = a.contributions()
    assert list(c)[0] == "overlap_lost" and a.main_reason["signal"] == "overlap_lost"
    assert a.main_reason["value"] == 0.5
    assert a.main_reason["contribution"] == pytest.approx(c["overlap_lost"])
    assert c["overlap_lost"] > c["predicted_iou"] > 0
    clean, extra = clean_object()
    assert assess_object(clean, SHAPE, **extra).main_reason is None
    tiny, _ = clean_object(mask=_with(np.zeros(SHAPE, bool), slice(40, 42), slice(40, 42), True),
                           prompts=())
    r = assess_object(tiny, SHAPE).main_reason
    assert r["signal"] == "area" and r["value"] == pytest.approx(4 / 10000)
    # The image's reason names the object that decides its score, or an image-level cause.
    img = assess_image("i", SHAPE, [clean, obj])
    assert img.main_reason["object_id"] == 1 and img.main_reason["signal"] == "overlap_lost"
    flagged = assess_image("f", SHAPE, [obj], status="flagged")
    assert flagged.main_reason["signal"] == "flagged"
    assert flagged.main_reason["object_id"] is None
    assert assess_image("n", SHAPE, []).main_reason["signal"] == "no_objects"
    assert assess_image("c", SHAPE, [clean]).main_reason is None


# -- box prompts ------------------------------------------------------------------------------
def test_box_gap_measures_the_largest_side_gap():
    from napari_samlabel.curate.signals import box_gap

    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:30, 10:50] = True  # rows 10..29, cols 10..49
    assert box_gap(mask, [Box((10, 10), (29, 49))]) == 0.0
    assert box_gap(mask, [Box((10, 10), (30, 50))]) == 0.0  # exclusive edges: 1 px slack
    # Box rows 10..59 (50 rows): the mask stops 30 rows short of the bottom (29 after slack).
    assert box_gap(mask, [Box((10, 10), (59, 49))]) == pytest.approx(29 / 50)
    # Box cols 0..49 (50 cols): 10 columns of gap on the left, 9 after slack.
    assert box_gap(mask, [Box((10, 0), (29, 49))]) == pytest.approx(9 / 50)
    assert box_gap(mask, [Box((60, 60), (70, 70))]) == 1.0  # misses the box
    assert box_gap(mask, [Box((500, 500), (600, 600))]) is None  # box outside the image
    # Of two boxes the worse counts.
    assert box_gap(mask, [Box((10, 10), (29, 49)), Box((10, 10), (59, 49))]) == \
        pytest.approx(29 / 50)


def test_a_tight_box_filled_well_but_not_to_its_sides_is_partial():
    # The old box_fill rule called 0.40 good; the part still misses most of the box's height.
    part = _with(np.zeros(SHAPE, bool), slice(30, 38), slice(30, 60), True)
    obj, _ = clean_object(mask=part, prompts=(Box((30, 30), (49, 59)),))
    a = assess_object(obj, SHAPE)
    assert a.signals["box_fill"] == pytest.approx(0.4)
    assert "box_underfilled" not in a.flags and "box_partial" in a.flags
    assert a.main_reason["signal"] == "box_gap" and a.score > 0.6


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
    assert img.score == 1.0


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


# -- the docs say what the code does ------------------------------------------------------------
def test_docs_signal_table_matches_the_code():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "curation.md").read_text(encoding="utf-8")
    t = Thresholds()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `(\w+)` \|.*\| ([\d.]+) → ([\d.]+) → ([\d.]+) \| ([\d.]+) \| "
                     r"`(\w+)` \([<>≤]+ ([\d.]+)", line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    assert set(rows) == set(SIGNAL_SPECS)
    for name, spec in SIGNAL_SPECS.items():
        good, knee, bad, weight, flag, shown = rows[name]
        assert (float(good), float(bad), float(weight)) == (spec.good, spec.bad, spec.weight)
        assert float(knee) == float(shown) == getattr(t, spec.flag) and flag == spec.flag
    area = (f"small: {AREA_TINY_SPEC.good:g} → {t.tiny:g} → {AREA_TINY_SPEC.bad:g}; "
            f"large: {AREA_HUGE_SPEC.good:.2f} → {t.huge:.2f} → {AREA_HUGE_SPEC.bad:.2f} "
            f"| {AREA_TINY_SPEC.weight:g} |")
    assert area in text
    assert f"`tiny` (< {t.tiny:g}), `huge` (> {t.huge:.2f})" in text
    for key in ("area", "gt_class"):  # badness keys that are not signal names
        assert f"badness key `{key}`" in text
    for flag in FLAGS:
        assert f"`{flag}`" in text, flag
    assert f"**{FLAG_LEVEL:g}** (`FLAG_LEVEL`)" in text
    assert "weak hints" not in text


def test_docs_weights_paragraph_matches_the_code():
    import re
    from pathlib import Path

    from napari_samlabel.curate.signals import signal_weight

    text = (Path(__file__).parents[2] / "docs" / "curation.md").read_text(encoding="utf-8")
    para = text[text.index("The weights say how much"):text.index("**Main reason.**")]
    said = {}
    for names, weight in re.findall(r"\(((?:`\w+`(?:,\s*)?)+)\s+([\d.]+)\)", para):
        for name in re.findall(r"`(\w+)`", names):
            said[name] = float(weight)
    assert set(said) == set(SIGNAL_SPECS) | {"area", "gt_class"}
    for name, weight in said.items():
        assert signal_weight(name) == weight, name


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

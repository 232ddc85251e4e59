"""Failure signals: hand-worked values, every flag firing on a constructed case, ranking order."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.document import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.evaluate.curation import (
    FLAGS,
    SIGNAL_SPECS,
    GroundTruth,
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

    from napari_samlabel.engine.testing import build_tiny_sam

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
    assert set(FLAGS) - image_level == set(FIRING)


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
    # docs/curation.md: predicted IoU 0.80 and 10 % of the mask in a stray piece -> 0.372.
    mask = np.zeros(SHAPE, dtype=bool)
    mask[30:48, 30:60] = True  # 540 px
    mask[80:86, 80:90] = True  # 60 px stray: 60 / 600 = 10 %
    a = assess_object(AnnotatedObject(1, 1, mask, (), 0.80), SHAPE)
    assert a.signals["fragment_fraction"] == pytest.approx(0.10)
    expected = 1 - (1 - 0.6 * (0.95 - 0.80) / 0.35) * (1 - 0.5 * (0.10 - 0.01) / 0.29)
    assert a.score == pytest.approx(expected) and round(a.score, 3) == 0.372
    assert a.flags == ["fragmented"]

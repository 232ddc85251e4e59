"""Failure signals: hand-worked values of each measure, spec knees, the docs' signal table."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.curate.signals import (
    AREA_HUGE_SPEC,
    AREA_TINY_SPEC,
    FLAG_LEVEL,
    FLAGS,
    SIGNAL_SPECS,
    Thresholds,
    combine,
    fragmentation,
    prompt_consistency,
)
from napari_samlabel.engine.quality import (
    logits_to_image,
    multimask_disagreement,
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

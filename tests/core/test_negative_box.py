"""Negative boxes: a polarity on Box (serialised, old records positive) and exclusion regions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.prompts import (
    Box,
    ObjectPrompts,
    Point,
    Scribble,
    in_image,
    prompt_from_dict,
)
from napari_samlabel.engine.exclusions import EXCLUDED_LOGIT, exclude_logits
from napari_samlabel.engine.policies import refine_object, segment_object
from napari_samlabel.engine.prompt_plan import to_sam_inputs
from napari_samlabel.testing.fakes import DiskEngine

SHAPE = (100, 120)


def _engine() -> DiskEngine:
    engine = DiskEngine(radius=12)
    engine.set_image(np.zeros((*SHAPE, 3), np.uint8))
    return engine


def test_box_polarity_round_trips_and_old_records_are_positive():
    neg = Box((40, 50), (10, 20), positive=False)
    assert neg.top_left == (10.0, 20.0) and not neg.positive
    assert prompt_from_dict(neg.to_dict()) == neg
    assert neg != Box((10, 20), (40, 50))                   # the polarity is part of it
    old = {"type": "box", "top_left": [1, 2], "bottom_right": [3, 4]}
    assert prompt_from_dict(old) == Box((1, 2), (3, 4)) and prompt_from_dict(old).positive


def test_box_pixel_region_takes_pixel_centres_inside():
    region = Box((1.5, 2.0), (3.0, 4.4)).pixel_region((6, 6))
    assert np.argwhere(region).tolist() == [[2, 2], [2, 3], [2, 4], [3, 2], [3, 3], [3, 4]]
    assert not Box((10, 10), (20, 20)).pixel_region((6, 6)).any()


def test_negative_box_cuts_the_mask_and_the_logits_and_is_no_sam_input():
    engine = _engine()
    prompts = ObjectPrompts(1, 1, (Point((50, 50)), Box((30, 50), (70, 90), positive=False)))
    res = refine_object(engine, prompts, SHAPE, None)
    assert engine.last.box is None                          # SAM got no box at all
    assert res.mask[50, 45] and not res.mask[38:63, 50:63].any()
    plain = refine_object(_engine(), ObjectPrompts(1, 1, (Point((50, 50)),)), SHAPE, None)
    np.testing.assert_array_equal(res.mask, plain.mask & ~prompts.prompts[1].pixel_region(SHAPE))
    # The logits over the box are strongly negative, elsewhere they are SAM's.
    scale = 1024 / 120 / 4                                  # image pixel -> low-res cell
    assert res.logits[0, int(50 * scale), int(60 * scale)] == EXCLUDED_LOGIT
    assert res.logits[0, int(50 * scale), int(45 * scale)] == plain.logits[0, int(50 * scale),
                                                                           int(45 * scale)]
    # Fed back as mask_input, the exclusion holds (DiskEngine paints mask_input in).
    prev = plain.logits
    again = refine_object(engine, prompts, SHAPE, prev)
    assert (engine.last.mask_input[0, int(50 * scale), int(60 * scale)] == EXCLUDED_LOGIT)
    assert not again.mask[38:63, 50:63].any()


def test_negative_box_with_a_positive_box_and_alone():
    engine = _engine()
    both = (Box((10, 10), (90, 110)), Box((10, 60), (90, 110), positive=False))
    res = segment_object(engine, both, SHAPE, "boxes")
    assert len(engine.calls) == 1 and engine.last.box is not None   # one SAM box
    assert res.mask[50, 30] and not res.mask[:, 60:].any()
    only = segment_object(engine, (Box((0, 0), (50, 50), positive=False),), SHAPE)
    assert only.empty and only.n_calls == 0                 # no positive prompt: no decode
    inputs = to_sam_inputs((Point((5, 5)), Box((0, 0), (9, 9), positive=False)), SHAPE)
    assert inputs.box is None and len(inputs.point_coords) == 1


def test_exclude_logits_covers_the_box_in_sams_low_res_frame():
    logits = np.zeros((1, 256, 256), np.float32)
    out = exclude_logits(logits, [Box((0, 0), (99, 119), positive=False)], SHAPE)
    # The whole image (long side 120 -> 1024, so 100 rows -> 853 -> 213 cells) is covered,
    # the padding below is not.
    assert (out[0, :213, :] == EXCLUDED_LOGIT).all() and (out[0, 214:, :] == 0).all()
    assert logits.max() == 0                                # the input is not changed
    assert exclude_logits(None, [Box((0, 0), (1, 1), False)], SHAPE) is None


def test_exclude_logits_follows_the_engines_frame():
    """SAM 2 stretches the whole image over the 256 x 256 logits: no padding to skip."""
    logits = np.zeros((1, 256, 256), np.float32)
    whole = exclude_logits(logits, [Box((0, 0), (99, 119), positive=False)], SHAPE, "stretch")
    assert (whole == EXCLUDED_LOGIT).all()
    right = exclude_logits(logits, [Box((0, 60), (99, 119), positive=False)], SHAPE, "stretch")
    assert (right[0, :, 129:] == EXCLUDED_LOGIT).all() and (right[0, :, :127] == 0).all()
    with pytest.raises(ValueError, match="logits frame"):
        exclude_logits(logits, [Box((0, 0), (1, 1), False)], SHAPE, "square")


def test_negative_box_through_a_sam2_engine(tmp_path):
    """The cut lands on the right pixels of SAM 2's own upsampling of the fed-back logits."""
    from napari_samlabel.engine.families import family_available
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.engine.quality import logits_to_image
    from napari_samlabel.testing.models import SAM2_TINY_MODEL_TYPE, save_tiny_checkpoint

    if not family_available("sam2"):
        pytest.skip("sam2 not installed")
    ckpt = save_tiny_checkpoint(tmp_path / "s2.pt", model_type=SAM2_TINY_MODEL_TYPE)
    engine = load_engine(SAM2_TINY_MODEL_TYPE, ckpt, device="cpu", cache=None)
    image = np.random.default_rng(0).integers(0, 255, SHAPE + (3,), dtype=np.uint8)
    engine.set_image(image)
    cut = Box((0, 60), (99, 119), positive=False)
    res = refine_object(engine, (Point((50, 30)), Box((10, 10), (90, 110)), cut), SHAPE,
                        None, "interactive")
    assert not res.mask[:, 61:].any()
    up = logits_to_image(res.logits, SHAPE, frame=engine.logits_frame)
    assert (up[:, 62:] < 0).all()  # SAM 2 would not bring the cut region back either


@pytest.mark.parametrize("prompt, inside", [
    (Point((-0.4, 10)), True), (Point((-0.6, 10)), False), (Point((99.5, 119.5)), True),
    (Box((-20, -20), (0, 0)), True), (Box((-20, -20), (-1, 5)), False),
    (Box((100, 0), (120, 10)), False),
    (Scribble([[-10, -10], [-5, -5]]), False), (Scribble([[-10, 5], [10, 5]]), True),
])
def test_in_image(prompt, inside):
    assert in_image(prompt, SHAPE) is inside

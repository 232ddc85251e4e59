"""Prompt policies: what reaches the engine, in which order, with which logits.

Logic is checked with the spying fake engine; every engine-facing feature is also run once
through the real (tiny, random-weight) SAM at the end of this file.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble
from napari_samlabel.engine.policies import (
    PRESETS,
    SCRIBBLE_GROUP_SIZE,
    Policy,
    get_policy,
    refine_object,
    segment_object,
)
from napari_samlabel.engine.prompt_plan import sample_scribble, to_sam_inputs
from napari_samlabel.testing.fakes import DiskEngine

SHAPE = (96, 128)


@pytest.fixture()
def engine() -> DiskEngine:
    eng = DiskEngine(radius=5)
    eng.set_image(np.zeros(SHAPE + (3,), np.uint8))
    return eng


def obj(*prompts, cid=1) -> ObjectPrompts:
    return ObjectPrompts(1, cid, tuple(prompts))


def test_row_col_arrives_as_x_y(engine):
    segment_object(engine, obj(Point((10, 50))), SHAPE, "one-shot")
    np.testing.assert_array_equal(engine.last.point_coords, [[50, 10]])
    np.testing.assert_array_equal(engine.last.point_labels, [1])


def test_box_arrives_as_xyxy(engine):
    segment_object(engine, obj(Box((40, 30), (10, 20))), SHAPE, "boxes")
    np.testing.assert_array_equal(engine.last.box, [20, 10, 30, 40])
    assert engine.last.point_coords is None


def test_iterative_points_in_order_with_logits_handed_over(engine):
    pts = [Point((10, 10)), Point((50, 60)), Point((80, 100))]
    res = segment_object(engine, obj(*pts), SHAPE, "points")
    assert res.n_calls == len(engine.calls) == 3
    for k, call in enumerate(engine.calls):
        # call k gives the first k+1 points, in the order given
        np.testing.assert_array_equal(call.point_coords, [[10, 10], [60, 50], [100, 80]][:k + 1])
    assert engine.calls[0].mask_input is None
    # call k receives call k-1's chosen low-res logits
    from napari_samlabel.testing.fakes import mask_to_lowres_logits

    first_mask = DiskEngine(radius=5)
    first_mask.set_image(np.zeros(SHAPE + (3,), np.uint8))
    p0 = first_mask.predict(engine.calls[0])
    chosen = int(np.argmax(p0.iou_predictions))
    np.testing.assert_array_equal(engine.calls[1].mask_input, p0.low_res_logits[chosen:chosen + 1])
    assert engine.calls[1].mask_input.shape == (1, 256, 256)
    # the fake honours mask_input: the first disk survives into the final mask
    assert res.mask[10, 10] and res.mask[80, 100]
    assert res.logits.shape == (1, 256, 256)
    np.testing.assert_array_equal(res.logits[0], mask_to_lowres_logits(res.mask))


def test_one_shot_gives_everything_in_one_call(engine):
    pts = [Point((10, 10)), Point((50, 60))]
    res = segment_object(engine, obj(*pts), SHAPE, "one-shot")
    assert res.n_calls == 1 and len(engine.calls) == 1
    assert engine.last.mask_input is None
    assert len(engine.last.point_coords) == 2


def test_group_size_steps(engine):
    pts = [Point((10, 10 + 10 * i)) for i in range(5)]
    segment_object(engine, obj(*pts), SHAPE, get_policy("points", group_size=2))
    assert [len(c.point_coords) for c in engine.calls] == [2, 4, 5]


def test_scribble_sample_independent_of_other_scribbles(engine):
    s1 = Scribble(np.array([[10, 5], [10, 104]]))
    s2 = Scribble(np.array([[60, 5], [60, 104]]))
    pol = get_policy("scribbles")
    segment_object(engine, obj(s1), SHAPE, pol)
    alone = [c.point_coords.copy() for c in engine.calls]
    engine.calls.clear()
    segment_object(engine, obj(s1, s2), SHAPE, pol)
    # 20 points per scribble in groups of 5: 4 steps for s1 (the same as alone), then 4 for s2
    assert len(alone) == 4 and len(engine.calls) == 8
    for k in range(4):
        np.testing.assert_array_equal(engine.calls[k].point_coords, alone[k])
    assert len(engine.calls[-1].point_coords) == 40


def test_iterative_scribble_fed_in_small_groups_spread_along_the_stroke(engine):
    """One scribble per class (the real sample's case) still takes several steps."""
    s = Scribble(np.array([[10, 5], [10, 104]]))  # 100 pixels -> 20 sampled points
    res = segment_object(engine, obj(s), SHAPE, "scribbles")
    sample = sample_scribble(s, SHAPE, 0.2)
    assert res.n_calls == len(engine.calls) == 4
    assert [len(c.point_coords) for c in engine.calls] == [5, 10, 15, 20]
    assert engine.calls[0].mask_input is None
    for prev, call in zip(engine.calls, engine.calls[1:], strict=False):
        assert call.mask_input is not None  # previous logits handed on every step
        np.testing.assert_array_equal(call.point_coords[:len(prev.point_coords)],
                                      prev.point_coords)
    # the first group spans the stroke: every 4th sample point, not the first five
    first_cols = np.sort(engine.calls[0].point_coords[:, 0])
    np.testing.assert_array_equal(first_cols, sample[0::4, 1])
    assert first_cols[-1] - first_cols[0] > 60
    # every sampled point is fed exactly once
    np.testing.assert_array_equal(np.sort(engine.last.point_coords[:, 0]), sample[:, 1])
    one_shot = DiskEngine(radius=5)
    one_shot.set_image(np.zeros(SHAPE + (3,), np.uint8))
    segment_object(one_shot, obj(s), SHAPE, get_policy("scribbles", iterative=False))
    assert len(one_shot.calls) == 1


def test_negatives_have_label_zero_and_come_after_positives(engine):
    negs = (Point((5, 6), positive=False), Scribble(np.array([[90, 0], [90, 9]]), positive=False))
    segment_object(engine, obj(Point((40, 40)), Point((41, 60))), SHAPE,
                   get_policy("points", sample_fraction=0.2), negatives=negs)
    for call in engine.calls:
        labels = call.point_labels
        n_pos = int((labels == 1).sum())
        assert np.all(labels[:n_pos] == 1) and np.all(labels[n_pos:] == 0)
        # negatives present in every call: the point and 20 % of a 10-pixel scribble (2)
        assert (labels == 0).sum() == 1 + 2
        np.testing.assert_array_equal(call.point_coords[n_pos], [6, 5])


def test_negative_prompts_inside_the_object_are_negatives(engine):
    segment_object(engine, obj(Point((40, 40)), Point((10, 10), positive=False)), SHAPE,
                   "one-shot")
    np.testing.assert_array_equal(engine.last.point_labels, [1, 0])


def test_only_negatives_gives_empty_mask_without_engine_call(engine):
    res = segment_object(engine, obj(Point((10, 10), positive=False)), SHAPE, "points",
                         negatives=(Point((20, 20), positive=False),))
    assert engine.calls == []
    assert res.n_calls == 0 and res.empty and res.logits is None and res.index == -1
    assert res.mask.shape == SHAPE and res.n_negative == 2
    res = refine_object(engine, obj(), SHAPE, None)
    assert engine.calls == [] and res.empty


def test_points_outside_the_image_are_rejected(engine):
    with pytest.raises(ValueError, match=r"outside the 96 x 128 image"):
        segment_object(engine, obj(Point((100, 10))), SHAPE, "points")
    with pytest.raises(ValueError, match="outside"):
        segment_object(engine, obj(Point((10, 10))), SHAPE, "points",
                       negatives=(Point((-3, 10), positive=False),))
    # half a pixel of tolerance at the border
    segment_object(engine, obj(Point((95.4, 127.4))), SHAPE, "points")
    assert engine.calls


def test_boxes_are_clipped_and_outside_boxes_rejected(engine):
    segment_object(engine, obj(Box((-10, -5), (50, 500))), SHAPE, "boxes")
    np.testing.assert_array_equal(engine.last.box, [0, 0, 127, 50])
    with pytest.raises(ValueError, match="lies outside"):
        segment_object(engine, obj(Box((200, 10), (300, 20))), SHAPE, "boxes")


def test_scribble_pixels_outside_the_image_are_dropped(engine):
    segment_object(engine, obj(Scribble(np.array([[10, 120], [10, 140]]))), SHAPE, "one-shot")
    assert engine.last.point_coords[:, 0].max() <= 127


def test_several_boxes_decoded_separately_and_united(engine):
    res = segment_object(engine, obj(Box((0, 0), (9, 9)), Box((50, 50), (59, 59))), SHAPE,
                         "boxes")
    assert res.n_calls == 2
    np.testing.assert_array_equal(engine.calls[0].box, [0, 0, 9, 9])
    np.testing.assert_array_equal(engine.calls[1].box, [50, 50, 59, 59])
    assert res.mask[5, 5] and res.mask[55, 55] and not res.mask[30, 30]
    with pytest.raises(ValueError, match="one box per call"):
        to_sam_inputs(obj(Box((0, 0), (9, 9)), Box((50, 50), (59, 59))), SHAPE)


def test_multimask_choice():
    eng = DiskEngine(radius=5, ious=(0.2, 0.9, 0.5))
    eng.set_image(np.zeros(SHAPE + (3,), np.uint8))
    o = obj(Point((40, 40)))
    best = segment_object(eng, o, SHAPE, get_policy("one-shot", multimask_choice="best"))
    assert best.index == 1 and best.score == pytest.approx(0.9)
    whole = segment_object(eng, o, SHAPE, get_policy("one-shot"))
    assert whole.index == 2 and whole.score == pytest.approx(0.5)
    np.testing.assert_allclose(whole.ious, [0.2, 0.9, 0.5])
    fixed = segment_object(eng, o, SHAPE, get_policy("one-shot", multimask_choice=0))
    assert fixed.index == 0
    single = segment_object(eng, o, SHAPE, get_policy("one-shot", multimask_choice="single"))
    assert eng.last.multimask_output is False and single.index == 0 and len(single.ious) == 1


@pytest.mark.parametrize("name", ["scribbles", "scribbles-sample", "scribbles-sample-iterative",
                                  "points", "boxes", "cams", "one-shot"])
def test_paper_presets_keep_the_whole_mask_even_when_its_iou_is_lowest(name):
    """Predicted IoUs falling with the level: "best" takes the sub-part, the paper the whole."""
    eng = DiskEngine(radius=8, ious=(0.95, 0.7, 0.4))
    eng.set_image(np.zeros(SHAPE + (3,), np.uint8))
    o = obj(Box((30, 30), (60, 70))) if name == "boxes" else obj(Point((45, 50)))
    paper = segment_object(eng, o, SHAPE, name)
    best = segment_object(eng, o, SHAPE, get_policy(name, multimask_choice="best"))
    assert paper.index == 2 and paper.score == pytest.approx(0.4)
    assert best.index == 0 and best.score == pytest.approx(0.95)
    # the whole mask is the larger one (the fake's sub-part cuts the top half off)
    assert paper.mask.sum() > best.mask.sum() and (best.mask <= paper.mask).all()
    assert PRESETS["interactive"].multimask_choice == "best"


def test_refine_object_one_decode_with_previous_logits(engine):
    o = obj(Point((10, 10)))
    r1 = refine_object(engine, o, SHAPE, None)
    assert engine.last.mask_input is None and r1.n_calls == 1
    o2 = o.add(Point((60, 90))).add(Point((80, 20), positive=False))
    r2 = refine_object(engine, o2, SHAPE, r1.logits)
    assert len(engine.calls) == 2 and r2.n_calls == 1
    np.testing.assert_array_equal(engine.last.mask_input, r1.logits)
    np.testing.assert_array_equal(engine.last.point_labels, [1, 1, 0])
    # previous mask carried by the logits
    assert r2.mask[10, 10] and r2.mask[60, 90]


def test_logits_are_per_object(engine):
    """A new object starts without logits: nothing is kept between calls."""
    a = segment_object(engine, obj(Point((10, 10))), SHAPE, "points")
    b = segment_object(engine, obj(Point((60, 90))), SHAPE, "points")
    assert engine.calls[1].mask_input is None
    assert not b.mask[10, 10] and a.mask[10, 10]


def test_mask_input_validation(engine):
    with pytest.raises(ValueError, match=r"\(1, 256, 256\)"):
        segment_object(engine, obj(Point((10, 10))), SHAPE, "points",
                       mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="NaN"):
        refine_object(engine, obj(Point((10, 10))), SHAPE, np.full((256, 256), np.nan))
    # (256, 256) is accepted and passed on as (1, 256, 256)
    refine_object(engine, obj(Point((10, 10))), SHAPE, np.zeros((256, 256)))
    assert engine.last.mask_input.shape == (1, 256, 256)


def test_presets_match_the_paper():
    s = PRESETS["scribbles"]
    assert (s.sample_fraction, s.iterative, s.negatives_from_other_classes) == (0.2, True, True)
    assert PRESETS["points"].iterative and PRESETS["points"].group_size == 1
    # the paper's points row adds no negatives; background clicks stay an option
    assert not PRESETS["points"].background_negatives
    assert not PRESETS["points"].negatives_from_other_classes
    assert get_policy("points", background_negatives=True).background_negatives
    assert s.group_size == SCRIBBLE_GROUP_SIZE == 5
    b = PRESETS["boxes"]
    assert (b.unit, b.negatives_from_other_classes, b.background_negatives) == (
        "object", False, False)
    assert PRESETS["cams"].negatives_from_other_classes
    assert not PRESETS["one-shot"].iterative and PRESETS["one-shot"].sample_fraction == 1.0
    assert get_policy(kind="scribbles") is s and get_policy(None).name == "interactive"
    with pytest.raises(KeyError, match="known policies"):
        get_policy("nope")
    with pytest.raises(ValueError, match="sample_fraction"):
        Policy(sample_fraction=0)
    with pytest.raises(ValueError, match="multimask_choice"):
        Policy(multimask_choice="largest")
    assert Policy.from_dict(s.to_dict()) == s


def test_negative_box_rejected(engine):
    with pytest.raises(ValueError, match="no negative boxes"):
        segment_object(engine, obj(Point((10, 10))), SHAPE, "points",
                       negatives=(Box((0, 0), (5, 5)),))


# -- the same features through the real (tiny) SAM ------------------------------------------

class SpyEngine:
    """Wraps a real engine and records what it receives and returns."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id = inner.model_id
        self.logits_frame = inner.logits_frame
        self.calls = []
        self.preds = []

    def set_image(self, image):
        self.inner.set_image(image)

    def predict(self, inputs):
        pred = self.inner.predict(inputs)
        self.calls.append(inputs)
        self.preds.append(pred)
        return pred


@pytest.fixture(scope="module")
def tiny_engine(tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine

    return load_engine("vit_tiny_test", checkpoint=tiny_checkpoint, cache=None, device="cpu",
                       precise=True)


def test_tiny_sam_iterative_scribbles_with_negatives(tiny_engine, rect_image):
    spy = SpyEngine(tiny_engine)
    spy.set_image(rect_image)
    shape = rect_image.shape[:2]
    o = obj(Scribble(np.array([[30, 40], [30, 80]])), Scribble(np.array([[50, 40], [50, 80]])))
    negs = (Scribble(np.array([[80, 5], [80, 120]]), positive=False),)
    res = segment_object(spy, o, shape, "scribbles", negatives=negs)
    # 41 pixels per scribble -> 8 sampled points -> 2 groups each
    assert res.n_calls == 4 and res.mask.shape == shape and res.mask.dtype == bool
    assert res.logits.shape == (1, 256, 256)
    assert spy.preds[0].masks.shape == (3,) + shape
    for k in range(1, 4):  # the whole (third) mask's logits go to the next step
        np.testing.assert_array_equal(spy.calls[k].mask_input,
                                      spy.preds[k - 1].low_res_logits[2:3])
    assert res.score == pytest.approx(float(spy.preds[-1].iou_predictions[2]))
    labels = spy.calls[1].point_labels
    assert (labels == 0).sum() == round(0.2 * 116) and labels[0] == 1


def test_tiny_sam_point_coordinates_reach_the_decoder(tiny_engine, rect_image, monkeypatch):
    """(row 10, col 50) reaches SamPredictor as x=50, y=10 (before its own resize)."""
    seen = {}
    predictor = tiny_engine.predictor
    original = predictor.predict

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(predictor, "predict", spy)
    tiny_engine.set_image(rect_image)
    res = refine_object(tiny_engine, obj(Point((10, 50))), rect_image.shape[:2], None,
                        get_policy("interactive", multimask_choice="whole"))
    np.testing.assert_array_equal(seen["point_coords"], [[50, 10]])
    assert res.index == 2 and res.ious.shape == (3,)
    res2 = refine_object(tiny_engine, obj(Box((20, 30), (59, 89))), rect_image.shape[:2],
                         res.logits)
    np.testing.assert_array_equal(seen["box"], [30, 20, 89, 59])
    np.testing.assert_array_equal(seen["mask_input"], res.logits)
    assert res2.mask.shape == rect_image.shape[:2]

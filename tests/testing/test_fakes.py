"""The fake engines behave like SAM where the pipeline can tell."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.engine.protocol import Engine, SamInputs
from napari_samlabel.testing.fakes import (
    DiskEngine,
    OracleEngine,
    lowres_logits_to_mask,
    mask_to_lowres_logits,
)

SHAPE = (60, 90)


def _img(seed=0):
    return np.random.default_rng(seed).integers(0, 255, SHAPE + (3,), dtype=np.uint8)


def test_disk_engine_shapes_like_sam():
    eng = DiskEngine(radius=4)
    assert isinstance(eng, Engine)
    eng.set_image(_img())
    pred = eng.predict(SamInputs(point_coords=np.array([[30.0, 20.0]]),
                                 point_labels=np.array([1])))
    assert pred.masks.shape == (3,) + SHAPE and pred.masks.dtype == bool
    assert pred.iou_predictions.shape == (3,) and pred.low_res_logits.shape == (3, 256, 256)
    # the point (x=30, y=20) is at row 20, col 30
    assert pred.masks[2][20, 30] and not pred.masks[2][30, 20]
    single = eng.predict(SamInputs(point_coords=np.array([[30.0, 20.0]]),
                                   point_labels=np.array([1]), multimask_output=False))
    assert single.masks.shape == (1,) + SHAPE and single.low_res_logits.shape == (1, 256, 256)


def test_disk_engine_honours_negatives_box_and_mask_input():
    eng = DiskEngine(radius=4)
    eng.set_image(_img())
    prior = np.zeros(SHAPE, bool)
    prior[40:55, 60:85] = True
    pred = eng.predict(SamInputs(point_coords=np.array([[10.0, 10.0], [12.0, 10.0]]),
                                 point_labels=np.array([1, 0]), box=np.array([50, 5, 55, 8]),
                                 mask_input=mask_to_lowres_logits(prior)[None]))
    whole = pred.masks[2]
    assert whole[45, 70] and whole[6, 52]            # mask_input and box
    assert not whole[10, 12] and whole[10, 6]         # negative cuts the disk


@pytest.mark.parametrize("inputs, error", [
    (SamInputs(), "at least one point or a box"),
    (SamInputs(point_coords=np.zeros((1, 2))), "point_labels are required"),
    (SamInputs(point_coords=np.zeros((2, 2)), point_labels=np.ones(1)), "2 points but 1"),
    (SamInputs(box=np.zeros(4), mask_input=np.zeros((1, 64, 64))), r"\(1, 256, 256\)"),
])
def test_fake_validates_like_the_sam_engine(inputs, error):
    eng = DiskEngine()
    with pytest.raises(RuntimeError, match="no image set"):
        eng.predict(SamInputs(box=np.zeros(4)))
    eng.set_image(_img())
    with pytest.raises(ValueError, match=error):
        eng.predict(inputs)


def test_lowres_logits_roundtrip_and_sam_layout():
    """Our low-res layout is SAM's: SAM's own postprocessing maps it back to the mask."""
    torch = pytest.importorskip("torch")
    from napari_samlabel.testing.models import build_tiny_sam

    mask = np.zeros(SHAPE, bool)
    mask[10:40, 20:70] = True
    logits = mask_to_lowres_logits(mask)
    assert logits.shape == (256, 256)
    # image region of a 60 x 90 image: long side 90 -> 1024, rows 683 -> 171 low-res rows
    assert (logits[171:] < 0).all() and (logits[:, 256 - 1] > -100).all()
    np.testing.assert_array_equal(lowres_logits_to_mask(logits, SHAPE), mask)
    sam = build_tiny_sam()
    input_size = (int(60 * 1024 / 90 + 0.5), 1024)
    with torch.no_grad():
        up = sam.postprocess_masks(torch.from_numpy(logits)[None, None], input_size, SHAPE)
    back = up[0, 0].numpy() > 0
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95


def _gt():
    sem = np.zeros(SHAPE, np.uint8)
    inst = np.zeros(SHAPE, np.uint8)
    sem[10:30, 10:30], inst[10:30, 10:30] = 8, 1
    sem[10:30, 30:50], inst[10:30, 30:50] = 8, 2     # touching object of the same class
    sem[40:55, 60:80], inst[40:55, 60:80] = 12, 3
    sem[29, 10:50] = inst[29, 10:50] = 255           # void band
    return sem, inst


def test_oracle_returns_the_object_under_the_prompts():
    img = _img()
    sem, inst = _gt()
    eng = OracleEngine.from_pairs([(img, sem, inst)])
    eng.set_image(img)
    pred = eng.predict(SamInputs(point_coords=np.array([[15.0, 15.0]]),
                                 point_labels=np.array([1])))
    np.testing.assert_array_equal(pred.masks[2], inst == 1)
    assert pred.iou_predictions[2] == pytest.approx(1.0)
    assert np.argmax(pred.iou_predictions) == 2
    # two points on two objects -> their union; a point on background adds nothing
    pred = eng.predict(SamInputs(point_coords=np.array([[15.0, 15.0], [70, 45], [0, 0]]),
                                 point_labels=np.array([1, 1, 1])))
    np.testing.assert_array_equal(pred.masks[2], (inst == 1) | (inst == 3))
    # a box: the object with most pixels inside, clipped to the box
    pred = eng.predict(SamInputs(box=np.array([25, 5, 55, 35])))
    np.testing.assert_array_equal(pred.masks[2], (inst == 2) & (np.arange(90) <= 55)[None])
    # without an instance map, objects are connected components of a class
    eng2 = OracleEngine.from_pairs([(img, sem, None)])
    eng2.set_image(img)
    pred = eng2.predict(SamInputs(point_coords=np.array([[15.0, 15.0]]),
                                  point_labels=np.array([1])))
    np.testing.assert_array_equal(pred.masks[2], (sem == 8))


def test_oracle_overlap_grows_into_neighbours_only():
    img = _img()
    sem, inst = _gt()
    eng = OracleEngine.from_pairs([(img, sem, inst)], overlap=2)
    eng.set_image(img)
    pred = eng.predict(SamInputs(point_coords=np.array([[15.0, 15.0]]),
                                 point_labels=np.array([1])))
    whole = pred.masks[2]
    assert whole[15, 31] and not whole[15, 33]       # 2 px into the neighbour
    assert not whole[15, 8] and not whole[31, 15]     # not into background
    assert pred.iou_predictions[2] < 1.0


def test_oracle_refuses_unknown_images():
    eng = OracleEngine.from_pairs([(_img(0), *_gt())])
    with pytest.raises(KeyError, match="no ground truth"):
        eng.set_image(_img(1))


def test_oracle_answers_concept_prompts_with_every_instance_of_the_class():
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.core.prompts import Box
    from napari_samlabel.engine.protocol import ConceptEngine

    img = _img()
    sem, inst = _gt()
    eng = OracleEngine.from_pairs([(img, sem, inst)], classes=ClassTable.voc(),
                                  concept_score=0.8)
    assert isinstance(eng, ConceptEngine)
    with pytest.raises(RuntimeError, match="no image"):
        eng.find_all("cat")
    eng.set_image(img)
    cats = eng.find_all("Cat", threshold=0.5)
    assert len(cats) == 2 and {c.class_id for c in cats} == {8}
    assert all(c.source == "text:Cat" and c.score == 0.8 for c in cats)
    assert np.array_equal(cats[0].mask | cats[1].mask, (inst == 1) | (inst == 2))
    assert cats[0].box.top_left == (10.0, 10.0) and cats[0].low_res_logits.shape == (256, 256)
    assert eng.find_all("cat", threshold=0.9) == []  # below the threshold
    assert eng.find_all("dog")[0].class_id == 12 and eng.find_all("horse") == []
    # the class of the object under an exemplar; a negative box removes its instance
    similar = eng.find_all(exemplars=[Box((12, 32), (20, 45))],
                           negatives=[Box((12, 12), (20, 25))])
    assert len(similar) == 1 and similar[0].source == "exemplar"
    assert np.array_equal(similar[0].mask, inst == 2)
    with pytest.raises(ValueError, match="phrase"):
        eng.find_all()
    # without instance maps: connected components of the class
    eng2 = OracleEngine.from_pairs([(img, sem, None)], classes={"background": 0, "cat": 8})
    eng2.set_image(img)
    assert len(eng2.find_all("cat")) == 1  # the two touching squares are one component
    with pytest.raises(ValueError, match="class names"):
        nameless = OracleEngine.from_pairs([(img, sem, inst)])
        nameless.set_image(img)
        nameless.find_all("cat")

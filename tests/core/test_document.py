import numpy as np
import pytest

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point

SHAPE = (20, 30)


def _mask(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def _predict(doc, mask, score=0.9, logits_value=1.0):
    logits = np.full((1, 256, 256), logits_value, np.float32)
    return doc.set_prediction(doc.current.prompts, mask, score, logits, "fake:1")


def test_accept_commits_object_and_resets_prompts_and_logits():
    doc = AnnotationDocument("img", SHAPE, class_id=3)
    doc.add_prompt(Point((5, 5)))
    assert _predict(doc, _mask(2, 8, 2, 8))
    obj = doc.accept()
    assert obj is not None and obj.object_id == 1 and obj.class_id == 3
    assert obj.prompts == (Point((5, 5)),)
    assert doc.current.prompts == () and doc.current.logits is None
    assert doc.current.mask is None and doc.current.class_id == 3
    sem, inst = doc.label_maps()
    assert sem[5, 5] == 3 and inst[5, 5] == 1 and sem[0, 0] == 0
    assert doc.status == ImageStatus.IN_PROGRESS


def test_accept_without_mask_does_nothing():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    assert doc.accept() is None
    _predict(doc, np.zeros(SHAPE, bool))
    assert doc.accept() is None and doc.objects == ()


def test_stale_prediction_is_ignored():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    old_prompts = doc.current.prompts
    doc.add_prompt(Point((6, 6), positive=False))
    assert not doc.set_prediction(old_prompts, _mask(0, 5, 0, 5), 0.5, None)
    assert doc.current.mask is None


def test_undo_restores_logits_of_that_state():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(2, 8, 2, 8), logits_value=1.0)
    doc.add_prompt(Point((10, 10)))
    _predict(doc, _mask(2, 12, 2, 12), logits_value=2.0)
    assert doc.current.logits[0, 0, 0] == 2.0
    doc.undo()
    assert doc.current.prompts == (Point((5, 5)),)
    assert doc.current.logits[0, 0, 0] == 1.0
    doc.redo()
    assert doc.current.logits[0, 0, 0] == 2.0 and len(doc.current.prompts) == 2


def test_undo_redo_of_accept_and_events():
    doc = AnnotationDocument("img", SHAPE)
    seen = []
    doc.events.objects_changed.connect(lambda: seen.append("objects"))
    doc.add_prompt(Box((1, 1), (4, 4)))
    _predict(doc, _mask(1, 4, 1, 4))
    doc.accept()
    assert seen == ["objects"]
    doc.undo()
    assert doc.objects == () and doc.current.has_mask
    assert seen == ["objects", "objects"]
    doc.redo()
    assert len(doc.objects) == 1
    doc.add_prompt(Point((1, 1)))
    assert not doc.can_redo  # a new edit drops the redo branch


def test_logits_do_not_leak_into_next_object():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(2, 8, 2, 8))
    doc.accept()
    doc.add_prompt(Point((15, 20)))
    assert doc.current.logits is None and doc.current.mask is None


def test_reopen_then_discard_puts_object_back_and_accept_keeps_id():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(2, 8, 2, 8))
    first = doc.accept()
    doc.add_prompt(Point((15, 20)))
    _predict(doc, _mask(12, 18, 15, 25))
    doc.accept()
    cur = doc.reopen(first.object_id)
    assert cur.prompts == first.prompts and cur.logits is not None
    assert [o.object_id for o in doc.objects] == [2]
    doc.discard()
    assert sorted(o.object_id for o in doc.objects) == [1, 2]
    doc.reopen(1)
    doc.add_prompt(Point((3, 3)))
    _predict(doc, _mask(1, 9, 1, 9))
    again = doc.accept()
    assert again.object_id == 1 and again.created == first.created
    assert len(again.prompts) == 2


def test_overlap_goes_to_higher_score_then_later_object():
    doc = AnnotationDocument("img", SHAPE)
    doc.set_current_class(1)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(0, 10, 0, 10), score=0.95)
    doc.accept()
    doc.set_current_class(2)
    doc.add_prompt(Point((8, 8)))
    _predict(doc, _mask(5, 15, 5, 15), score=0.5)
    doc.accept()
    sem, inst = doc.label_maps()
    assert sem[7, 7] == 1 and inst[7, 7] == 1  # higher score wins the overlap
    assert sem[12, 12] == 2
    doc.set_object_class(2, 4)
    assert doc.label_maps()[0][12, 12] == 4


def test_object_ids_and_validation():
    doc = AnnotationDocument("img", SHAPE)
    with pytest.raises(ValueError, match="mask shape"):
        doc.set_prediction((), np.zeros((3, 3), bool), 0.1, None)
    with pytest.raises(ValueError, match="duplicate object ids"):
        AnnotationDocument("img", SHAPE, [AnnotatedObject(1, 1, _mask(0, 1, 0, 1)),
                                          AnnotatedObject(1, 2, _mask(1, 2, 1, 2))])
    with pytest.raises(ValueError, match="outside 1..254"):
        AnnotatedObject(255, 1, _mask(0, 1, 0, 1))
    full = AnnotationDocument("img", SHAPE, [AnnotatedObject(254, 1, _mask(0, 1, 0, 1))])
    assert full.next_object_id() == 1


def test_status_and_object_at():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(2, 8, 2, 8))
    doc.accept()
    assert doc.object_at(5, 5) == 1 and doc.object_at(15, 15) is None
    assert doc.object_at(-1, 5) is None
    statuses = []
    doc.events.status_changed.connect(statuses.append)
    doc.set_status("done")
    assert doc.status is ImageStatus.DONE and statuses == ["done"]
    doc.undo()
    assert doc.status is ImageStatus.IN_PROGRESS


def test_masks_are_read_only():
    doc = AnnotationDocument("img", SHAPE)
    doc.add_prompt(Point((5, 5)))
    _predict(doc, _mask(2, 8, 2, 8))
    obj = doc.accept()
    with pytest.raises(ValueError):
        obj.mask[0, 0] = True


def test_add_objects_is_one_step_with_fresh_ids():
    doc = AnnotationDocument("x", (10, 10))
    m = np.zeros((10, 10), bool)
    m[:3, :3] = True
    doc.set_prompts([Point((8, 8))])
    doc.set_prediction([Point((8, 8))], ~m, 0.9, None)
    added = doc.add_objects([AnnotatedObject(7, 2, m), AnnotatedObject(7, 3, ~m)])
    assert [o.object_id for o in added] == [1, 2] and doc.status == ImageStatus.IN_PROGRESS
    assert doc.current.prompts == (Point((8, 8)),)          # the object being prompted stays
    assert doc.undo() and doc.objects == () and doc.status == ImageStatus.NEW
    with pytest.raises(ValueError, match="mask shape"):
        doc.add_objects([AnnotatedObject(1, 2, np.zeros((4, 4), bool))])


def test_set_current_puts_a_reopened_object_back():
    from napari_samlabel.core.current import CurrentObject

    doc = AnnotationDocument("x", (10, 10))
    m = np.zeros((10, 10), bool)
    m[:3, :3] = True
    (obj,) = doc.add_objects([AnnotatedObject(1, 2, m)])
    doc.reopen(obj.object_id)
    assert doc.objects == ()
    doc.set_current(CurrentObject(4, (Box((5, 5), (9, 9)),), ~m, 0.5))
    assert [o.object_id for o in doc.objects] == [1] and doc.current.class_id == 4
    assert doc.undo() and doc.objects == () and doc.current.original is not None

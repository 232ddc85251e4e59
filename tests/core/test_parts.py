"""Object -> part hierarchies in the core: class table, composition by level, parent links."""

import numpy as np
import pytest

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.compose import MaskEntry, compose_levels, containing_object
from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box

SHAPE = (40, 60)
CLASSES = ClassTable(("dog", "cat", "dog/head", "cat/head", "dog/head/ear", "a/b"))
DOG, CAT, DOG_HEAD, CAT_HEAD, EAR, SLASHED = 1, 2, 3, 4, 5, 6


def _mask(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def _accept(doc, class_id, mask, score=0.9):
    doc.set_current_class(class_id)
    doc.set_prompts([Box((0, 0), (1, 1))])
    doc.set_prediction(doc.current.prompts, mask, score, None)
    return doc.accept()


def test_class_table_knows_parts_and_their_short_names():
    assert CLASSES.parent(DOG_HEAD) == DOG and CLASSES.parent(DOG) is None
    assert CLASSES.parent(EAR) == DOG_HEAD  # a part of a part
    assert CLASSES.parent(SLASHED) is None and not CLASSES.is_part(SLASHED)  # "a" is unlisted
    assert CLASSES.is_part(CAT_HEAD) and not CLASSES.is_part(0)
    assert CLASSES.parts(DOG) == [DOG_HEAD] and CLASSES.parts(DOG_HEAD) == [EAR]
    assert CLASSES.part_name(DOG_HEAD) == "head" and CLASSES.part_name(DOG) == "dog"
    assert CLASSES.part_index(CAT, "head") == CAT_HEAD
    assert CLASSES.part_index(CAT, "cat/head") == CAT_HEAD
    assert CLASSES.part_index(CAT, "tail") is None
    assert CLASSES.has_parts and not ClassTable.voc().has_parts


def test_parts_are_composed_apart_from_wholes():
    dog = _mask(5, 35, 5, 45)
    head = _mask(5, 15, 5, 15)
    # The head has the higher score: in one map it would punch a hole in the dog.
    maps = compose_levels(SHAPE, [MaskEntry(DOG, 1, dog, 0.5), MaskEntry(DOG_HEAD, 2, head, 0.99)],
                          CLASSES)
    assert (maps.semantic[dog] == DOG).all() and (maps.instance[dog] == 1).all()
    assert (maps.part_semantic[head] == DOG_HEAD).all() and (maps.part_instance[head] == 2).all()
    assert not maps.part_semantic[dog & ~head].any()
    # Without a class table nothing is a part: the old single map, the head on top.
    flat = compose_levels(SHAPE, [MaskEntry(DOG, 1, dog, 0.5), MaskEntry(DOG_HEAD, 2, head, 0.99)],
                          None)
    assert flat.semantic[10, 10] == DOG_HEAD and not flat.part_semantic.any()


def test_parts_compete_among_themselves_with_the_overlap_rule():
    a, b = _mask(0, 10, 0, 10), _mask(5, 15, 5, 15)
    maps = compose_levels(SHAPE, [MaskEntry(DOG_HEAD, 1, a, 0.9), MaskEntry(CAT_HEAD, 2, b, 0.8)],
                          CLASSES)
    assert maps.part_instance[7, 7] == 1 and maps.part_instance[12, 12] == 2


def test_containing_object_picks_most_shared_pixels_and_breaks_ties_by_id():
    part = _mask(10, 20, 10, 20)
    left, right = _mask(0, 40, 0, 14), _mask(0, 40, 14, 60)  # 40 vs 60 of the 100 pixels
    assert containing_object(part, [(7, left), (3, right)]) == 3
    assert containing_object(part, [(7, _mask(10, 20, 10, 15)), (9, _mask(10, 20, 15, 20))]) == 7
    assert containing_object(part, [(1, _mask(30, 40, 30, 40))]) is None
    assert containing_object(np.zeros(SHAPE, bool), [(1, left)]) is None


def test_document_keeps_head_and_dog_whole():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    dog = _accept(doc, DOG, _mask(5, 35, 5, 45), 0.5)
    head = _accept(doc, DOG_HEAD, _mask(5, 15, 5, 15), 0.99)
    sem, inst = doc.label_maps()
    assert (sem[dog.mask] == DOG).all() and (inst[dog.mask] == dog.object_id).all()
    psem, pinst = doc.part_maps()
    assert psem[10, 10] == DOG_HEAD and pinst[10, 10] == head.object_id and psem[30, 30] == 0
    assert doc.object_at(10, 10) == dog.object_id and doc.part_at(10, 10) == head.object_id
    assert doc.part_at(30, 30) is None and doc.part_at(-1, 0) is None
    assert doc.is_part(head.object_id) and not doc.is_part(dog.object_id)
    assert [o.object_id for o in doc.wholes] == [dog.object_id]
    assert [o.object_id for o in doc.parts] == [head.object_id]
    assert doc.parent_of(head.object_id) == dog.object_id
    assert doc.parts_of(dog.object_id) == (head.object_id,)
    assert psem.flags.writeable is False


def test_part_gets_the_whole_containing_most_of_it_and_re_resolves():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    head = _accept(doc, DOG_HEAD, _mask(10, 20, 20, 30))
    assert doc.parent_of(head.object_id) is None  # no dog yet
    cat = _accept(doc, CAT, _mask(0, 40, 0, 60))
    assert doc.parent_of(head.object_id) is None  # a cat is not a dog's parent
    a = _accept(doc, DOG, _mask(0, 40, 0, 24))  # 4 of the head's 10 columns
    assert doc.parent_of(head.object_id) == a.object_id
    b = _accept(doc, DOG, _mask(0, 40, 24, 60))  # 6 columns: it contains more
    assert doc.parent_of(head.object_id) == b.object_id
    doc.remove_object(b.object_id)
    assert doc.parent_of(head.object_id) == a.object_id
    doc.set_object_class(a.object_id, CAT)
    assert doc.parent_of(head.object_id) is None
    assert doc.undo() and doc.parent_of(head.object_id) == a.object_id
    assert doc.undo() and doc.parent_of(head.object_id) == b.object_id
    assert doc.redo() and doc.parent_of(head.object_id) == a.object_id
    assert doc.get(cat.object_id).parent_id is None


def test_reopened_parent_keeps_its_parts_and_reaccept_re_resolves():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    a = _accept(doc, DOG, _mask(0, 40, 0, 30))
    b = _accept(doc, DOG, _mask(0, 40, 30, 60))
    head = _accept(doc, DOG_HEAD, _mask(10, 20, 20, 32))  # mostly in a
    assert doc.parent_of(head.object_id) == a.object_id
    doc.reopen(a.object_id)
    assert doc.parent_of(head.object_id) == a.object_id  # still being refined
    # Refined: a shrinks away from the head, so b now holds more of it.
    doc.set_prompts([Box((0, 0), (2, 2))])
    doc.set_prediction(doc.current.prompts, _mask(0, 40, 0, 10), 0.9, None)
    doc.accept()
    assert doc.parent_of(head.object_id) == b.object_id
    assert doc.get(a.object_id).parent_id is None


def test_explicit_parent_is_an_undoable_step_and_survives_edits():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    a = _accept(doc, DOG, _mask(0, 40, 0, 30))
    b = _accept(doc, DOG, _mask(0, 40, 30, 60))
    head = _accept(doc, DOG_HEAD, _mask(10, 20, 10, 20))  # inside a
    seen = []
    doc.events.objects_changed.connect(lambda: seen.append(1))
    doc.set_parent(head.object_id, b.object_id)
    assert seen and doc.parent_of(head.object_id) == b.object_id
    assert doc.get(head.object_id).parent_fixed
    assert doc.undo() and doc.parent_of(head.object_id) == a.object_id
    assert not doc.get(head.object_id).parent_fixed
    assert doc.redo() and doc.parent_of(head.object_id) == b.object_id
    # Accepting another dog does not move an explicit link; reopening the part keeps it.
    _accept(doc, DOG, _mask(8, 22, 8, 22))
    assert doc.parent_of(head.object_id) == b.object_id
    doc.reopen(head.object_id)
    doc.accept()
    assert doc.parent_of(head.object_id) == b.object_id and doc.get(head.object_id).parent_fixed
    # Reopening the explicit parent keeps the link; deleting it falls back to the pixels.
    doc.reopen(b.object_id)
    assert doc.parent_of(head.object_id) == b.object_id
    doc.discard()
    doc.remove_object(b.object_id)
    assert not doc.get(head.object_id).parent_fixed
    assert doc.parent_of(head.object_id) == a.object_id
    assert doc.undo() and doc.parent_of(head.object_id) == b.object_id
    # None returns to the automatic choice.
    doc.set_parent(head.object_id, None)
    assert doc.parent_of(head.object_id) == a.object_id
    n = len(seen)
    doc.set_parent(head.object_id, None)  # no change, no step
    assert len(seen) == n


def test_set_parent_refuses_wrong_objects():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    dog = _accept(doc, DOG, _mask(0, 40, 0, 30))
    cat = _accept(doc, CAT, _mask(0, 40, 30, 60))
    head = _accept(doc, DOG_HEAD, _mask(10, 20, 10, 20))
    with pytest.raises(ValueError, match="'cat'.*must be a 'dog'"):
        doc.set_parent(head.object_id, cat.object_id)
    with pytest.raises(ValueError, match="not a part"):
        doc.set_parent(dog.object_id, cat.object_id)
    with pytest.raises(KeyError):
        doc.set_parent(head.object_id, 99)
    flat = AnnotationDocument("img", SHAPE, doc.objects)  # no class table: no parts
    with pytest.raises(ValueError, match="not a part"):
        flat.set_parent(head.object_id, dog.object_id)


def test_class_change_turns_a_whole_into_a_part_and_back():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    dog = _accept(doc, DOG, _mask(0, 40, 0, 60))
    x = _accept(doc, DOG, _mask(10, 20, 10, 20), 0.99)
    assert doc.label_maps()[1][15, 15] == x.object_id
    doc.set_object_class(x.object_id, DOG_HEAD)
    assert doc.parent_of(x.object_id) == dog.object_id
    assert doc.label_maps()[1][15, 15] == dog.object_id and doc.part_at(15, 15) == x.object_id
    doc.set_object_class(x.object_id, DOG)
    assert doc.parent_of(x.object_id) is None and not doc.part_maps()[0].any()


def test_part_of_a_part_belongs_to_the_part():
    doc = AnnotationDocument("img", SHAPE, classes=CLASSES)
    _accept(doc, DOG, _mask(0, 40, 0, 60))
    head = _accept(doc, DOG_HEAD, _mask(0, 20, 0, 20))
    ear = _accept(doc, EAR, _mask(0, 5, 0, 5))
    assert doc.parent_of(ear.object_id) == head.object_id


def test_loaded_objects_are_resolved_and_stale_links_dropped():
    dog = AnnotatedObject(1, DOG, _mask(0, 40, 0, 30))
    other = AnnotatedObject(2, DOG, _mask(0, 40, 30, 60))
    fixed = AnnotatedObject(3, DOG_HEAD, _mask(5, 10, 5, 10), parent_id=2, parent_fixed=True)
    auto = AnnotatedObject(4, DOG_HEAD, _mask(5, 10, 5, 10), parent_id=2)
    stale = AnnotatedObject(5, CAT_HEAD, _mask(5, 10, 5, 10), parent_id=1, parent_fixed=True)
    whole = AnnotatedObject(6, CAT, _mask(30, 40, 0, 5), parent_id=1)
    doc = AnnotationDocument("img", SHAPE, [dog, other, fixed, auto, stale, whole],
                             classes=CLASSES)
    assert doc.parent_of(3) == 2 and doc.get(3).parent_fixed
    assert doc.parent_of(4) == 1  # automatic: recomputed from the pixels
    assert doc.parent_of(5) is None and not doc.get(5).parent_fixed
    assert doc.parent_of(6) is None
    plain = AnnotationDocument("img", SHAPE, [dog, other], classes=CLASSES)
    assert plain.objects[0] is dog  # nothing to change: the objects are kept as given


def test_annotated_object_checks_its_parent_fields():
    with pytest.raises(ValueError, match="parent id"):
        AnnotatedObject(3, DOG_HEAD, _mask(0, 1, 0, 1), parent_id=3)
    with pytest.raises(ValueError, match="fixed parent"):
        AnnotatedObject(3, DOG_HEAD, _mask(0, 1, 0, 1), parent_fixed=True)


def test_bundled_voc_parts_list_keeps_voc_indices_and_lists_only_known_parents():
    from pathlib import Path

    from napari_samlabel.core.classes import VOC_CLASSES

    path = Path(__file__).resolve().parents[2] / "napari_samlabel/resources/voc_parts.txt"
    table = ClassTable.from_file(path)
    assert table.names[:21] == VOC_CLASSES  # VOC's own indices unchanged
    extra = range(21, len(table))
    assert len(extra) >= 5 and all(table.is_part(i) for i in extra)
    assert all(table.parent(i) <= 20 for i in extra)  # parts of VOC classes
    for name in ("person/head", "person/torso", "dog/head", "cat/head", "car/wheel"):
        assert table.is_part(table.index(name))
    assert table.part_index(table.index("person"), "head") == table.index("person/head")

"""The Qt-free queue walk: queue ids to project ids, worst first, decided images skipped."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Point
from napari_samlabel.curate.assessment import ImageAssessment, assess_image, rank_images
from napari_samlabel.curate.queue import read_queue, write_queue
from napari_samlabel.curate.review import ReviewWalk

SHAPE = (60, 80)


def _obj(oid, score, prompts=()):
    m = np.zeros(SHAPE, dtype=bool)
    m[10:40, 10 + oid:50] = True
    return AnnotatedObject(oid, 1, m, prompts, score)


@pytest.fixture()
def queue_dir(tmp_path):
    """Four images, worst first: 'img b' (click outside), c (low IoU), d (mild), a (clean)."""
    ranked = rank_images([
        assess_image("a", SHAPE, [_obj(1, 0.97)]),
        assess_image("img b", SHAPE, [_obj(1, 0.97), _obj(2, 0.9, (Point((55, 75)),))]),
        assess_image("c", SHAPE, [_obj(1, 0.7)]),
        assess_image("d", SHAPE, [_obj(1, 0.9)]),  # mild, not flagged
    ])
    assert [a.image_id for a in ranked] == ["img b", "c", "d", "a"]
    write_queue(tmp_path, ranked)
    return tmp_path


def test_walk_worst_first_skipping_decided_images(queue_dir):
    decisions: dict[str, str] = {"c": "accepted"}
    walk = ReviewWalk(queue_dir, ["a", "img b", "c", "d"], decided=decisions.__contains__)
    assert [it.image_id for it in walk.items] == ["img b", "c", "d", "a"]
    assert walk.current is None and walk.remaining() == 3
    first = walk.next()
    assert first.image_id == "img b" and walk.current is first and first.rank == 1
    # The current image's signals, flags and reason come with it.
    assert "positive_outside" in first.flags
    assert first.main_reason == {"object_id": 2, "signal": "positive_outside", "value": 1.0,
                                 "contribution": 0.9}
    worst = first.worst_objects()[0]
    assert worst.object_id == 2 and worst.signals["positive_outside"] == 1.0
    assert first.object(1).flags == [] and first.object(9) is None
    # "c" is decided already: skipped.
    assert walk.next().image_id == "d"
    # A decision made meanwhile (elsewhere) is seen at the next move.
    decisions["a"] = "rejected"
    assert walk.next() is None and walk.current is None
    assert walk.remaining() == 2
    # Going back visits decided images too, so a decision can be revised.
    assert walk.previous().image_id == "a"
    assert walk.previous().image_id == "d"
    assert walk.previous().image_id == "c"
    assert walk.previous(skip_decided=True).image_id == "img b"
    assert walk.previous() is None and walk.current.image_id == "img b"
    # After a restart the walk begins again at the worst undecided image.
    decisions["img b"] = "needs_work"
    assert walk.restart().image_id == "d"
    assert walk.go_to("c").image_id == "c"
    with pytest.raises(KeyError, match="not in the curation queue"):
        walk.go_to("zzz")


def test_walk_maps_voc_safe_ids_and_lists_the_rest(queue_dir):
    # The queue of an exported project has VOC-safe ids ("img_b"); "a" is not in the project.
    data = read_queue(queue_dir)
    for rec in data["images"]:
        if rec["image_id"] == "img b":
            rec["image_id"] = "img_b"
    walk = ReviewWalk(data, ["img b", "c", "d"])
    assert [it.image_id for it in walk.items] == ["img b", "c", "d"]
    assert walk.items[0].assessment.image_id == "img_b"
    assert walk.unmatched == ["a"]
    # An id that two project images would share is ambiguous: not matched.
    walk = ReviewWalk(data, ["img b", "img+b", "img_b!", "c"])
    assert "img_b" not in walk.unmatched and walk.items[0].image_id == "img b"
    walk = ReviewWalk(data, ["img?b", "img!b"])
    assert "img_b" in walk.unmatched


def test_walk_only_flagged_images(queue_dir):
    walk = ReviewWalk(queue_dir, ["a", "img b", "c", "d"], only_flagged=True)
    assert [it.image_id for it in walk.items] == ["img b", "c"]
    assert (queue_dir / "failures.txt").read_text().splitlines() == ["img b", "c"]


def test_assessments_round_trip_through_queue_json(queue_dir):
    for rec in read_queue(queue_dir)["images"]:
        for o in rec["objects"]:
            del o["class_name"]  # added by the queue, not part of the assessment
        assert ImageAssessment.from_dict(rec).to_dict() == rec
    with pytest.raises(ValueError, match="image record 'x'"):
        ImageAssessment.from_dict({"image_id": "x", "height": "tall"})

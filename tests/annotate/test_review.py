"""The review workflow headless: load a curated queue, walk it, decide, restart, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.annotate.review import ReviewController
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.curate.run import curate
from napari_samlabel.io.project import Project

SHAPE = (64, 80)


def _rect(r0, r1, c0, c1):
    m = np.zeros(SHAPE, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


CLEAN = _rect(10, 40, 10, 50)
GOOD = AnnotatedObject(1, 1, CLEAN, (Point((25, 30)), Box((10, 10), (39, 49))), 0.97)


@pytest.fixture()
def curated(tmp_path):
    """A project of five images and the queue `samlabel curate` made of it.

    Worst first: c (flagged), b (a second object with a click outside and stray pieces),
    d (low predicted IoU), a (clean); e is not annotated, so not queued.
    """
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for iid in "abcde":
        Image.fromarray(rng.integers(0, 255, SHAPE + (3,), dtype=np.uint8)).save(
            images / f"{iid}.png")
    proj = Project.create(tmp_path / "proj", images, ["cat", "dog"])
    broken = CLEAN.copy()
    broken[50:60, 60:75] = True
    bad = AnnotatedObject(2, 2, broken, (Point((60, 5)),), 0.62)
    for iid, objects, status in (
            ("a", [GOOD], ImageStatus.DONE),
            ("b", [GOOD, bad], ImageStatus.DONE),
            ("c", [GOOD], ImageStatus.FLAGGED),
            ("d", [AnnotatedObject(1, 1, CLEAN, GOOD.prompts, 0.70)], ImageStatus.DONE)):
        proj.save_document(AnnotationDocument(iid, SHAPE, objects, status))
    result = curate(proj.folder, tmp_path / "review", top=0)
    assert [a.image_id for a in result.ranked] == ["c", "b", "d", "a"]
    return proj.folder, tmp_path / "review"


def _controller(folder):
    """A controller on a freshly opened project (a restart), recording what it does."""
    opened: list[str] = []
    messages: list[str] = []
    c = ReviewController(Project.open(folder), opened.append)
    c.events.message.connect(messages.append)
    return c, opened, messages


def test_walk_decide_and_resume_after_a_restart(curated):
    folder, queue = curated
    c, opened, messages = _controller(folder)
    assert c.position_text() == "No queue loaded."
    assert c.load(queue)                       # the folder: its queue.json is read
    assert c.queue_path == queue / "queue.json"
    assert "queue of 4 images, 4 undecided" in messages[-1]
    assert opened == ["c"] and c.current.image_id == "c"
    assert c.position_text() == "1 of 4 · 4 undecided"
    c.reason, c.note = "wrong object", "the cat's tail is missing"
    assert c.decide("rejected")
    assert messages[-1] == "c: rejected (wrong object), saved"
    # saved at once, and the walk moved to the next undecided image, which was opened
    assert Project.open(folder).review("c").reason == "wrong object"
    assert opened == ["c", "b"] and c.current.image_id == "b"
    assert (c.reason, c.note) == ("", "")       # the draft does not leak to the next image
    c.reason = "boundary"
    assert c.decide("needs_work")
    assert c.current.image_id == "d" and c.position_text() == "3 of 4 · 2 undecided"

    # Restart: a new controller on a newly opened project resumes at the next undecided one.
    c2, opened2, _ = _controller(folder)
    assert c2.load(queue / "queue.json")
    assert opened2 == ["d"] and c2.current.image_id == "d"
    assert {i: (r.decision, r.reason, r.note) for i, r in c2.project.reviews().items()} == {
        "c": ("rejected", "wrong object", "the cat's tail is missing"),
        "b": ("needs_work", "boundary", "")}
    assert c2.counts() == {"accepted": 0, "rejected": 1, "needs_work": 1, "undecided": 2}
    # The queue list marks decided images, and names each image's telling flag.
    rows = [label.split() for _, label in c2.queue_rows()]
    assert [r[0] for r in rows] == ["\u2717", "\u270e", "·", "·"]
    assert [r[2] for r in rows] == ["c", "b", "d", "a"]
    assert [r[4:] for r in rows] == [["flagged"], ["positive_outside"], ["low_iou"], []]
    assert c2.decide("accepted") and c2.decide("accepted")
    assert c2.current is None and c2.counts()["undecided"] == 0
    assert c2.position_text() == "End of the queue (4 images) · 0 undecided"


def test_next_wraps_to_skipped_images_previous_revises_and_clear(curated):
    folder, queue = curated
    c, opened, messages = _controller(folder)
    c.load(queue)
    c.next()                                    # pass over c without deciding
    assert c.current.image_id == "b"
    assert c.decide("accepted") and c.decide("accepted")  # b, d
    assert c.current.image_id == "a"
    assert c.decide("accepted")
    # The one left undecided is found again: the walk wraps round.
    assert c.current.image_id == "c"
    assert c.decide("rejected") and c.current is None
    assert messages[-1] == "all 4 images decided: 3 accepted, 1 rejected, 0 need work"
    # Prev goes back over decided images, and shows the decision to revise it.
    assert c.previous().image_id == "a"
    assert c.decision.decision == "accepted"
    assert c.previous().image_id == "d"
    # Every image is decided: Next has nowhere to go.
    assert c.next() is None and c.current is None
    # A decision cleared elsewhere (another window) is seen at the next move.
    c.project.clear_review("b")
    assert c.next().image_id == "b" and opened[-1] == "b"


def test_include_decided_walks_every_image_and_clear_makes_one_undecided(curated):
    folder, queue = curated
    c, opened, _ = _controller(folder)
    c.load(queue)
    c.decide("rejected")
    c.decide("accepted")                        # c, b decided; on d
    c.include_decided = True
    assert c.restart().image_id == "d"          # restart: the worst *undecided*
    assert c.previous().image_id == "b"
    assert c.decision.decision == "accepted"
    assert c.previous().image_id == "c" and c.reason == ""
    assert c.previous().image_id == "c"         # the worst: stays
    assert [c.next().image_id for _ in range(3)] == ["b", "d", "a"]
    assert c.next() is None                     # the end, not a wrap round
    c.go_to("c")
    assert opened[-1] == "c" and c.decision.decision == "rejected"
    assert c.clear() and c.decision is None
    assert Project.open(folder).review("c") is None
    assert c.current.image_id == "c"            # clearing stays on the image
    assert c.counts()["undecided"] == 3


def test_refused_decisions_and_bad_queues_are_messages(curated, tmp_path):
    folder, queue = curated
    c, opened, messages = _controller(folder)
    assert not c.decide("accepted")
    assert messages[-1].startswith("load a curation queue first")
    assert not c.load(tmp_path / "nowhere")
    assert "curation queue not found" in messages[-1]
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"format": "something else"}')
    assert not c.load(bogus) and "is not a curation queue" in messages[-1]
    other = json.loads((queue / "queue.json").read_text())
    for rec in other["images"]:
        rec["image_id"] = "x" + rec["image_id"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert not c.load(tmp_path / "other.json")
    assert "none of the queue's 4 images is in the project" in messages[-1]
    assert c.walk is None and opened == []

    c.load(queue)
    c.reason = "x" * 300                        # not a short tag
    assert not c.decide("rejected")
    assert messages[-1].startswith("not saved: image c: reason must be one line")
    assert c.current.image_id == "c" and Project.open(folder).review("c") is None
    c.reason = "boundary"
    assert not c.decide("maybe")
    assert "decision 'maybe' is not one of" in messages[-1]
    # The annotator goes to an image the queue does not hold: nothing to decide there.
    c.follow("e")
    assert c.current is None and c.away == "e"
    assert c.position_text() == "e is not in the queue · 4 undecided"
    assert not c.decide("accepted") and "e is not in the queue" in messages[-1]
    assert Project.open(folder).review("e") is None
    c.follow("d")                               # ... and back to a queued one
    assert c.current.image_id == "d" and opened[-1] == "c"  # followed, not reopened
    assert c.next().image_id == "a"


def test_signals_of_the_current_image_and_rescoring_after_a_fix(curated):
    folder, queue = curated
    c, _, _ = _controller(folder)
    c.load(queue)
    c.next()                                    # b
    lines = c.item_lines()
    assert lines[0] == f"b: rank 2, score {c.current.score:.2f}"
    assert "positive_outside" in lines[1] and "fragmented" in lines[1]
    assert lines[2].startswith("why: object 2 (dog): positive prompts outside the mask")
    rows = c.object_rows()
    assert [r.object_id for r in rows] == [2, 1]
    assert rows[0].class_name == "dog" and rows[0].reason.startswith("positive prompts outside")
    assert "fragment_fraction: " in rows[0].signals and rows[1].flags == ()
    assert len(c.object_rows(limit=1)) == 1
    # The annotator fixes object 2: rescored from the objects as they are now.
    now = c.rescore([GOOD, AnnotatedObject(2, 2, _rect(42, 60, 55, 78), (Point((50, 60)),),
                                           0.95)], "done")
    assert now.score < c.current.score and not now.flags
    assert c.item_lines()[-1] == f"now: score {now.score:.2f}, flags: none"
    c.next()
    assert c.now is None and len(c.item_lines()) == 3


def test_accepting_marks_the_image_done_so_the_export_trains_on_it(curated, tmp_path):
    from napari_samlabel.io.voc_project import export_project

    folder, queue = curated
    c, _, messages = _controller(folder)
    c.load(queue)                               # c: flagged by the annotator
    assert c.decide("accepted")
    assert messages[-1] == "c: accepted, saved, marked done"
    assert Project.open(folder).status("c") == ImageStatus.DONE
    assert c.decide("rejected")                 # b: a rejection leaves the status alone
    assert Project.open(folder).status("b") == ImageStatus.DONE
    assert messages[-1] == "b: rejected, saved"
    out = tmp_path / "voc"
    export_project(Project.open(folder), out, train_fraction=1.0)
    sets = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert "c" in (sets / "train.txt").read_text().split()
    assert "b" in (sets / "excluded.txt").read_text().split()


def test_a_status_that_cannot_be_saved_is_reported_with_the_decision(curated):
    folder, queue = curated

    def refuse(image_id, status):
        raise OSError(f"disk full writing {image_id}")

    c = ReviewController(Project.open(folder), set_status=refuse)
    messages: list[str] = []
    c.events.message.connect(messages.append)
    c.load(queue)
    assert c.decide("accepted")
    assert messages[-1] == "c: accepted, saved; its status is not saved: disk full writing c"
    assert Project.open(folder).review("c").decision == "accepted"


def test_a_reopened_project_resumes_its_last_queue_at_the_open_image(curated, tmp_path):
    folder, queue = curated
    c, _, _ = _controller(folder)
    assert not c.resume()                       # nothing loaded yet: quietly nothing
    c.load(queue)
    c.decide("rejected")                        # c decided; on b
    # Reopened: the queue comes back without opening anything, at the annotator's image.
    c2, opened, messages = _controller(folder)
    assert c2.resume(at="d")
    assert opened == [] and c2.current.image_id == "d"
    assert c2.queue_path == queue / "queue.json" and "3 undecided" in messages[-1]
    assert c2.decide("accepted") and c2.current.image_id == "a"  # the next worse one
    c3, opened3, _ = _controller(folder)
    assert c3.resume(at="e")                    # an image the queue does not hold
    assert c3.current is None and c3.away == "e" and opened3 == []
    assert c3.next().image_id == "b"
    # A queue that is gone is forgotten quietly; one that no longer fits, with a message.
    (queue / "queue.json").rename(tmp_path / "moved.json")
    c4, _, messages4 = _controller(folder)
    assert not c4.resume() and messages4 == [] and c4.walk is None
    other = json.loads((tmp_path / "moved.json").read_text())
    for rec in other["images"]:
        rec["image_id"] = "x" + rec["image_id"]
    (queue / "queue.json").write_text(json.dumps(other))
    assert not c4.resume() and "none of the queue's" in messages4[-1]
    assert Project.open(folder).last_review_queue() is None


def test_a_controller_for_a_session_opens_and_marks_done_through_it(curated):
    from napari_samlabel.annotate.session import session_for_project

    folder, queue = curated
    session = session_for_project(Project.open(folder), prefetch=False)
    c = ReviewController.for_session(session)
    assert c.decision_text() == ""              # nothing under review yet
    c.load(queue)                               # c: opened in the session
    assert session.image_id() == "c" and c.decision_text() == "Decision: none yet"
    c.reason, c.note = "wrong object", "tail"
    assert c.decide("accepted")                 # marked done through the session ...
    assert session.status_of(2) == ImageStatus.DONE    # images a..e: c is index 2
    assert session.image_id() == "b"            # ... and the next one opened in it
    c.previous()
    assert c.decision_text() == "Decision: accepted — wrong object (tail)"
    # The open document rescores the image under review (an object being refined counts).
    session.open_image(1)                       # b, its two objects
    doc = session.doc
    c.go_to("b")
    before = c.rescore_document(doc)
    assert before is not None and before.image_id == "b"
    session.reopen(2)
    assert c.rescore_document(session.doc).score == pytest.approx(before.score)
    session.open_image(0)                       # a: not the image under review
    assert c.rescore_document(session.doc) is None
    with pytest.raises(ValueError, match="not among the annotator's images"):
        c.open_image("zz")


def test_object_rows_say_why_in_one_line(curated):
    from napari_samlabel.annotate.review import ObjectRow

    assert ObjectRow(1, "cat", 0.9, (), "", "").why == "fine"
    assert ObjectRow(1, "cat", 0.5, ("low_iou", "fragmented"), "", "").why == \
        "low_iou, fragmented"
    assert ObjectRow(1, "cat", 0.5, ("low_iou",), "predicted IoU 0.50", "").why == \
        "low_iou — predicted IoU 0.50"

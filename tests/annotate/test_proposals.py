"""Proposals in the headless session: find all / similar, accept, reject, refine, cancel."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.candidates import Candidate, Decision
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.engine.concept_source import ConceptSource, class_of_phrase, class_phrase
from napari_samlabel.engine.protocol import ConceptEngine, ProposalSource
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.io.project import Project
from napari_samlabel.testing.concepts import ColourConceptEngine, concept_image
from napari_samlabel.testing.fakes import DiskEngine
from tests.annotate.runners import ManualRunner

DOG, CAT = 12, 8


@pytest.fixture()
def concept_folder(tmp_path):
    """Two images with coloured blobs: the second has its dogs elsewhere."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(concept_image()).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(concept_image()[:, ::-1])).save(folder / "b.png")
    return folder


def _session(folder, engine=None, **kwargs):
    s = session_for_project(project_for_folder(folder),
                            engine=engine or ColourConceptEngine(), **kwargs)
    s.open_image(0)
    return s


def test_phrases_of_class_names():
    voc = ClassTable.voc()
    assert class_phrase(voc, 16) == "potted plant" and class_phrase(voc, DOG) == "dog"
    assert class_of_phrase(voc, "Potted  Plant") == 16 and class_of_phrase(voc, "ufo") is None


def test_find_all_fills_the_set_and_the_threshold_filters(concept_folder):
    s = _session(concept_folder)
    ctrl = s.proposals
    s.select_class(DOG)
    assert ctrl.find_all()                                   # the selected class
    engine = s.engine
    assert engine.find_calls[-1]["text"] == "dog"
    cands = ctrl.candidates
    assert len(cands) == 2 and [c.class_id for c in cands] == [DOG, DOG]
    assert cands[0].score > 0.9 > 0.5 > cands[1].score       # best first
    assert ctrl.visible() == [0] and ctrl.selected == 0
    ctrl.set_threshold(0.3)
    assert ctrl.visible() == [0, 1]
    ctrl.set_threshold(0.99)
    assert ctrl.visible() == [] and ctrl.selected is None
    assert not ctrl.running


def test_a_typed_phrase_proposes_its_class(concept_folder):
    s = _session(concept_folder)
    s.select_class(DOG)
    s.proposals.find_all("cat")
    assert [c.class_id for c in s.proposals.candidates] == [CAT]
    assert s.proposals.candidates[0].source == "text:cat"


def test_accept_all_adds_visible_candidates_in_one_undo_step(concept_folder):
    s = _session(concept_folder)
    s.select_class(DOG)
    ctrl = s.proposals
    ctrl.find_all()
    ctrl.set_threshold(0.3)
    added = ctrl.accept_all()
    assert len(added) == 2 and len(s.doc.objects) == 2
    assert all(o.class_id == DOG for o in added)
    assert ctrl.visible() == []
    assert {ctrl.candidates.decision(i) for i in range(2)} == {Decision.ACCEPTED}
    obj = s.doc.objects[0]
    assert obj.attributes["source"] == "text:dog"
    assert obj.signals["candidate_score"] == pytest.approx(ctrl.candidates[0].score)
    assert obj.score == pytest.approx(ctrl.candidates[0].score)
    assert "stability" in obj.signals
    stored = Project.open(concept_folder).read_objects("a")  # autosaved
    assert len(stored) == 2 and stored[0].attributes["source"] == "text:dog"
    assert s.undo() and s.doc.objects == ()                   # one step takes both out
    assert ctrl.visible() == [0, 1]                           # ... and back into the list
    assert Project.open(concept_folder).read_objects("a") == []
    assert s.redo() and len(s.doc.objects) == 2 and ctrl.visible() == []


def test_accept_one_keeps_the_current_object_and_reject_hides(concept_folder):
    s = _session(concept_folder)
    s.select_class(DOG)
    s.set_prompts([Point((50, 70))])                         # work in progress
    ctrl = s.proposals
    ctrl.find_all()
    ctrl.set_threshold(0.3)
    ctrl.reject(1)
    assert ctrl.visible() == [0] and ctrl.candidates.decision(1) == Decision.REJECTED
    obj = ctrl.accept_candidate(0, class_id=CAT)             # into another class
    assert obj is not None and obj.class_id == CAT and len(s.doc.objects) == 1
    assert s.doc.current.prompts == (Point((50, 70)),)       # untouched
    assert ctrl.accept_candidate(0) is None                  # decided already
    assert ctrl.visible() == []


def test_refine_feeds_the_candidates_logits_to_the_next_decode(concept_folder):
    engine = ColourConceptEngine()
    s = _session(concept_folder, engine)
    s.select_class(DOG)
    ctrl = s.proposals
    ctrl.find_all()
    cand = ctrl.candidates[0]
    calls = len(engine.calls)
    ctrl.refine_candidate(0)
    cur = s.doc.current
    assert cur.candidate is cand and np.array_equal(cur.mask, cand.mask)
    assert cur.prompts == cand.prompts and len(engine.calls) == calls   # no decode yet
    assert ctrl.candidates.decision(0) == Decision.REFINING and ctrl.visible() == []
    s.set_prompts(cur.prompts + (Point((30, 40)),))          # + point next to it
    sent = engine.calls[-1].mask_input
    assert sent is not None
    np.testing.assert_array_equal(sent[0], cand.low_res_logits)
    assert s.doc.current.mask[30, 40] and s.doc.current.mask[cand.mask].all()
    obj = s.accept()
    assert obj.attributes["source"] == "text:dog"
    assert obj.signals["candidate_score"] == pytest.approx(cand.score)
    assert ctrl.candidates.decision(0) == Decision.ACCEPTED
    s.undo()                                                 # the accept
    assert ctrl.candidates.decision(0) == Decision.REFINING
    s.discard()
    assert ctrl.candidates.decision(0) == Decision.PENDING and ctrl.visible() == [0]


def test_find_similar_uses_the_exemplar_box(concept_folder):
    s = _session(concept_folder)
    s.select_class(CAT)
    s.set_prompts([Box((40, 10), (50, 20))])                 # a box on the cat
    assert s.proposals.find_similar_to_current()
    engine = s.engine
    assert engine.find_calls[-1]["exemplars"] == (Box((40, 10), (50, 20)),)
    cands = s.proposals.candidates
    assert len(cands) == 1 and cands[0].source == "exemplar" and cands[0].class_id == CAT
    assert cands[0].mask[36:56, 8:24].all()
    assert s.doc.current.prompts == ()                       # the box became the exemplar


def test_negative_boxes_drop_instances(concept_folder):
    s = _session(concept_folder)
    s.proposals.set_threshold(0.0)
    s.proposals.find_similar(Box((10, 10), (20, 20)), negatives=[Box((42, 52), (45, 55))])
    assert len(s.proposals.candidates) == 1                  # the small dog is excluded


def test_a_model_without_concepts_says_so(concept_folder):
    s = _session(concept_folder, DiskEngine())
    messages = []
    s.proposals.events.message.connect(messages.append)
    assert not s.proposals.find_all("dog")
    assert "concept model" in messages[-1] and "Model tab" in messages[-1]
    with pytest.raises(RuntimeError, match="concept model"):
        ConceptSource("dog").propose(DiskEngine(), concept_image(), ClassTable.voc())


def test_any_proposal_source_plugs_in(concept_folder):
    class Squares:
        name = "squares"

        def propose(self, engine, image, classes, progress=None):
            mask = np.zeros(image.shape[:2], bool)
            mask[:5, :5] = True
            return [Candidate(mask, 0.8, "model:squares", class_id=3),
                    Candidate(np.ones((3, 3), bool), 0.9, "model:squares")]  # a bad one

    assert isinstance(Squares(), ProposalSource) and isinstance(ConceptSource("x"),
                                                                ProposalSource)
    assert isinstance(ColourConceptEngine(), ConceptEngine)
    s = _session(concept_folder, DiskEngine())
    messages = []
    s.proposals.events.message.connect(messages.append)
    assert s.proposals.propose(Squares())
    assert len(s.proposals.candidates) == 1 and "another size" in messages[-1]
    obj = s.proposals.accept_candidate(0)
    assert obj.class_id == 3 and obj.attributes["source"] == "model:squares"


def test_candidates_are_kept_per_image(concept_folder):
    s = _session(concept_folder)
    s.proposals.find_all("cat")
    assert len(s.proposals.candidates) == 1
    s.next_image()
    assert len(s.proposals.candidates) == 0
    s.previous_image()
    assert len(s.proposals.candidates) == 1 and s.proposals.visible() == [0]


def test_repeats_of_accepted_objects_are_left_out(concept_folder):
    s = _session(concept_folder)
    s.proposals.find_all("cat")
    s.proposals.accept_candidate(0)
    s.proposals.find_all("cat")
    assert len(s.proposals.candidates) == 0


class _ThreadRunner:
    """Runs jobs on threads; the test delivers their results (as the GUI thread would)."""

    def __init__(self):
        self.results = queue.Queue()

    def start(self, fn, on_done, on_error, label):
        def run():
            try:
                self.results.put((on_done, fn()))
            except Exception as exc:
                self.results.put((on_error, exc))
        threading.Thread(target=run, daemon=True).start()

    def deliver(self, timeout=10.0):
        callback, payload = self.results.get(timeout=timeout)
        callback(payload)


def test_a_long_search_never_blocks_and_cancels(concept_folder):
    engine = ColourConceptEngine(delay=0.5)
    runner = _ThreadRunner()
    s = _session(concept_folder, engine, runner=runner, prefetch=False)
    runner.deliver()                                         # the encode
    ctrl = s.proposals
    t0 = time.perf_counter()
    assert ctrl.find_all("dog")
    assert time.perf_counter() - t0 < 0.3                   # queued, not run here
    assert ctrl.running and engine.started.wait(5)
    assert ctrl.cancel() and not ctrl.running               # the view is free at once
    runner.deliver()                                         # the job stops at its next report
    assert engine.steps == 1                                 # of 2 instances
    assert len(ctrl.candidates) == 0 and s.lane.idle
    assert ctrl.find_all("cat") and ctrl.running             # a new search runs normally
    runner.deliver()
    assert len(ctrl.candidates) == 1 and not ctrl.running


def test_a_waiting_search_cancels_at_once(concept_folder):
    runner = ManualRunner()
    s = _session(concept_folder, runner=runner, prefetch=False)   # the encode waits
    assert s.proposals.find_all("dog") and s.lane.waiting("propose")
    s.proposals.cancel()
    assert not s.lane.waiting("propose") and not s.proposals.running
    runner.finish()                                          # the encode
    assert runner.started == [] and s.lane.idle

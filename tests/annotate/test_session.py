"""The Qt-free annotation session, headless (no display needed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.annotate.session import AnnotationSession, session_for_project
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.io.project import Project
from napari_samlabel.testing.fakes import DiskEngine
from tests.annotate.runners import ManualRunner


def test_headless_session_decodes_accepts_and_autosaves(image_folder):
    project = project_for_folder(image_folder)
    engine = DiskEngine(radius=4)
    s = session_for_project(project, engine=engine)
    timings = []
    s.events.timing.connect(timings.append)
    s.open_image(0)
    assert s.is_encoded(0) and s.is_encoded(1)          # prefetched, inline here
    s.select_class(3)
    s.set_prompts([Point((20, 30))])
    assert s.doc.current.has_mask and s.doc.current.mask[20, 30]
    s.set_prompts([Point((20, 30)), Point((40, 40))])
    assert engine.calls[-1].mask_input is not None      # logits handed over
    obj = s.accept()
    assert obj.class_id == 3
    stored = Project.open(image_folder).read_objects(s.image_id())
    np.testing.assert_array_equal(stored[0].mask, obj.mask)
    s.set_object_class(obj.object_id, 5)
    assert Project.open(image_folder).read_objects(s.image_id())[0].class_id == 5
    s.undo()
    assert Project.open(image_folder).read_objects(s.image_id())[0].class_id == 3
    s.set_status("flagged")
    assert Project.open(image_folder).status(s.image_id()) == ImageStatus.FLAGGED
    assert s.next_unfinished() and s.index == 1
    assert timings[-1].startswith("encode ") and " ms · decode " in timings[-1]


def test_stale_prediction_for_an_old_image_is_dropped(image_folder):
    runner = ManualRunner()
    project = project_for_folder(image_folder)
    s = session_for_project(project, engine=DiskEngine(), runner=runner, prefetch=False)
    s.open_image(0)
    runner.finish()                                     # encode 0
    s.set_prompts([Point((20, 30))])                    # decode starts ...
    s.next_image()                                      # ... the annotator moves on
    runner.finish()                                     # the old decode returns
    assert s.index == 1 and s.doc.current.mask is None
    runner.finish()                                     # encode 1
    assert runner.started == [] and s.lane.idle


def test_reopened_object_stays_saved_until_accepted_or_discarded(image_folder):
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine())
    s.open_image(0)
    s.set_prompts([Point((20, 30))])
    obj = s.accept()
    s.reopen(obj.object_id)
    assert s.doc.objects == ()                          # in the document it is current ...
    assert len(Project.open(image_folder).read_objects(s.image_id())) == 1   # ... not lost
    s.discard()
    assert [o.object_id for o in s.doc.objects] == [obj.object_id]


def test_session_needs_images():
    with pytest.raises(ValueError, match="no images"):
        AnnotationSession([])


def test_prompts_drawn_before_the_encode_finishes_are_decoded(image_folder):
    runner = ManualRunner()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            runner=runner, prefetch=False)
    s.open_image(0)                                     # encode starts
    s.set_prompts([Point((20, 30))])                    # decode waits behind it
    runner.finish()                                     # encode
    runner.finish()                                     # decode
    assert s.doc.current.has_mask and s.lane.idle


def test_engine_arriving_late_encodes_and_decodes(image_folder):
    s = session_for_project(project_for_folder(image_folder), prefetch=False)
    s.open_image(0)
    s.set_prompts([Point((20, 30))])                    # no model yet: nothing to run
    assert s.doc.current.mask is None
    s.set_engine(DiskEngine())
    assert s.is_encoded(0) and s.doc.current.has_mask


def _session(image_folder, engine=None, **kwargs):
    s = session_for_project(project_for_folder(image_folder), engine=engine or DiskEngine(),
                            **kwargs)
    s.open_image(0)
    return s


def test_selected_object_is_reclassed_deleted_and_undone(image_folder):
    s = _session(image_folder)
    selections = []
    s.events.selection_changed.connect(selections.append)
    s.select_class(3)
    s.set_prompts([Point((20, 30))])
    first = s.accept()
    s.set_prompts([Point((60, 80))])
    second = s.accept()
    s.select_object(first.object_id)
    s.pick_class(12)                                    # a class key with a selection ...
    assert s.doc.get(first.object_id).class_id == 12
    assert s.current_class == 3 and s.doc.current.class_id == 3   # ... leaves the next one
    stored = {o.object_id: o.class_id for o in Project.open(image_folder).read_objects("a_cat")}
    assert stored == {first.object_id: 12, second.object_id: 3}
    assert s.delete_selected() and s.selected is None
    assert [o.object_id for o in s.doc.objects] == [second.object_id]
    assert [o.object_id for o in Project.open(image_folder).read_objects("a_cat")] == \
        [second.object_id]
    assert not s.delete_selected()                      # nothing selected: nothing deleted
    s.undo()                                            # the delete is undone, and saved
    assert len(Project.open(image_folder).read_objects("a_cat")) == 2
    s.select_object(second.object_id)
    s.set_prompts([Point((5, 5))])                      # prompting again deselects
    assert s.selected is None
    assert selections == [first.object_id, 0, second.object_id, 0]
    with pytest.raises(KeyError):
        s.select_object(99)


def test_accept_records_stability_and_iou_spread(image_folder):
    engine = DiskEngine(radius=6, ious=(0.5, 0.9, 0.7))
    s = _session(image_folder, engine)
    s.set_prompts([Point((30, 40))])
    obj = s.accept()
    assert obj.signals["iou_spread"] == pytest.approx(0.4)
    assert 0.5 < obj.signals["stability"] <= 1.0
    stored = Project.open(image_folder).read_objects(s.image_id())[0]
    assert stored.signals == pytest.approx(dict(obj.signals))
    # Reopened from disk (no logits kept) and accepted again: the signals stay.
    s.open_image(0)
    s.reopen(obj.object_id)
    again = s.accept()
    assert again.signals == pytest.approx(dict(obj.signals))


def test_undo_after_a_class_change_keeps_the_mask_without_a_decode(image_folder):
    engine = DiskEngine()
    s = _session(image_folder, engine)
    s.set_prompts([Point((20, 30))])
    s.set_prompts([Point((20, 30)), Point((40, 50))])
    mask = s.doc.current.mask
    calls = len(engine.calls)
    s.select_class(7)                  # a new current object, same prompts and mask
    s.accept()
    s.undo()                           # back to the class-changed, unaccepted object
    assert s.doc.current.mask is mask and s.doc.current.class_id == 7
    s.undo()                           # back before the class change
    s.redo()
    s.redo()
    assert len(engine.calls) == calls  # nothing was decoded again
    s.undo()
    s.undo()
    s.undo()                           # one prompt: its own (earlier) mask, no decode
    assert len(s.doc.current.prompts) == 1 and len(engine.calls) == calls


def test_prompts_outside_the_image_are_dropped_with_a_notice(image_folder):
    s = _session(image_folder)
    messages = []
    s.events.message.connect(messages.append)
    h, w = s.doc.shape
    kept = s.set_prompts([Point((20, 30)), Point((h + 40.0, 10.0))])
    assert kept == (Point((20, 30)),) and s.doc.current.prompts == kept
    assert s.doc.current.has_mask          # the decode of the rest worked
    assert "outside" in messages[0]
    s.set_prompts([Point((20, 30)), Point((-30.0, -30.0))])   # a click past the corner
    assert messages[-1].startswith("ignored 1 prompt outside")
    s.set_prompts([Point((20, 30)), Point((40, 40))])
    assert messages[-1] == ""              # cleared by the next successful decode


def test_decode_error_is_cleared_by_the_next_success(image_folder):
    class Flaky(DiskEngine):
        fail = True

        def predict(self, inputs):
            if self.fail:
                self.fail = False
                raise RuntimeError("boom")
            return super().predict(inputs)

    s = _session(image_folder, Flaky())
    messages = []
    s.events.message.connect(messages.append)
    s.set_prompts([Point((20, 30))])
    assert messages == ["decode failed: boom"]
    s.set_prompts([Point((20, 30)), Point((40, 40))])
    assert messages == ["decode failed: boom", ""] and s.doc.current.has_mask


def test_images_load_off_the_calling_thread_newest_request_wins(image_folder):
    loader = ManualRunner()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            prefetch=False, loader=loader)
    assert s.open_image(0) is None and s.doc is None      # being read
    loader.finish()
    assert s.index == 0 and s.doc is not None
    opened = []
    s.events.image_changed.connect(opened.append)
    assert s.next_image() and s.next_image()              # two presses before a load ends
    assert s.index == 0 and s.target_index == 2
    loader.finish()                                       # image 1 arrives: superseded
    assert s.index == 0 and opened == []
    loader.finish()
    assert s.index == 2 and opened == [2] and s.idle
    assert not s.next_image()                             # the last image


def test_prefetch_reads_the_next_image_and_document_ahead(image_folder):
    reads = []

    def loader(path):
        reads.append(path.stem)
        from napari_samlabel.io.images import load_image

        return load_image(path)

    s = _session(image_folder, image_loader=loader)
    assert reads == ["a_cat", "b_coffee"]                 # the open one, the prefetched one
    s.next_image()
    assert reads == ["a_cat", "b_coffee", "c_astronaut"]  # b_coffee was not read again
    assert s.image_id() == "b_coffee" and s.doc.image_id == "b_coffee"


def test_polarity_is_session_state_with_an_event(image_folder):
    s = _session(image_folder)
    seen = []
    s.events.polarity_changed.connect(seen.append)
    assert s.positive and s.toggle_polarity() is False
    s.set_polarity(False)                                 # unchanged: no event
    s.set_polarity(True)
    assert seen == [False, True]


class _RecordingDisk(DiskEngine):
    """A disk engine that records the mask_input of every decode."""

    def __init__(self, model_id, radius):
        super().__init__(radius=radius)
        self.model_id = model_id
        self.mask_inputs = []

    def predict(self, inputs):
        self.mask_inputs.append(inputs.mask_input)
        return super().predict(inputs)


def test_switching_models_keeps_accepted_objects_and_redecodes_without_old_logits(
        image_folder):
    old, new = _RecordingDisk("model-a:1", 6.0), _RecordingDisk("model-b:2", 12.0)
    s = _session(image_folder, engine=old, prefetch=False)
    s.set_prompts([Point((20, 30))])
    kept = s.accept()
    s.set_prompts([Point((40, 50))])
    s.set_prompts([Point((40, 50)), Point((42, 52))])
    assert old.mask_inputs[-1] is not None             # the old model's own logits went back
    small = s.doc.current.mask.sum()
    s.set_engine(new)
    # The current object is answered by the new model at once, without the old logits.
    assert new.mask_inputs == [None]
    assert s.doc.current.model_id == "model-b:2" and s.doc.current.mask.sum() > small
    assert s.doc.objects == (kept,) and kept.model_id == "model-a:1"
    assert Project.open(image_folder).read_objects(s.image_id())[0].model_id == "model-a:1"
    # From now on the new model's logits are handed back.
    s.set_prompts([Point((40, 50)), Point((42, 52)), Point((44, 50))])
    assert new.mask_inputs[-1] is not None
    # A reopened object of the old model refines without the old logits.
    s.discard()
    s.reopen(kept.object_id)
    s.set_prompts([*s.doc.current.prompts, Point((22, 31))])
    assert new.mask_inputs[-1] is None


def test_reopening_resumes_at_the_last_image_and_class(image_folder):
    s = _session(image_folder, prefetch=False)
    s.next_image()
    s.next_image()
    s.select_class(7)
    s.previous_image()                           # image 1 in progress would also win; no
    s.set_prompts([Point((20, 30))])
    s.accept()
    s.next_image()                               # left at image 2, class 7
    again = session_for_project(Project.open(image_folder), engine=DiskEngine(),
                                prefetch=False)
    assert again.resume_index() == 2 and again.current_class == 7
    again.open_image(again.resume_index())
    assert again.doc.current.class_id == 7
    # A damaged position file is a warning, never a failure to open.
    (image_folder / "samlabel-session.json").write_text("{not json")
    with pytest.warns(UserWarning, match="samlabel-session.json"):
        third = session_for_project(Project.open(image_folder), engine=DiskEngine())
    assert third.resume_index() == 1              # the first image in progress


def test_status_of_another_image_is_saved_and_taken_over_when_it_opens(image_folder):
    """A status set for an image that is preloaded or still being read is not lost."""
    loader = ManualRunner()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            prefetch=False, loader=loader)
    s.open_image(0)
    loader.finish()
    changed = []
    s.events.status_changed.connect(lambda i, st: changed.append((i, st)))
    s.set_status_of(0, ImageStatus.FLAGGED)               # the open one: its document
    assert s.doc.status == ImageStatus.FLAGGED and changed == [(0, "flagged")]
    s.open_image(1)
    fn, on_done, _, _ = loader.started.pop(0)
    read = fn()                                           # read from disk ...
    s.set_status_of(1, ImageStatus.DONE)                  # ... before its status is set
    assert read[2].status == ImageStatus.NEW
    assert s.project.status("b_coffee") == ImageStatus.DONE
    assert s.status_of(1) == ImageStatus.DONE and changed[-1] == (1, "done")
    on_done(read)                                         # the read arrives
    assert s.index == 1 and s.doc.status == ImageStatus.DONE
    s.undo()                                              # taking it over was one step
    assert s.doc.status == ImageStatus.NEW
    assert Project.open(s.project.folder).status("b_coffee") == ImageStatus.NEW
    assert Project.open(s.project.folder).status("a_cat") == ImageStatus.FLAGGED


def test_an_anticipated_decode_answers_the_prompts_that_follow_or_is_dropped(image_folder):
    runner = ManualRunner()
    engine = DiskEngine(radius=4)
    s = session_for_project(project_for_folder(image_folder), engine=engine, prefetch=False,
                            runner=runner)
    s.open_image(0)
    while runner.started:                                 # the encode
        runner.finish()
    first = (Point((20, 30)),)
    assert s.anticipate(first)                            # the click's release ...
    assert s.doc.current.prompts == ()                    # ... before the layer has it
    s.set_prompts(first)                                  # the layer reports exactly it
    assert len(runner.started) == 1 and not s.lane.waiting("decode")  # no second decode
    runner.finish()
    assert s.doc.current.prediction_is_current and s.doc.current.mask[20, 30]
    # Anticipated while a decode runs: it waits; the same prompts set then reuse it.
    second = first + (Point((40, 40)),)
    s.set_prompts(first + (Point((10, 10)),))             # a decode starts (running)
    assert s.anticipate(second) and len(runner.started) == 1
    s.set_prompts(second)                                 # no new request replaces it
    runner.finish()                                       # (10, 10): stale, dropped
    runner.finish()                                       # the anticipated one
    assert not runner.started and s.doc.current.prediction_is_current
    assert s.doc.current.prompts == second and s.doc.current.mask[40, 40]
    assert engine.calls[-1].mask_input is not None        # from the object's logits
    # Anticipated, but the layer reports something else: that is decoded instead.
    assert s.anticipate(second + (Point((5, 60)),))
    other = second + (Point((50, 70)),)
    s.set_prompts(other)
    assert len(runner.started) == 1 and s.lane.waiting("decode")  # other waits its turn
    runner.finish()
    assert not s.doc.current.prediction_is_current        # its answer was dropped
    runner.finish()
    assert s.doc.current.prediction_is_current and s.doc.current.mask[50, 70]
    # Nothing to anticipate: no change, or a prompt off the image.
    assert not s.anticipate(other)
    assert not s.anticipate(other + (Point((-5, 10)),)) and not runner.started


def test_a_running_decode_from_other_logits_does_not_answer_the_same_prompts(image_folder):
    runner = ManualRunner()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(radius=4),
                            prefetch=False, runner=runner)
    s.open_image(0)
    while runner.started:
        runner.finish()
    s.set_prompts((Point((20, 30)),))
    runner.finish()                                       # the object now has logits
    prompts = (Point((20, 30)), Point((30, 40)))
    s.set_prompts(prompts)                                # running, from those logits
    s.doc.set_prediction(prompts, np.zeros(s.doc.shape, bool), 0.5,
                         np.ones((1, 256, 256), np.float32))  # other logits arrive meanwhile
    s.set_prompts(prompts)                                # unchanged: nothing to do
    assert not s._decode_answers(prompts)                 # the running one used other logits


def test_flag_toggles_back_to_where_the_image_was_and_done_moves_on(image_folder):
    s = _session(image_folder)
    s.toggle_flag()
    assert s.status_of(0) == ImageStatus.FLAGGED
    s.toggle_flag()                                      # no objects: new again
    assert s.status_of(0) == ImageStatus.NEW
    s.set_prompts([Point((20, 30))])
    s.accept()
    s.toggle_flag()
    s.toggle_flag()                                      # objects: in progress again
    assert s.status_of(0) == ImageStatus.IN_PROGRESS
    s.mark_done()
    assert s.status_of(0) == ImageStatus.DONE and s.index == 1
    assert Project.open(image_folder).status("a_cat") == ImageStatus.DONE


def test_stop_jobs_drops_waiting_jobs_and_closes_threaded_runners(image_folder):
    class ThreadLike(ManualRunner):
        def __init__(self):
            super().__init__()
            self.calls = []

        def wait(self, timeout_ms=60000):
            self.calls.append(("wait", timeout_ms))
            return True

        def close(self):
            self.calls.append(("close",))

    runner = ThreadLike()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            runner=runner, prefetch=False)
    s.open_image(0)                                      # encode runs ...
    s.set_prompts([Point((20, 30))])                     # ... the decode waits
    assert s.lane.waiting("decode")
    s.stop_jobs(1234)
    assert not s.lane.waiting("decode")
    assert runner.calls == [("wait", 1234), ("close",)]  # once, though two lanes share it

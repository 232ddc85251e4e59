"""The Qt-free session and engine lane, headless (no display needed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel._napari.lane import EngineLane, SyncRunner
from napari_samlabel._napari.session import (
    AnnotationSession,
    project_for_folder,
    session_for_project,
)
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.prompts import Point
from napari_samlabel.engine.fakes import DiskEngine
from napari_samlabel.io.project import Project


class ManualRunner:
    """Runs nothing until told: lets a test see what waits and what is superseded."""

    def __init__(self):
        self.started = []

    def start(self, fn, on_done, on_error, label):
        self.started.append((fn, on_done, on_error, label))

    def finish(self):
        fn, on_done, on_error, _ = self.started.pop(0)
        on_done(fn())


def test_lane_runs_one_job_at_a_time_newest_of_a_kind_wins():
    runner = ManualRunner()
    lane = EngineLane(runner)
    done = []
    lane.submit("decode", lambda: lambda: "d1", done.append)
    lane.submit("decode", lambda: lambda: "d2", done.append)
    lane.submit("prefetch", lambda: lambda: "p", done.append)
    lane.submit("decode", lambda: lambda: "d3", done.append)
    lane.submit("encode", lambda: lambda: "e", done.append)
    assert len(runner.started) == 1                      # one at a time
    runner.finish()
    runner.finish()
    runner.finish()
    runner.finish()
    assert done == ["d1", "e", "d3", "p"]                # d2 superseded; priority order
    assert lane.idle
    with pytest.raises(ValueError, match="unknown job kind"):
        lane.submit("paint", lambda: None, done.append)


def test_lane_reports_errors_and_keeps_going():
    errors = []
    lane = EngineLane(SyncRunner(), lambda kind, exc: errors.append((kind, str(exc))))
    done = []

    def boom():
        raise RuntimeError("no image")

    lane.submit("decode", lambda: boom, done.append)
    lane.submit("decode", lambda: lambda: 1, done.append)
    assert errors == [("decode", "no image")] and done == [1] and lane.idle


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


def test_class_list_may_extend_a_project_but_not_rename(image_folder):
    project_for_folder(image_folder, ClassTable(("cat", "dog")))
    extended = project_for_folder(image_folder, ClassTable(("cat", "dog", "dog/head")))
    assert extended.classes.names == ("background", "cat", "dog", "dog/head")
    with pytest.raises(ValueError, match="does not extend"):
        project_for_folder(image_folder, ClassTable(("dog", "cat")))


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

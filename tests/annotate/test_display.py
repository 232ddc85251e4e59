"""What the panels show of a session, headless: status line, navigator, classes, objects."""

from __future__ import annotations

from napari_samlabel.annotate.display import (
    accepted_rows,
    class_label,
    highlighted_class,
    image_label,
    status_lines,
)
from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.testing.fakes import DiskEngine


def _session(image_folder, classes=None):
    project = project_for_folder(image_folder, classes)
    return session_for_project(project, engine=DiskEngine(radius=4), prefetch=False)


def test_status_lines_name_image_class_polarity_and_selection(image_folder):
    s = _session(image_folder)
    assert status_lines(s) == []                       # no image open yet
    s.open_image(0)
    s.select_class(15)
    assert status_lines(s) == ["1/3 a_cat · 0 objects",
                               "class person (15) · next prompt positive"]
    s.set_prompts([Point((20, 30))])
    obj = s.accept()
    s.toggle_polarity()
    s.select_object(obj.object_id)
    assert status_lines(s) == ["1/3 a_cat · 1 object",
                               f"class person (15) · next prompt NEGATIVE · selected "
                               f"#{obj.object_id} person"]


def test_navigator_labels_and_class_labels(image_folder):
    s = _session(image_folder)
    s.open_image(1)
    assert image_label(s, 0) == "○  a_cat   (new)"
    s.set_status(ImageStatus.IN_PROGRESS)
    assert image_label(s, 1) == "◐  b_coffee   (in progress)"
    s.set_status_of(2, ImageStatus.FLAGGED)
    assert image_label(s, 2) == "⚑  c_astronaut   (flagged)"
    parts = ClassTable(("dog", "dog/head"))
    assert class_label(parts, 1, "1") == "1     dog"
    assert class_label(parts, 2, "Alt+2") == "Alt+2     head"   # indented under its whole
    assert class_label(parts, 2) == "          head"


def test_highlighted_class_and_object_rows_follow_the_selection(image_folder):
    s = _session(image_folder, ClassTable(("dog", "dog/head")))
    assert accepted_rows(s) == []
    s.open_image(0)
    s.select_class(1)
    s.set_prompts([Point((40, 60))])
    dog = s.accept()
    s.select_class(2)
    s.set_prompts([Point((40, 60))])
    head = s.accept()
    assert highlighted_class(s) == 2                   # the picked class
    s.select_object(dog.object_id)
    assert highlighted_class(s) == 1                   # the selected object's class
    rows = accepted_rows(s)
    assert [r.object_id for r in rows] == [dog.object_id, head.object_id]
    assert rows[0].cells == ("dog", str(dog.object_id), str(dog.area), f"{dog.score:.2f}")
    assert rows[1].name == f"dog/head (of #{dog.object_id})"   # a part names its whole


def test_busy_text_says_encoding_until_ready_and_the_first_mask_names_the_wait(image_folder):
    from napari_samlabel.core.prompts import Point
    from tests.annotate.runners import ManualRunner

    runner = ManualRunner()
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            runner=runner, prefetch=False)
    busy, timing = [], []
    s.events.busy.connect(busy.append)
    s.events.timing.connect(timing.append)
    s.open_image(0)
    assert busy[-1].startswith("encoding a_cat…") and s.busy_text() == busy[-1]
    s.set_prompts([Point((20, 30))])                  # clicked before the embedding is ready
    runner.finish()                                   # encode
    assert busy[-1] == ""
    runner.finish()                                   # the first mask
    assert "waited for the image's encoding" in timing[-1]
    s.set_prompts([Point((20, 30)), Point((30, 30))])
    runner.finish()
    assert "waited" not in timing[-1]                 # said once, for the first mask only
    s._prefetching = 0                                # the open image: never "prefetching"
    assert s.busy_text() == ""
    s._prefetching = 1
    assert s.busy_text() == "prefetching b_coffee"


def test_display_palette_is_bright_and_distinct_and_the_export_keeps_voc():
    import numpy as np

    from napari_samlabel.annotate.display import display_palette

    voc = ClassTable.voc()
    pal = display_palette(len(voc)).astype(int)
    assert pal.shape == (len(voc), 3) and (pal[0] == 0).all()
    assert pal[1:].max(axis=1).min() >= 200           # every class bright on a photo ...
    assert voc.colors()[8].tolist() == [64, 0, 0]      # ... where VOC's cat is nearly black
    assert len({tuple(c) for c in pal[1:]}) == len(voc) - 1
    dist = np.abs(pal[1:, None] - pal[None, 1:]).sum(-1) + np.eye(len(voc) - 1, dtype=int) * 999
    assert dist.min() >= 20                            # no two classes look the same


def test_a_stroke_in_progress_is_decoded_without_changing_the_document(image_folder):
    import numpy as np

    from napari_samlabel.core.prompts import Point, Scribble

    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(radius=4),
                            prefetch=False)
    s.open_image(0)
    s.set_prompts([Point((20, 30))])
    before = s.doc.current
    shown = []
    s.events.stroke_preview.connect(shown.append)
    stroke = Scribble(np.array([[40.0, 40.0], [40.0, 50.0], [45.0, 60.0]]), True, 3.0)
    assert s.preview_stroke((Point((20, 30)), stroke))
    assert len(shown) == 1 and shown[0][40, 50]             # the stroke's mask ...
    assert s.doc.current is before and not before.mask[40, 50]   # ... document unchanged
    outside = Scribble(np.array([[4000.0, 1.0], [4001.0, 2.0]]), True, 3.0)
    assert not s.preview_stroke((outside,))

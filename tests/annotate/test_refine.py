"""Refining the open image of a session headless: run, preview, accept as one undo step."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.annotate.lane import SyncRunner
from napari_samlabel.annotate.refine import (
    RefineController,
    RefineError,
    RefineSettings,
    coarse_maps,
    refine_image,
)
from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.io.project import Project
from napari_samlabel.pseudo.refine import (
    AutoMask,
    AutoMaskCache,
    object_confidence,
    sams_seeds,
    sepl_refine,
    slic_refine,
)
from napari_samlabel.testing.fakes import DiskEngine

SHAPE = (48, 64)
CAT, DOG = 8, 12


class ManualRunner:
    """Starts nothing until told (to see what waits behind what)."""

    def __init__(self):
        self.started = []

    def start(self, fn, on_done, on_error, label):
        self.started.append((fn, on_done, label))

    def finish(self):
        fn, on_done, _ = self.started.pop(0)
        on_done(fn())


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "images"
    d.mkdir()
    for name in ("a", "b"):
        img = np.full(SHAPE + (3,), 30, np.uint8)
        img[10:30, 10:40] = (200, 150, 40)
        img = np.clip(img + rng.integers(0, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{name}.png")
    return d


def _mask(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def _automask(mask, level=2):
    rows, cols = np.nonzero(mask)
    return AutoMask(mask, int(mask.sum()), 0.9, 0.95,
                    (float(cols.min()), float(rows.min()), float(np.ptp(cols) + 1),
                     float(np.ptp(rows) + 1)), level, (0.0, 0.0))


def _session(folder, engine=None, runner=None):
    s = session_for_project(project_for_folder(folder), engine=engine or DiskEngine(radius=6),
                            runner=runner or SyncRunner(), prefetch=False)
    s.open_image(0)
    return s


def _accept(s, rc, class_id):
    s.select_class(class_id)
    s.set_prompts([Point(rc)])
    return s.accept()


@pytest.fixture()
def cached_masks(folder, tmp_path):
    """Automatic masks of image "a" in a cache, as if SAM had made them for the fake engine."""
    from napari_samlabel.io.images import load_image

    cache = AutoMaskCache(tmp_path / "automasks")
    image = load_image(folder / "a.png")
    masks = [_automask(_mask(10, 30, 10, 40)), _automask(_mask(30, 48, 0, 64), level=1)]
    model = DiskEngine.model_id
    for method in ("sepl", "sams"):  # SAMS asks SAM with its whole-level preference
        params = RefineSettings(method).automask_params()
        cache.save(cache.path_for(model, image, params), masks, SHAPE, model, params)
    return cache, masks


def test_replace_objects_is_one_undo_step():
    doc = AnnotationDocument("i", SHAPE)
    events = []
    doc.events.objects_changed.connect(lambda: events.append("objects"))
    doc.set_prompts([Point((1, 1))])
    doc.set_prediction(doc.current.prompts, _mask(0, 5, 0, 5), 0.9, None)
    old = doc.accept()
    assert doc.status == ImageStatus.IN_PROGRESS
    doc.set_prompts([Point((20, 20))])  # an unaccepted object: dropped by the replacement
    new = [AnnotatedObject(1, DOG, _mask(0, 10, 0, 10)), AnnotatedObject(2, CAT,
                                                                         _mask(20, 30, 0, 10))]
    events.clear()
    doc.replace_objects(new)
    assert events == ["objects"] and [o.class_id for o in doc.objects] == [DOG, CAT]
    assert doc.current.prompts == () and doc.current.class_id == 1  # its class kept
    assert doc.undo() and doc.objects == (old,) and doc.current.prompts == (Point((20, 20)),)
    assert doc.redo() and len(doc.objects) == 2
    with pytest.raises(ValueError, match="duplicate object ids"):
        doc.replace_objects([new[0], new[0]])
    with pytest.raises(ValueError, match="mask shape"):
        doc.replace_objects([AnnotatedObject(1, CAT, np.ones((3, 3), bool))])
    assert len(doc.objects) == 2  # nothing changed by a refused replacement
    fresh = AnnotationDocument("j", SHAPE)
    fresh.replace_objects(new)
    assert fresh.status == ImageStatus.IN_PROGRESS


def test_sepl_preview_accept_undo_and_autosave(folder, cached_masks):
    cache, masks = cached_masks
    s = _session(folder)
    cat = _accept(s, (20, 25), CAT)       # a disk inside the yellow block
    dog = _accept(s, (40, 30), DOG)
    before = coarse_maps(s.doc)[0]
    ctl = RefineController(s, cache=cache)
    seen = []
    ctl.events.message.connect(seen.append)
    assert ctl.run(RefineSettings("sepl"))
    assert not ctl.running and ctl.preview is not None
    expected = sepl_refine(before, masks)
    np.testing.assert_array_equal(ctl.preview.labels, expected)
    assert (expected[10:30, 10:40] == CAT).all()  # the disk grew to the SAM mask
    assert "sepl:" in seen[-1] and "Accept" in seen[-1]
    # nothing changed until Accept
    assert s.doc.objects == (cat, dog)
    assert len(Project.open(folder).read_objects("a")) == 2
    assert ctl.accept() and ctl.preview is None
    sem = s.doc.label_maps()[0]
    np.testing.assert_array_equal(sem, np.where(expected == 255, 0, expected))
    stored = Project.open(folder).read_objects("a")
    assert sorted(o.class_id for o in stored) == sorted(o.class_id for o in s.doc.objects)
    assert all(o.model_id == "sepl:fake-disk" for o in stored)
    # one undo step brings the old objects back, saved at once
    s.undo()
    assert s.doc.objects == (cat, dog)
    assert len(Project.open(folder).read_objects("a")) == 2


def test_parts_go_through_a_refinement_unchanged(folder, cached_masks):
    """A dog/head part is not refined with the wholes, and stays linked to the new dog."""
    from napari_samlabel.core.classes import ClassTable

    cache, _ = cached_masks
    table = ClassTable.voc()
    names = [*table.names, "dog/head"]
    s = session_for_project(project_for_folder(folder, ClassTable(names)),
                            engine=DiskEngine(radius=6), runner=SyncRunner(), prefetch=False)
    s.open_image(0)
    head_id = len(names) - 1
    _accept(s, (20, 25), CAT)
    _accept(s, (40, 30), DOG)
    head = _accept(s, (40, 30), head_id)   # inside the dog
    assert s.doc.parent_of(head.object_id) is not None
    sem_before = coarse_maps(s.doc)[0]
    assert head_id not in np.unique(sem_before)  # parts are not coarse labels
    ctl = RefineController(s, cache=cache)
    assert ctl.run(RefineSettings("sepl")) and ctl.accept()
    parts = s.doc.parts
    assert len(parts) == 1 and parts[0].class_id == head_id
    np.testing.assert_array_equal(parts[0].mask, head.mask)
    assert parts[0].object_id > max(o.object_id for o in s.doc.wholes)
    parent = s.doc.parent_of(parts[0].object_id)
    assert parent is not None and s.doc.get(parent).class_id == DOG
    assert head_id not in np.unique(s.doc.label_maps()[0])


def test_stale_previews_are_refused_and_dropped(folder, cached_masks):
    cache, _ = cached_masks
    s = _session(folder)
    _accept(s, (20, 25), CAT)
    ctl = RefineController(s, cache=cache)
    msgs = []
    ctl.events.message.connect(msgs.append)
    ctl.run(RefineSettings("sepl"))
    _accept(s, (40, 30), DOG)             # more work after the run
    assert not ctl.accept() and "changed since" in msgs[-1]
    assert len(s.doc.objects) == 2        # the new object was not overwritten
    ctl.run(RefineSettings("sepl"))
    assert ctl.preview is not None
    s.next_image()                        # another image: the preview goes
    assert ctl.preview is None and not ctl.accept()
    ctl.close()


def test_refine_waits_for_the_engine_lane_and_checks_the_image(folder, cached_masks):
    cache, _ = cached_masks
    runner = ManualRunner()
    s = _session(folder, runner=runner)
    runner.finish()                                       # encode a
    s.set_prompts([Point((20, 25))])
    runner.finish()                                       # decode
    s.accept()
    s.set_prompts([Point((40, 30))])                      # a decode runs ...
    ctl = RefineController(s, cache=cache)
    ctl.run(RefineSettings("sepl"))                       # ... refine waits behind it
    assert ctl.running and [lbl for _, _, lbl in runner.started] == ["Decoding"]
    assert not ctl.run(RefineSettings("slic"))            # one at a time
    runner.finish()                                       # decode
    assert [lbl for _, _, lbl in runner.started] == ["Refining (sepl)"]
    runner.finish()
    assert ctl.preview is not None and len(ctl.preview.base) == 1
    # a refinement queued for image a does not run on image b
    msgs = []
    ctl.events.message.connect(msgs.append)
    s.set_prompts([Point((5, 5))])                        # keep the lane busy
    ctl.run(RefineSettings("sepl"))
    s.next_image()
    while runner.started:
        runner.finish()
    assert not ctl.running and any("image changed" in m for m in msgs)
    assert ctl.preview is None


def test_slic_uses_the_objects_scores_and_sams_the_objects_or_a_cam(folder, tmp_path,
                                                                    cached_masks):
    cache, masks = cached_masks
    s = _session(folder, engine=DiskEngine(radius=6, ious=(0.2, 0.3, 0.9)))
    _accept(s, (20, 25), CAT)
    low = _accept(s, (40, 30), DOG)
    s.set_object_class(low.object_id, DOG)
    semantic, instance, scores = coarse_maps(s.doc)
    image = s.image
    settings = RefineSettings("slic", n_segments=40, ignore_ratio=0.2)
    got = refine_image(image, semantic, instance, scores, settings)
    expected = slic_refine(image, semantic, object_confidence(instance, scores),
                           n_segments=40, ignore_ratio=0.2)
    np.testing.assert_array_equal(got, expected)
    # sams without a CAM: the objects' classes as one-hot score maps
    got = refine_image(image, semantic, instance, scores, RefineSettings("sams"),
                       engine=s.engine, cache=cache)
    onehot = np.stack([(semantic == c).astype(np.float32) for c in (CAT, DOG)])
    np.testing.assert_array_equal(got, sams_seeds(onehot, [CAT, DOG], masks).seeds)
    # with a CAM file of the image
    cam = np.zeros((1,) + SHAPE, np.float32)
    cam[0, 10:30, 10:40] = 1.0
    np.save(tmp_path / "a.npy", cam)
    (tmp_path / "a.json").write_text(json.dumps(["cat"]))
    got = refine_image(image, semantic, instance, scores,
                       RefineSettings("sams", cam=str(tmp_path / "a.npy")), engine=s.engine,
                       cache=cache)
    np.testing.assert_array_equal(got, sams_seeds(cam, [CAT], masks).seeds)
    np.save(tmp_path / "a.npy", cam[:, :10])
    with pytest.raises(RefineError, match="10x64 but the image is 48x64"):
        refine_image(image, semantic, instance, scores,
                     RefineSettings("sams", cam=str(tmp_path / "a.npy")), engine=s.engine,
                     cache=cache)


def test_errors_are_messages_and_the_controller_recovers(folder, tmp_path):
    s = _session(folder)
    ctl = RefineController(s, cache=tmp_path / "empty-cache")
    msgs = []
    ctl.events.message.connect(msgs.append)
    ctl.run(RefineSettings("slic"))
    assert "nothing to refine" in msgs[-1] and not ctl.running
    _accept(s, (20, 25), CAT)
    ctl.run(RefineSettings("sepl"))  # the fake engine cannot make automatic masks
    assert "cannot make them" in msgs[-1] and not ctl.running and ctl.preview is None
    assert ctl.run(RefineSettings("slic", n_segments=30)) and ctl.preview is not None
    with pytest.raises(ValueError, match="unknown refine method"):
        RefineSettings("watershed")


@pytest.mark.slow
def test_tiny_sam_automatic_masks_are_cached_and_reused(folder, tmp_path, tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine

    engine = load_engine("vit_tiny_test", tiny_checkpoint, device="cpu", cache=None)
    s = _session(folder, engine=engine)
    _accept(s, (20, 25), CAT)
    ctl = RefineController(s, cache=tmp_path / "am")
    quick = RefineSettings("sepl", points_per_side=4, pred_iou_thresh=0.0,
                           stability_score_thresh=0.0)
    steps = []
    assert ctl.run(quick, progress=lambda d, t, m: steps.append((d, t)))
    assert ctl.preview is not None, "refine failed"
    assert steps[-1] == (4, 4)  # 16 points in batches of 4 (the CPU default)
    files = list((tmp_path / "am").rglob("*.npz"))
    assert len(files) == 1
    calls = []
    original = engine.predictor.predict_torch
    engine.predictor.predict_torch = lambda *a, **k: calls.append(1) or original(*a, **k)
    ctl.run(RefineSettings("sepl", points_per_side=4, pred_iou_thresh=0.0,
                           stability_score_thresh=0.0, class_ratio=0.5))
    assert calls == [] and ctl.preview.settings.class_ratio == 0.5  # masks from the cache
    assert s.engine is engine and engine.is_image_set

"""Replaying a project's stored prompts with another engine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.io.project import Project
from napari_samlabel.pseudo.replay import replay_project
from napari_samlabel.testing.fakes import DiskEngine

SHAPE = (48, 64)


@pytest.fixture()
def project(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for k in range(3):
        Image.fromarray(np.full(SHAPE + (3,), 40 * k, np.uint8)).save(img_dir / f"im{k}.png")
    proj = Project.create(tmp_path / "proj", img_dir, ["cat", "dog"])
    old = np.zeros(SHAPE, bool)
    old[0:5, 0:5] = True
    objs = [
        AnnotatedObject(1, 1, old, (Point((10, 10)), Point((10, 30)),
                                    Point((12, 20), positive=False)), 0.5, "old:model"),
        AnnotatedObject(2, 2, old, (Box((30, 40), (40, 60)),), 0.7, "old:model"),
        AnnotatedObject(3, 1, old, (Point((5, 5), positive=False),), None, "old:model"),
    ]
    proj.save_document(AnnotationDocument("im0", SHAPE, objs, ImageStatus.DONE))
    proj.set_status("im1", ImageStatus.FLAGGED)
    return proj


def test_replay_into_a_new_project(tmp_path, project):
    eng = DiskEngine(radius=3)
    seen = []
    report = replay_project(project.folder, eng, out=tmp_path / "new",
                            progress=lambda d, t, m: seen.append(d))
    assert report.failed == {} and report.images == 3 and report.objects == 3
    assert report.empty == [("im0", 3)]  # only a negative prompt: kept, empty
    new = Project.open(tmp_path / "new")
    assert new.status("im0") == ImageStatus.DONE and new.status("im1") == ImageStatus.FLAGGED
    objs = {o.object_id: o for o in new.read_objects("im0")}
    assert objs[1].model_id == "fake-disk" and objs[1].mask[10, 10] and objs[1].mask[10, 30]
    assert not objs[1].mask[12, 20]  # the negative click
    assert objs[2].mask[35, 50] and objs[2].prompts == (Box((30, 40), (40, 60)),)
    assert not objs[3].mask.any() and objs[3].score is None
    # incremental: one decode per prompt with a positive so far, logits handed over
    assert report.decoder_calls == 3 + 1
    assert eng.calls[0].mask_input is None
    np.testing.assert_array_equal(eng.calls[1].point_coords, [[10, 10], [30, 10]])
    assert eng.calls[1].mask_input is not None and eng.calls[2].mask_input is not None
    assert eng.calls[3].mask_input is None  # the next object starts without logits
    # the source project is untouched
    src = {o.object_id: o for o in Project.open(project.folder).read_objects("im0")}
    assert src[1].model_id == "old:model" and src[1].mask[0, 0]
    assert seen == [1, 2, 3]


def test_replay_in_place_and_one_shot(project):
    eng = DiskEngine(radius=3)
    report = replay_project(project, eng, in_place=True, incremental=False)
    assert report.decoder_calls == 2
    objs = {o.object_id: o for o in Project.open(project.folder).read_objects("im0")}
    assert objs[1].model_id == "fake-disk" and not objs[1].mask[0, 0]


def test_replay_needs_a_destination_and_reports_bad_images(tmp_path, project):
    with pytest.raises(ValueError, match="in_place"):
        replay_project(project, DiskEngine())
    (project.folder.parent / "images" / "im0.png").write_bytes(b"broken")
    # a new project reads every image's size first: the broken file is named up front
    with pytest.raises(ValueError, match="im0.png"):
        replay_project(project, DiskEngine(), out=tmp_path / "new")
    report = replay_project(project, DiskEngine(), in_place=True)
    assert list(report.failed) == ["im0"] and "im0.png" in report.failed["im0"]
    assert report.images == 2


def test_replay_with_the_tiny_sam(tmp_path, project, tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine

    eng = load_engine("vit_tiny_test", checkpoint=tiny_checkpoint, cache=None, device="cpu")
    report = replay_project(project, eng, out=tmp_path / "new")
    assert report.failed == {} and report.decoder_calls == 4
    obj = Project.open(tmp_path / "new").read_objects("im0")[0]
    assert obj.model_id == eng.model_id and obj.mask.shape == SHAPE
    assert obj.score is not None and 0 <= obj.score <= 1.5


def test_objects_without_prompts_are_kept_as_they_were(tmp_path, project):
    """A refined (or imported) object has no prompts: replay must not empty its mask."""
    refined = np.zeros(SHAPE, bool)
    refined[20:30, 20:40] = True
    doc = AnnotationDocument("im2", SHAPE, [AnnotatedObject(1, 2, refined, (), None, "sepl:m"),
                                            AnnotatedObject(2, 1, refined[::-1].copy(),
                                                            (Point((25, 30)),), 0.9, "m")])
    project.save_document(doc)
    report = replay_project(project, DiskEngine(radius=3), out=tmp_path / "new")
    assert report.unprompted == [("im2", 1)] and ("im2", 1) not in report.empty
    assert "1 without prompts kept" in report.summary()
    new = {o.object_id: o for o in Project.open(tmp_path / "new").read_objects("im2")}
    np.testing.assert_array_equal(new[1].mask, refined)
    assert new[1].model_id == "sepl:m" and new[2].model_id == "fake-disk"

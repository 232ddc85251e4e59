import numpy as np
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.io.project import Project

SHAPE = (48, 64)


def _project(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    Image.fromarray(np.full(SHAPE + (3,), 90, np.uint8)).save(img_dir / "a.png")
    proj = Project.create(tmp_path / "proj", img_dir, ["cat", "dog"])
    old = np.zeros(SHAPE, bool)
    old[:4, :4] = True
    objs = [AnnotatedObject(1, 1, old, (Point((10, 10)), Point((12, 20), False)), 0.5, "old"),
                AnnotatedObject(2, 2, old, (Box((30, 40), (40, 60)),), 0.5, "old")]
    proj.save_document(AnnotationDocument("a", SHAPE, objs, ImageStatus.DONE))
    return proj


def test_replay_with_the_tiny_sam_writes_a_new_project(tmp_path, tiny_checkpoint):
    proj = _project(tmp_path)
    rc = main(["replay", str(proj.folder), "--model", "vit_tiny_test", "--checkpoint",
               str(tiny_checkpoint), "--device", "cpu", "--cache", str(tmp_path / "cache"),
               "--out", str(tmp_path / "new")])
    assert rc == 0
    objs = {o.object_id: o for o in Project.open(tmp_path / "new").read_objects("a")}
    assert set(objs) == {1, 2}
    assert all(o.model_id.startswith("vit_tiny_test:") for o in objs.values())
    assert objs[1].prompts == (Point((10, 10)), Point((12, 20), False))
    assert objs[2].class_id == 2 and objs[2].mask.shape == SHAPE
    # the source project is untouched
    assert {o.model_id for o in Project.open(proj.folder).read_objects("a")} == {"old"}


def test_replay_user_errors(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err
    proj = _project(tmp_path)
    assert main(["replay", str(proj.folder), "--in-place", "--model", "vit_tiny_test",
                 "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err

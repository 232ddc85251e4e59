"""``samlabel import-voc`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from napari_samlabel.cli import main
from napari_samlabel.io.project import Project
from napari_samlabel.io.voc.labelpng import encode_label_png


def make_voc(root: Path) -> np.ndarray:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (voc / sub).mkdir(parents=True)
    img = data.coffee()[::10, ::10]
    Image.fromarray(img).save(voc / "JPEGImages" / "2007_000001.jpg")
    sem = np.zeros(img.shape[:2], np.uint8)
    inst = np.zeros_like(sem)
    sem[5:20, 5:20] = 12
    inst[5:20, 5:12] = 1
    inst[5:20, 12:20] = 2
    sem[25:35, 25:45] = 15
    inst[25:35, 25:45] = 3
    (voc / "SegmentationClass" / "2007_000001.png").write_bytes(encode_label_png(sem))
    (voc / "SegmentationObject" / "2007_000001.png").write_bytes(encode_label_png(inst))
    return inst


def test_import_voc_creates_a_project(tmp_path: Path, capsys):
    inst = make_voc(tmp_path / "data")
    assert main(["import-voc", str(tmp_path / "data"), "--out", str(tmp_path / "proj")]) == 0
    assert "1 images, 3 objects, 20 classes" in capsys.readouterr().out
    proj = Project.open(tmp_path / "proj")
    objs = proj.read_objects("2007_000001")
    assert [(o.object_id, proj.classes.names[o.class_id]) for o in objs] == [
        (1, "dog"), (2, "dog"), (3, "person")]
    for o in objs:
        np.testing.assert_array_equal(o.mask, inst == o.object_id)
    # Annotators can export it again straight away.
    assert main(["export", str(tmp_path / "proj"), "--out", str(tmp_path / "out")]) == 0


def test_import_voc_errors(tmp_path: Path, capsys):
    assert main(["import-voc", str(tmp_path / "missing"), "--out", str(tmp_path / "p")]) == 2
    assert "VOC folder not found" in capsys.readouterr().err
    make_voc(tmp_path / "data")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "f").write_text("x")
    assert main(["import-voc", str(tmp_path / "data"), "--out", str(tmp_path / "p")]) == 2
    assert "not empty" in capsys.readouterr().err
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\n")
    assert main(["import-voc", str(tmp_path / "data"), "--out", str(tmp_path / "q"), "--classes",
                 str(classes)]) == 2
    assert "class indices [12, 15]" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_import_voc_reads_parts_and_links_them(tmp_path: Path, capsys):
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.voc.annotations import labelmap_text

    inst = make_voc(tmp_path / "data")
    voc = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    classes = ClassTable(("dog", "person", "dog/head", "person/head"))
    (voc / "labelmap.txt").write_text(labelmap_text(classes))
    sem = np.zeros(inst.shape, np.uint8)
    sem[inst > 0] = np.where(inst[inst > 0] == 3, 2, 1)  # re-index: dog 1, person 2
    (voc / "SegmentationClass" / "2007_000001.png").write_bytes(encode_label_png(sem))
    (voc / "SegmentationPart").mkdir()
    part = np.zeros_like(sem)
    part[5:9, 13:18] = 3  # a dog head in the right dog (instance 2)
    part[25:29, 30:36] = 4  # the person's head
    (voc / "SegmentationPart" / "2007_000001.png").write_bytes(encode_label_png(part))
    assert main(["import-voc", str(tmp_path / "data"), "--out", str(tmp_path / "proj")]) == 0
    assert "1 images, 5 objects (2 of them parts), 4 classes" in capsys.readouterr().out
    proj = Project.open(tmp_path / "proj")
    doc = proj.load_document("2007_000001")
    assert [(o.object_id, proj.classes.names[o.class_id]) for o in doc.wholes] == [
        (1, "dog"), (2, "dog"), (3, "person")]
    assert [(proj.classes.names[o.class_id], o.parent_id) for o in doc.parts] == [
        ("dog/head", 2), ("person/head", 3)]
    # The objects' maps are whole: the heads are only in the part maps.
    np.testing.assert_array_equal(doc.label_maps()[0], sem)
    np.testing.assert_array_equal(doc.part_maps()[0], part)

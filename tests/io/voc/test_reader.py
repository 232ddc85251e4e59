"""Tests of the VOC reader: roots, instances, components and specks, part maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc.components import SpeckReport
from napari_samlabel.io.voc.labelpng import encode_label_png
from napari_samlabel.io.voc.reader import find_voc_root, read_voc
from tests.io.voc.scenes import (
    P_PERSON,
    PART_CLASSES,
    H,
    W,
    part_scene,
    scene,
    write_part_scene,
    write_scene,
)


def test_reader_finds_roots_and_reads_instances(tmp_path: Path, image: np.ndarray):
    out, _ = write_scene(tmp_path, image)
    root = out / "VOCdevkit" / "VOC2012"
    assert find_voc_root(out) == find_voc_root(out / "VOCdevkit") == find_voc_root(root) == root
    recs = {r.image_id: r for r in read_voc(out)}
    assert set(recs) == {"photo", "drawing", "array"}
    photo = recs["photo"]
    assert photo.instances_from == "SegmentationObject"
    np.testing.assert_array_equal(photo.semantic, scene()[0])
    assert [(o.instance_id, o.class_id, o.difficult) for o in photo.objects] == [
        (1, 15, False), (2, 12, False), (3, 12, True)]
    assert recs["drawing"].split == "val" and recs["array"].split is None
    with pytest.raises(VocError, match="not a VOC dataset"):
        find_voc_root(tmp_path / "src")


def test_reader_without_instances_uses_components(tmp_path: Path, image: np.ndarray):
    root = tmp_path / "VOC2012"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    sem, _ = scene()
    sem[0:5, 70:80] = 12  # a second, separate dog region
    sem[30, :] = 255
    Image.fromarray(image).save(root / "JPEGImages" / "a.jpg")
    (root / "SegmentationClass" / "a.png").write_bytes(encode_label_png(sem))
    [rec] = list(read_voc(tmp_path))
    assert rec.instances_from == "components"
    assert len(set(np.unique(rec.instance)) - {0, 255}) == 3  # two touching dogs = one region
    assert (rec.instance[30] == 255).all()


def test_reader_reports_bad_files(tmp_path: Path, image: np.ndarray):
    out, _ = write_scene(tmp_path, image)
    root = out / "VOCdevkit" / "VOC2012"
    xml = root / "Annotations" / "photo.xml"
    xml.write_text(xml.read_text().replace("<name>person</name>", "<name>unicorn</name>"))
    with pytest.raises(VocError, match=r"photo\.xml: object 1: unknown class 'unicorn'"):
        list(read_voc(out))
    xml.write_text("<annotation><object>")
    with pytest.raises(VocError, match=r"cannot parse annotation .*photo\.xml"):
        list(read_voc(out))
    xml.unlink()
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(root / "SegmentationClass" / "photo.png")
    with pytest.raises(VocError, match=r"photo\.png is 60x81 but its image"):
        list(read_voc(out))
    (root / "JPEGImages" / "photo.jpg").unlink()
    with pytest.raises(VocError, match="image of 'drawing'|image of 'photo'"):
        list(read_voc(out))


def test_reader_min_area_merges_specks_into_the_nearest_object_of_their_class(tmp_path: Path,
                                                                            image):
    root = tmp_path / "VOC2012"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    sem = np.zeros((H, W), np.uint8)
    sem[10:30, 10:30] = 12    # dog 1
    sem[10:30, 50:70] = 12    # dog 2
    sem[20, 33] = 12          # a one-pixel speck next to dog 1
    sem[20:22, 45:47] = 12    # a 4-pixel speck next to dog 2
    sem[40, 40] = 12          # equally far from both: goes to one of them, not lost
    sem[50:52, 50:52] = 3     # a 4-pixel bird, the only bird
    sem[55, 10] = 3           # and a speck of it
    Image.fromarray(image).save(root / "JPEGImages" / "a.jpg")
    (root / "SegmentationClass" / "a.png").write_bytes(encode_label_png(sem))
    [rec] = list(read_voc(tmp_path, min_area=5))
    inst = rec.instance
    ids = sorted(set(np.unique(inst)) - {0})
    assert len(ids) == 3  # two dogs and one bird object
    dog1, dog2 = inst[15, 15], inst[15, 60]
    assert inst[20, 33] == dog1 and (inst[20:22, 45:47] == dog2).all()
    assert inst[40, 40] in (dog1, dog2)
    assert inst[50, 50] == inst[55, 10] != 0  # the bird's regions together
    np.testing.assert_array_equal(inst > 0, sem > 0)  # no class pixel became background
    assert rec.specks == SpeckReport(merged=3, merged_pixels=6, grouped=2,
                                         grouped_pixels=5)
    [rec] = list(read_voc(tmp_path))  # min_area 0: every region is an object
    assert len(set(np.unique(rec.instance)) - {0}) == 7 and rec.specks.regions == 0


def test_read_voc_returns_part_maps_and_checks_them(tmp_path: Path, image: np.ndarray):
    write_part_scene(tmp_path, image)
    recs = {r.image_id: r for r in read_voc(tmp_path / "out", PART_CLASSES)}
    m = part_scene()
    np.testing.assert_array_equal(recs["parts"].part_semantic, m["psem"])
    assert set(np.unique(recs["parts"].part_instance)) == {0, 1, 2, 3}
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    (root / "SegmentationPartObject/parts.png").unlink()  # instances from components
    rec = next(r for r in read_voc(tmp_path / "out", PART_CLASSES) if r.image_id == "parts")
    assert len(set(np.unique(rec.part_instance)) - {0}) == 3
    bad = m["psem"].copy()
    bad[0, 0] = P_PERSON
    (root / "SegmentationPart/parts.png").write_bytes(encode_label_png(bad))
    with pytest.raises(VocError, match=r"SegmentationPart/parts\.png: class indices \[2\] are "
                                       "not part classes"):
        list(read_voc(tmp_path / "out", PART_CLASSES))

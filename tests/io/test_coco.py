"""COCO instance export: read back with pycocotools, masks equal the project's label maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.coco import ANN_ID_STRIDE, CocoError, export_coco
from napari_samlabel.io.project import Project
from napari_samlabel.io.selection import NothingToExport
from napari_samlabel.io.voc_project import export_project

# pycocotools' decode (annToMask) predates NumPy 2's copy keyword; the export does not call it.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 30, 40
CLASSES = ["dog", "dog/head", "cat"]


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def ring() -> np.ndarray:
    m = rect(5, 25, 5, 35)
    m[10:20, 12:28] = False  # a hole: RLE keeps it, a bounding box would not
    return m


#: image -> (status, [(object id, class id, mask, score)]); in "a" the cat overlaps the dog
#: (the cat's higher score wins the shared pixels) and the dog has a head part.
LAYOUT = {
    "a": ("done", [(1, 1, rect(2, 20, 2, 30), 0.8), (2, 3, rect(10, 28, 20, 38), 0.9),
                   (3, 2, rect(3, 8, 3, 10), 0.9)]),
    "b": ("in_progress", [(1, 3, ring(), 0.9)]),
    "c": ("flagged", [(1, 1, rect(0, 30, 0, 10), 0.9)]),
    "d": ("new", []),
    "e": ("done", [(1, 3, rect(1, 4, 1, 4), 0.9)]),
}


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for iid in LAYOUT:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            folder / f"{iid}.png")
    project = Project.create(tmp_path / "proj", folder, CLASSES)
    for iid, (status, objs) in LAYOUT.items():
        objects = [AnnotatedObject(oid, cid, m, score=s) for oid, cid, m, s in objs]
        if objects:
            project.save_document(AnnotationDocument(iid, (H, W), objects, status))
        project.set_status(iid, status)
    return project


def _load(out: Path, split: str) -> COCO:
    return COCO(str(out / "annotations" / f"instances_{split}.json"))


def test_pycocotools_reads_masks_equal_to_the_exported_label_maps(project, tmp_path):
    out = tmp_path / "coco"
    report = export_coco(project, out, train_fraction=1.0)
    assert report.splits == {"train": ["a", "b", "e"], "val": [], "excluded": ["c"]}
    assert report.annotations == 6 and report.parts == 1
    assert report.skipped == {"unannotated": ["d"]}
    checked = 0
    for split in ("train", "excluded"):
        coco = _load(out, split)
        for img in coco.dataset["images"]:
            iid = img["samlabel_id"]
            assert (img["height"], img["width"]) == (H, W)
            assert (out / "images" / img["file_name"]).read_bytes() == \
                project.image_path(iid).read_bytes()
            doc = project.load_document(iid)
            _, instance = doc.label_maps()
            _, part_instance = doc.part_maps()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
            assert len(anns) == len(doc.objects)
            for ann in anns:
                oid = ann["id"] - img["id"] * ANN_ID_STRIDE
                obj = doc.get(oid)
                expected = (part_instance if doc.is_part(oid) else instance) == oid
                np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), expected)
                assert ann["category_id"] == obj.class_id and ann["iscrowd"] == 0
                assert ann["area"] == expected.sum()
                rows, cols = np.nonzero(expected)
                assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                       rows.max() - rows.min() + 1]
                checked += 1
    assert checked == 6
    # the overlap rule: the cat (higher score) took the shared pixels from the dog
    coco = _load(out, "train")
    a = next(i for i in coco.dataset["images"] if i["samlabel_id"] == "a")
    dog = coco.annToMask(coco.anns[a["id"] * ANN_ID_STRIDE + 1]).astype(bool)
    assert not dog[15, 25] and dog[15, 10]
    head = coco.anns[a["id"] * ANN_ID_STRIDE + 3]
    assert head["parent_id"] == a["id"] * ANN_ID_STRIDE + 1


def test_categories_are_the_class_list_with_parts_naming_their_whole(project, tmp_path):
    export_coco(project, tmp_path / "coco")
    coco = _load(tmp_path / "coco", "train")
    assert coco.dataset["categories"] == [
        {"id": 1, "name": "dog", "supercategory": "dog", "part_of": None},
        {"id": 2, "name": "dog/head", "supercategory": "dog", "part_of": 1},
        {"id": 3, "name": "cat", "supercategory": "cat", "part_of": None}]
    assert coco.getCatIds(catNms=["cat"]) == [3]


def test_ids_are_stable_across_exports_and_splits_match_the_voc_export(project, tmp_path):
    first = export_coco(project, tmp_path / "one", train_fraction=0.5, seed=3)
    voc = export_project(project, tmp_path / "voc", train_fraction=0.5, seed=3)
    assert {s: first.splits[s] for s in ("train", "val")} == \
        {s: voc.splits[s] for s in ("train", "val")}

    def ids(out: Path) -> dict[str, tuple[int, list[int]]]:
        result = {}
        for split in ("train", "val"):
            coco = _load(out, split)
            for img in coco.dataset["images"]:
                result[img["samlabel_id"]] = (img["id"], sorted(coco.getAnnIds([img["id"]])))
        return result

    before = ids(tmp_path / "one")
    # Another selection (the strict mode drops "b") and a new image added to the project.
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "images" / "aa.png")
    project.add_images([tmp_path / "images" / "aa.png"])
    export_coco(project, tmp_path / "two", train_fraction=1.0, only_done=True)
    after = ids(tmp_path / "two")
    assert "b" not in after and after == {k: v for k, v in before.items() if k != "b"}


def test_nothing_to_export_and_overwrite_rules(project, tmp_path):
    for iid in ("a", "b", "e"):
        project.set_review(iid, "rejected")
    with pytest.raises(NothingToExport, match="3 images are rejected"):
        export_coco(project, tmp_path / "coco")
    assert not (tmp_path / "coco").exists()
    project.clear_review("a")
    export_coco(project, tmp_path / "coco")
    with pytest.raises(FileExistsError, match="not empty"):
        export_coco(project, tmp_path / "coco")
    report = export_coco(project, tmp_path / "coco", overwrite=True, include_flagged=True)
    assert "c" in report.splits["train"] + report.splits["val"]
    assert not (tmp_path / "coco" / "annotations" / "instances_excluded.json").exists() or \
        json.loads((tmp_path / "coco" / "annotations" / "instances_excluded.json")
                   .read_text())["images"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a COCO export"):
        export_coco(project, tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_rotated_or_unusual_images_are_written_as_the_annotator_saw_them(project, tmp_path):
    """An EXIF-rotated JPEG would load sideways in loaders that ignore EXIF: write a PNG."""
    from napari_samlabel.io.images import load_image

    path = project.image_path("a")
    upright = load_image(path)
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # stored W x H
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CW to display": load_image turns it back to H x W
    jpg = path.with_suffix(".jpg")
    rotated.save(jpg, exif=exif, quality=95)
    assert load_image(jpg).shape[:2] == (H, W)
    path.unlink()
    jpg.rename(path)  # same file name, so the project still finds it
    report = export_coco(project, tmp_path / "coco", train_fraction=1.0)
    assert "a" in report.splits["train"]
    coco = _load(tmp_path / "coco", "train")
    names = {i["samlabel_id"]: i["file_name"] for i in coco.dataset["images"]}
    assert names["a"] == "a.png" and names["b"] == "b.png"
    with Image.open(tmp_path / "coco" / "images" / "a.png") as written:
        assert written.size == (W, H)
    # "b" is an upright PNG: copied byte for byte
    assert (tmp_path / "coco" / "images" / "b.png").read_bytes() == \
        project.image_path("b").read_bytes()


def test_a_corrupt_image_is_named_and_nothing_is_written(project, tmp_path):
    project.image_path("b").write_bytes(b"not an image")
    with pytest.raises(CocoError, match="b.png"):
        export_coco(project, tmp_path / "coco")
    assert not (tmp_path / "coco").exists()
    assert not list(tmp_path.glob(".coco.*"))

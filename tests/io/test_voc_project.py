"""Project <-> VOC: round trips, status filtering, failures that leave everything untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import ProjectError
from napari_samlabel.io.selection import NothingToExport
from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc import writer as writer_mod
from napari_samlabel.io.voc.components import mask_bbox
from napari_samlabel.io.voc.labelpng import encode_label_png, read_label_png
from napari_samlabel.io.voc_project import ImportReport, export_project, import_voc, voc_id

H, W = 40, 56
CLASSES = ["cat", "dog", "dog/head", "tree"]


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


LAYOUTS = {
    "a": [(1, 2, rect(2, 12, 2, 20)), (2, 4, rect(20, 38, 5, 15)), (3, 2, rect(20, 38, 30, 50))],
    "b": [(1, 1, rect(0, 40, 0, 10)), (2, 3, rect(5, 10, 40, 56))],
    "c": [(1, 4, rect(10, 30, 10, 40))],
    "d": [(1, 1, rect(1, 5, 1, 5))],
}


def build(tmp_path: Path, statuses: dict[str, str] | None = None) -> Project:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    base = data.coffee()[: H * 8 : 8, : W * 8 : 8]
    for iid in LAYOUTS:
        Image.fromarray(base).save(folder / f"{iid}.jpg")
    project = Project.create(tmp_path / "proj", folder, CLASSES)
    for iid, objs in LAYOUTS.items():
        status = (statuses or {}).get(iid, "done")
        objects = [AnnotatedObject(oid, cid, m, (Point((1.0, 1.0)),), 0.9, "tiny")
                   for oid, cid, m in objs]
        project.save_document(AnnotationDocument(iid, (H, W), objects, status))
    return project


def edit_objects(tmp_path: Path, iid: str, change) -> None:
    path = tmp_path / "proj" / "annotations" / iid / "objects.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    assert Image.open(path).size == (W, H)  # the header still reads


def class_only_voc(tmp_path: Path, maps: dict[str, np.ndarray]) -> Path:
    """A VOC folder with JPEGImages and SegmentationClass only; returns the folder above it."""
    root = tmp_path / "voc" / "VOC2012"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for iid, sem in maps.items():
        Image.fromarray(data.coffee()[: H * 8 : 8, : W * 8 : 8]).save(
            root / "JPEGImages" / f"{iid}.jpg")
        (root / "SegmentationClass" / f"{iid}.png").write_bytes(encode_label_png(sem))
    return tmp_path / "voc"


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_round_trip_keeps_every_object_and_class(tmp_path: Path):
    project = build(tmp_path)
    report = export_project(project, tmp_path / "out", train_fraction=0.5, seed=1)
    assert sorted(report.splits["train"] + report.splits["val"]) == ["a", "b", "c", "d"]
    back = import_voc(tmp_path / "out", tmp_path / "back")
    assert back.classes == project.classes
    assert back.image_ids == project.image_ids
    for iid in project.image_ids:
        src = {o.object_id: o for o in project.read_objects(iid)}
        dst = {o.object_id: o for o in back.read_objects(iid)}
        assert set(src) == set(dst)
        for oid, o in src.items():
            assert dst[oid].class_id == o.class_id
            np.testing.assert_array_equal(dst[oid].mask, o.mask)
        assert back.status(iid) == ImageStatus.DONE
        assert back.image_path(iid).parent == (tmp_path / "out/VOCdevkit/VOC2012/JPEGImages")


def test_overlaps_follow_the_compose_rule_and_torchvision_agrees(tmp_path: Path):
    tv = pytest.importorskip("torchvision.datasets")
    project = build(tmp_path)
    doc = project.load_document("a")
    # A low-score object under object 1 and a high-score one on top of object 2.
    hidden = AnnotatedObject(7, 1, rect(3, 8, 3, 10), (), 0.1, "tiny")
    top = AnnotatedObject(9, 1, rect(25, 30, 8, 20), (), 0.99, "tiny")
    project.save_document(AnnotationDocument("a", (H, W), doc.objects + (hidden, top), "done"))
    doc = project.load_document("a")
    semantic, instance = doc.label_maps()
    report = export_project(project, tmp_path / "out", train_fraction=1.0)
    assert report.dropped_objects == [("a", 7)]
    seg = tv.VOCSegmentation(str(tmp_path / "out"), year="2012", image_set="train")
    det = tv.VOCDetection(str(tmp_path / "out"), year="2012", image_set="train")
    k = [Path(p).stem for p in seg.images].index("a")
    np.testing.assert_array_equal(np.asarray(seg[k][1]), semantic)
    objs = det[k][1]["annotation"]["object"]
    visible = [o for o in doc.objects if o.object_id != 7]
    names = [project.classes.names[o.class_id] for o in visible]
    boxes = [mask_bbox(instance == o.object_id) for o in visible]
    assert [o["name"] for o in objs] == names
    assert [tuple(int(o["bndbox"][c]) for c in ("xmin", "ymin", "xmax", "ymax"))
            for o in objs] == boxes


def test_status_decides_what_is_exported(tmp_path: Path):
    project = build(tmp_path, {"b": "flagged", "c": "in_progress", "d": "new"})
    report = export_project(project, tmp_path / "out", train_fraction=1.0, only_done=True)
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    assert (sets / "train.txt").read_text().split() == ["a"]
    assert (sets / "excluded.txt").read_text().split() == ["b"]
    assert (root / "SegmentationClass" / "b.png").exists()
    assert not (root / "SegmentationClass" / "c.png").exists()
    assert not (root / "SegmentationClass" / "d.png").exists()
    assert report.skipped == {"in_progress": ["c"], "new": ["d"]}
    export_project(project, tmp_path / "out2", train_fraction=1.0, include_flagged=True)
    sets2 = tmp_path / "out2" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    # By default every image with accepted objects, marked done or not ("d" has objects
    # saved, so it is in progress whatever its stored status says).
    assert (sets2 / "train.txt").read_text().split() == ["a", "b", "c", "d"]


def test_export_of_an_unfinished_folder_refuses_and_writes_nothing(tmp_path: Path):
    project = build(tmp_path, {i: "flagged" for i in LAYOUTS})
    with pytest.raises(NothingToExport, match="no image would go into train or val"):
        export_project(project, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_border_band_and_ids_with_spaces(tmp_path: Path):
    project = build(tmp_path)
    Image.fromarray(data.coffee()[: H * 8 : 8, : W * 8 : 8]).save(tmp_path / "my photo.png")
    [iid] = project.add_images([tmp_path / "my photo.png"])
    project.save_document(AnnotationDocument(iid, (H, W), [
        AnnotatedObject(1, 2, rect(10, 30, 10, 30))], "done"))
    report = export_project(project, tmp_path / "out", border=4)
    assert report.renamed == {"my photo": "my_photo"}
    cls = read_label_png(tmp_path / "out/VOCdevkit/VOC2012/SegmentationClass/my_photo.png")
    assert (cls[20, 8:12] == 255).all() and (cls[20, 12:28] == 2).all()
    assert voc_id(".x y") == "_x_y"


def test_export_failure_leaves_project_and_output_untouched(tmp_path: Path, monkeypatch):
    project = build(tmp_path)
    out = tmp_path / "out"
    export_project(project, out, seed=5)
    before_project = tree_digest(tmp_path / "proj")
    before_out = tree_digest(out)
    with pytest.raises(FileExistsError):
        export_project(project, out)
    real = writer_mod._write_file

    def failing(path: Path, data: bytes) -> None:
        if path.name == "c.jpg":  # the first file of the third image
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(writer_mod, "_write_file", failing)
    with pytest.raises(OSError, match=r"cannot write .*/out/VOCdevkit/VOC2012/JPEGImages/c\.jpg: "
                       r"No space left on device; .*nothing was changed"):
        export_project(project, out, overwrite=True)
    assert tree_digest(out) == before_out
    assert tree_digest(tmp_path / "proj") == before_project
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out", "proj"]


@pytest.mark.parametrize("damage, error, match", [
    (lambda t: (t / "images" / "c.jpg").unlink(), VocError, r"c\.jpg"),
    # The header of a cut-off JPEG reads fine; only decoding it all finds it broken.
    (lambda t: truncate(t / "images" / "c.jpg"), VocError, r"image c: .*c\.jpg.*truncated"),
    (lambda t: next((t / "proj/annotations/b").glob("obj-002-*.png")).write_bytes(b"x"),
     ProjectError, "cannot read mask"),
    (lambda t: Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(t / "images" / "a.jpg"),
     VocError, r"a\.jpg is 9x9 \(HxW\) but the label map is 40x56"),
    (lambda t: edit_objects(t, "a", lambda d: d["objects"][0].update(class_id=77)),
     ProjectError, r"objects\[0\]: field 'class_id' 77 is not a class"),
    (lambda t: edit_objects(t, "a", lambda d: d["objects"][1].update(object_id=1)),
     ProjectError, r"objects\[1\]: duplicate object_id 1"),
])
def test_bad_project_content_gives_clear_error_and_no_output(tmp_path: Path, damage, error,
                                                              match):
    project = build(tmp_path)
    damage(tmp_path)
    with pytest.raises(error, match=match):
        export_project(project, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_import_refuses_non_empty_target_and_cleans_up_on_error(tmp_path: Path):
    project = build(tmp_path)
    export_project(project, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        import_voc(tmp_path / "out", tmp_path / "full")
    seg = tmp_path / "out/VOCdevkit/VOC2012/SegmentationClass"
    sem = read_label_png(seg / "c.png")
    sem[0, 0] = 77  # not in the class list
    (seg / "c.png").write_bytes(encode_label_png(sem))
    with pytest.raises(VocError, match=r"c\.png: class indices \[77\]"):
        import_voc(tmp_path / "out", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_import_components_fill_void_and_copy(tmp_path: Path):
    sem = np.zeros((H, W), np.uint8)
    sem[10:20, 10:20] = 8
    sem[25:35, 30:50] = 8
    band = np.zeros((H, W), bool)
    band[8:22, 8:22] = True
    band[10:20, 10:20] = False
    sem[band] = 255  # a 2-px void ring around the first cat
    class_only_voc(tmp_path, {"x": sem})
    plain = import_voc(tmp_path / "voc", tmp_path / "p1")
    objs = plain.read_objects("x")
    assert [(o.class_id, o.area, o.model_id) for o in objs] == [(8, 100, "voc-import"),
                                                                (8, 200, "voc-import")]
    filled = import_voc(tmp_path / "voc", tmp_path / "p2", fill_void=2, copy_images=True)
    first = filled.read_objects("x")[0]
    assert first.area > 100 and first.mask[9, 9] and not first.mask[8, 8]
    assert filled.image_path("x") == (tmp_path / "p2" / "images" / "x.jpg").resolve()


@pytest.mark.parametrize("first", ["_background_", "background", "bg"])
def test_labelmap_line_0_is_index_0_whatever_it_is_called(tmp_path: Path, first):
    # labelme writes "_background_" first: cat pixels (index 1) must stay "cat", not "car".
    sem = np.zeros((H, W), np.uint8)
    sem[5:15, 5:15] = 1
    sem[20:30, 20:40] = 2
    root = class_only_voc(tmp_path, {"x": sem}) / "VOC2012"
    (root / "labelmap.txt").write_text(f"{first}:0,0,0::\ncat:128,0,0::\ndog:0,128,0::\n")
    if first == "bg":
        with pytest.warns(UserWarning, match="'bg'.*index 0"):
            project = import_voc(tmp_path / "voc", tmp_path / "p")
    else:
        project = import_voc(tmp_path / "voc", tmp_path / "p")
    assert project.classes.names == ("background", "cat", "dog")
    objs = project.read_objects("x")
    assert [project.classes.names[o.class_id] for o in objs] == ["cat", "dog"]
    np.testing.assert_array_equal(objs[0].mask, sem == 1)


def test_import_reports_small_regions_and_loses_no_pixel(tmp_path: Path):
    sem = np.zeros((H, W), np.uint8)
    sem[5:20, 5:20] = 17
    sem[8:20, 21] = 255       # a void band cuts a sliver of the sheep off
    sem[8:11, 22:24] = 17     # 6 px: a speck under min_area
    sem[30, 30] = 17
    clean = np.zeros((H, W), np.uint8)
    clean[5:20, 5:20] = 8
    class_only_voc(tmp_path, {"x": sem, "y": clean})
    report = ImportReport()
    project = import_voc(tmp_path / "voc", tmp_path / "p", report=report)
    [sheep] = project.read_objects("x")
    np.testing.assert_array_equal(sheep.mask, sem == 17)
    assert report.images == 2 and report.objects == 2
    assert list(report.specks) == ["x"]
    assert report.specks["x"].merged == 2 and report.specks["x"].merged_pixels == 7
    text = report.summary()
    assert "2 class regions under 10 px (7 px) in 1 images" in text
    assert "  x: 2 regions under 10 px (7 px) merged into the nearest object" in text


def test_import_takes_classes_from_pixels_not_xml(tmp_path: Path):
    project = build(tmp_path)
    export_project(project, tmp_path / "out")
    xml = tmp_path / "out/VOCdevkit/VOC2012/Annotations/c.xml"
    xml.write_text(xml.read_text().replace("<name>tree</name>", "<name>cat</name>"))
    back = import_voc(tmp_path / "out", tmp_path / "back")
    assert [back.classes.names[o.class_id] for o in back.read_objects("c")] == ["tree"]


def test_export_never_deletes_the_project_or_its_images(tmp_path: Path):
    project = build(tmp_path)
    with pytest.raises(VocError, match="would contain the project"):
        export_project(project, tmp_path, overwrite=True)
    with pytest.raises(VocError, match="would contain the project"):
        export_project(project, tmp_path / "proj", overwrite=True)
    export_project(project, tmp_path / "out")
    back = import_voc(tmp_path / "out", tmp_path / "back")  # images stay in out/
    with pytest.raises(VocError, match="lies inside .*out, which overwriting would delete"):
        export_project(back, tmp_path / "out", overwrite=True)
    assert back.image_path("a").is_file()


def test_import_keeps_split_and_object_flags_and_export_reproduces_them(tmp_path: Path):
    tv = pytest.importorskip("torchvision.datasets")
    project = build(tmp_path)
    doc = project.load_document("a")
    flagged = [AnnotatedObject(o.object_id, o.class_id, o.mask, o.prompts, o.score,
                               o.model_id, attributes=attrs)
               for o, attrs in zip(doc.objects, [
                   {"pose": "Left", "difficult": True, "truncated": False},
                   {"pose": "Frontal", "truncated": True}, {"difficult": True}], strict=True)]
    project.save_document(AnnotationDocument("a", (H, W), flagged, "done"))
    first = export_project(project, tmp_path / "out", train_fraction=0.5, seed=1)
    back = import_voc(tmp_path / "out", tmp_path / "back")
    assert {i: back.split(i) for i in back.image_ids} == {
        **{i: "train" for i in first.splits["train"]}, **{i: "val" for i in first.splits["val"]}}
    attrs = [dict(o.attributes) for o in back.read_objects("a")]
    assert attrs == [{"pose": "Left", "difficult": True, "truncated": False},
                     {"pose": "Frontal", "difficult": False, "truncated": True},
                     {"pose": "Unspecified", "difficult": True, "truncated": False}]
    # Another seed or fraction does not move val images into train: the stored split wins.
    again = export_project(back, tmp_path / "out2", train_fraction=1.0, seed=7)
    assert again.splits["train"] == first.splits["train"]
    assert again.splits["val"] == first.splits["val"] and again.stored_splits == 4
    det = tv.VOCDetection(str(tmp_path / "out2"), year="2012", image_set="trainval",
                          download=False)
    k = [Path(p).stem for p in det.images].index("a")
    objs = det[k][1]["annotation"]["object"]
    assert [(o["pose"], o["difficult"], o["truncated"]) for o in objs] == [
        ("Left", "1", "0"), ("Frontal", "0", "1"), ("Unspecified", "1", "0")]
    main_dog = tmp_path / "out2/VOCdevkit/VOC2012/ImageSets/Main/dog_trainval.txt"
    assert dict(line.split() for line in main_dog.read_text().splitlines())["a"] == "0"
    # --fresh-split: every image gets the seeded split again.
    fresh = export_project(back, tmp_path / "out3", train_fraction=1.0, fresh_split=True)
    assert fresh.splits["train"] == ["a", "b", "c", "d"] and fresh.stored_splits == 0
    # An image without a stored split joins the seeded split.
    back.set_split("d", None)
    mixed = export_project(back, tmp_path / "out4", train_fraction=0.0)
    assert "d" in mixed.splits["val"] and mixed.stored_splits == 3


def test_reviews_decide_train_and_val(tmp_path: Path):
    project = build(tmp_path, {"c": "flagged"})
    project.set_review("a", "rejected", "wrong object")
    project.set_review("b", "needs_work", "boundary")
    project.set_review("d", "accepted")
    report = export_project(project, tmp_path / "out", train_fraction=1.0)
    assert report.splits == {"train": ["d"], "val": [], "excluded": ["a", "b", "c"]}
    assert report.excluded == {"rejected": ["a"], "flagged": ["c"], "needs_work": ["b"]}
    assert "(1 rejected, 1 flagged, 1 needs_work)" in report.summary()
    root = tmp_path / "out/VOCdevkit/VOC2012"
    assert (root / "ImageSets/Segmentation/excluded.txt").read_text().split() == ["a", "b", "c"]
    assert (root / "SegmentationClass/a.png").exists()  # written, but in no split
    # --include-flagged lets needs_work and flagged images in, never rejected ones.
    report = export_project(project, tmp_path / "out2", train_fraction=1.0,
                            include_flagged=True)
    assert report.splits == {"train": ["b", "c", "d"], "val": [], "excluded": ["a"]}
    # A rejected image stays out even when its stored split says train.
    project.set_split("a", "train")
    report = export_project(project, tmp_path / "out3", train_fraction=1.0,
                            include_flagged=True)
    assert report.splits["excluded"] == ["a"]


def test_export_and_import_trees_get_normal_permissions(tmp_path: Path):
    import os
    import stat

    project = build(tmp_path)
    old = os.umask(0o022)
    try:
        export_project(project, tmp_path / "out")
        import_voc(tmp_path / "out", tmp_path / "back")
    finally:
        os.umask(old)
    for tree in (tmp_path / "out", tmp_path / "back"):
        paths = [tree, *tree.rglob("*")]
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
        wrong = {str(p): oct(m) for p, m in modes.items()
                 if m != (0o755 if p.is_dir() else 0o644)}
        assert not wrong


def test_import_write_failure_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from napari_samlabel.core import fsutil

    project = build(tmp_path)
    export_project(project, tmp_path / "out")
    real = fsutil.os.fsync
    count = [0]

    def failing(fd):
        count[0] += 1
        if count[0] == 5:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(fsutil.os, "fsync", failing)
    with pytest.raises(OSError) as info:
        import_voc(tmp_path / "out", tmp_path / "new")
    text = str(info.value)
    assert text.startswith(f"import stopped: cannot write {tmp_path / 'new'}/annotations/")
    assert "No space left on device" in text and "import-tmp" not in text
    assert text.endswith(f"nothing was created at {tmp_path / 'new'}")
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- parts ----------------------------------------------------------------------------------
CAT, DOG, HEAD = 1, 2, 3


def parts_project(tmp_path: Path) -> Project:
    """Image a: two dogs with a head each (one given explicitly to the other dog); b: a head
    without a dog; c, d: no parts."""
    project = build(tmp_path)
    a = project.load_document("a")
    a.remove_object(1)
    a.remove_object(2)
    a.remove_object(3)
    for class_id, mask in ((DOG, rect(0, 40, 0, 28)), (HEAD, rect(2, 10, 2, 10)),
                           (DOG, rect(0, 40, 28, 56)), (HEAD, rect(2, 10, 40, 50)),
                           (HEAD, rect(20, 30, 24, 36))):  # the last: mostly in the right dog
        a.set_current_class(class_id)
        a.set_prompts([Point((1.0, 1.0))])
        a.set_prediction(a.current.prompts, mask, 0.9, None)
        a.accept()
    a.set_parent(4, 1)  # the head in the right dog, given to the left one
    project.save_document(a)
    return project


def test_parts_and_parents_survive_export_and_import(tmp_path: Path):
    tv = pytest.importorskip("torchvision.datasets")
    project = parts_project(tmp_path)
    src = project.load_document("a")
    assert [(o.object_id, o.parent_id, o.parent_fixed) for o in src.parts] == [
        (2, 1, False), (4, 1, True), (5, 3, False)]
    report = export_project(project, tmp_path / "out", train_fraction=1.0)
    assert report.parts == 4 and report.orphan_parts == [("b", 2)]
    assert "4 parts in SegmentationPart (1 without a parent object: in the part maps only" \
        in report.summary()
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    semantic, instance = src.label_maps()
    np.testing.assert_array_equal(read_label_png(root / "SegmentationClass/a.png"), semantic)
    assert not (read_label_png(root / "SegmentationClass/a.png") == HEAD).any()
    np.testing.assert_array_equal(read_label_png(root / "SegmentationPart/a.png"),
                                  src.part_maps()[0])
    assert not read_label_png(root / "SegmentationPart/c.png").any()
    det = tv.VOCDetection(str(tmp_path / "out"), year="2012", image_set="train")
    k = [Path(p).stem for p in det.images].index("a")
    objs = det[k][1]["annotation"]["object"]
    assert [o["name"] for o in objs] == ["dog", "dog"]
    # torchvision gives a list for several <part>s, a dict for one: two in the left dog.
    parts = [o["part"] if isinstance(o["part"], list) else [o["part"]] for o in objs]
    assert [len(p) for p in parts] == [2, 1]
    assert all(p["name"] == "head" for p in parts[0] + parts[1])

    info = ImportReport()
    back = import_voc(tmp_path / "out", tmp_path / "back", report=info)
    assert info.parts == 4 and "(4 of them parts)" in info.summary()
    dst = back.load_document("a")

    def key(o: AnnotatedObject) -> bytes:
        return np.packbits(o.mask).tobytes()

    mapped = {key(o): o for o in dst.objects}
    ids = {o.object_id: mapped[key(o)].object_id for o in src.objects}
    for o in src.objects:
        twin = mapped[key(o)]
        assert twin.class_id == o.class_id
        assert twin.parent_id == (None if o.parent_id is None else ids[o.parent_id])
        assert twin.parent_fixed == o.parent_fixed
    for mine, theirs in zip(dst.label_maps()[0:1] + dst.part_maps()[0:1],
                            src.label_maps()[0:1] + src.part_maps()[0:1], strict=True):
        np.testing.assert_array_equal(mine, theirs)
    lone = back.load_document("b")
    assert [(back.classes.names[o.class_id], o.parent_id) for o in lone.parts] == [
        ("dog/head", None)]
    # And out again: the same dataset.
    export_project(back, tmp_path / "out2", train_fraction=1.0)
    for sub in ("SegmentationClass", "SegmentationObject", "SegmentationPart",
                "SegmentationPartObject", "Annotations"):
        for p in sorted((root / sub).iterdir()):
            assert (tmp_path / "out2/VOCdevkit/VOC2012" / sub / p.name).read_bytes() == \
                p.read_bytes(), f"{sub}/{p.name}"


def test_import_without_xml_links_parts_by_their_pixels(tmp_path: Path):
    project = parts_project(tmp_path)
    export_project(project, tmp_path / "out", train_fraction=1.0)
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    for xml in (root / "Annotations").iterdir():
        xml.unlink()
    back = import_voc(tmp_path / "out", tmp_path / "back")
    doc = back.load_document("a")
    by_box = {mask_bbox(o.mask): o for o in doc.parts}
    # The explicitly given head now goes to the dog that holds it.
    assert by_box[mask_bbox(rect(2, 10, 40, 50))].parent_id == 2
    assert by_box[mask_bbox(rect(2, 10, 2, 10))].parent_id == 1
    assert not any(o.parent_fixed for o in doc.parts)


def test_import_refuses_parts_of_a_class_that_is_not_a_part(tmp_path: Path):
    project = parts_project(tmp_path)
    export_project(project, tmp_path / "out", train_fraction=1.0)
    with pytest.raises(VocError, match=r"SegmentationPart/a\.png: class indices \[3\] are not "
                                       "part classes"):
        import_voc(tmp_path / "out", tmp_path / "back", classes=project.classes.__class__(
            ("cat", "dog", "head", "tree")))
    assert not (tmp_path / "back").exists()

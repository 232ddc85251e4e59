"""Tests of the VOC writer: layout, torchvision, void band, parts, bad input, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import ClassTable, voc_colormap
from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc import writer as writer_mod
from napari_samlabel.io.voc.annotations import (
    ObjectInfo,
    XmlPart,
    parse_annotation,
    parse_labelmap,
)
from napari_samlabel.io.voc.components import mask_bbox
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.io.voc.reader import read_voc
from napari_samlabel.io.voc.writer import VocWriter, split_ids
from tests.io.voc.scenes import (
    P_DOG,
    P_DOG_HEAD,
    P_PERSON,
    P_PERSON_HEAD,
    PART_CLASSES,
    H,
    W,
    boxes_of,
    part_scene,
    scene,
    write_part_scene,
    write_scene,
)


def test_split_is_seeded_and_respects_fraction():
    ids = [f"im{i:02d}" for i in range(20)]
    a = split_ids(ids, 0.8, seed=0)
    assert a == split_ids(list(reversed(ids)), 0.8, seed=0)
    assert sum(v == "train" for v in a.values()) == 16
    assert a != split_ids(ids, 0.8, seed=1)
    assert set(split_ids(ids[:2], 0.99, 0).values()) == {"train", "val"}
    assert set(split_ids(ids, 1.0, 0).values()) == {"train"}
    with pytest.raises(ValueError):
        split_ids(ids, 1.5, 0)


def test_torchvision_reads_masks_and_boxes(tmp_path: Path, image: np.ndarray):
    tv = pytest.importorskip("torchvision.datasets")
    out, _ = write_scene(tmp_path, image)
    sem, inst = scene()
    seg = tv.VOCSegmentation(str(out), year="2012", image_set="trainval", download=False)
    assert sorted(Path(p).stem for p in seg.images) == ["drawing", "photo"]
    for k in range(len(seg)):
        img, target = seg[k]
        assert img.size == (W, H)
        assert target.mode == "P"
        np.testing.assert_array_equal(np.asarray(target), sem)
    det = tv.VOCDetection(str(out), year="2012", image_set="trainval", download=False)
    by_id = {Path(p).stem: k for k, p in enumerate(det.images)}
    _, target = det[by_id["photo"]]
    # Instances renumbered 2, 4, 9 -> 1, 2, 3 in XML order; boxes from their masks.
    expected = [("person", mask_bbox(inst == 2)), ("dog", mask_bbox(inst == 4)),
                ("dog", mask_bbox(inst == 9))]
    assert boxes_of(target) == expected
    objs = target["annotation"]["object"]
    assert [o["truncated"] for o in objs] == ["1", "0", "0"]
    assert [o["difficult"] for o in objs] == ["0", "0", "1"]
    assert objs[2]["pose"] == "Left"
    assert target["annotation"]["size"] == {"width": str(W), "height": str(H), "depth": "3"}
    # SegmentationObject index k is the k-th XML object.
    obj = read_label_png(out / "VOCdevkit/VOC2012/SegmentationObject/photo.png")
    for k, old in enumerate([2, 4, 9], 1):
        np.testing.assert_array_equal(obj == k, inst == old)


def test_layout_sets_jpeg_bytes_and_labelmap(tmp_path: Path, image: np.ndarray):
    out, jpg = write_scene(tmp_path, image)
    root = out / "VOCdevkit" / "VOC2012"
    assert (root / "JPEGImages" / "photo.jpg").read_bytes() == jpg.read_bytes()
    with Image.open(root / "JPEGImages" / "drawing.jpg") as im:
        assert im.format == "JPEG" and im.size == (W, H)
    sets = root / "ImageSets" / "Segmentation"
    read = {n: (sets / f"{n}.txt").read_text().split() for n in
            ("train", "val", "trainval", "excluded")}
    assert read["val"][0] == "drawing" and "drawing" not in read["train"]
    assert sorted(read["train"] + read["val"]) == read["trainval"] == ["drawing", "photo"]
    assert read["excluded"] == ["array"]
    assert (root / "ImageSets" / "Main" / "trainval.txt").read_text().split() == ["drawing",
                                                                                  "photo"]
    dog = dict(line.split() for line in
               (root / "ImageSets" / "Main" / "dog_trainval.txt").read_text().splitlines())
    assert dog == {"drawing": "1", "photo": "1"}
    cat = (root / "ImageSets" / "Main" / "cat_trainval.txt").read_text().split()
    assert cat[1::2] == ["-1", "-1"]
    lines = (root / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions"
    assert lines[1] == "background:0,0,0::" and lines[2] == "aeroplane:128,0,0::"
    assert lines[16] == "person:192,128,128::"
    assert parse_labelmap(root / "labelmap.txt") == ClassTable.voc()
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left behind


def test_void_band_in_both_pngs_and_boxes_from_full_masks(tmp_path: Path, image: np.ndarray):
    out, _ = write_scene(tmp_path, image, border=4)
    root = out / "VOCdevkit" / "VOC2012"
    cls = read_label_png(root / "SegmentationClass" / "photo.png")
    obj = read_label_png(root / "SegmentationObject" / "photo.png")
    np.testing.assert_array_equal(cls == 255, obj == 255)
    # Band between the two touching dogs (cols 13..16) and around them.
    assert (cls[15:25, 13:17] == 255).all() and (cls[15:25, 17:23] == 12).all()
    assert (cls[20, 3:7] == 255).all() and cls[20, 2] == 0 and cls[20, 7] == 12
    # Bottom image border is not an edge: the person keeps its last rows.
    assert (cls[59, 45:65] == 15).all()
    for r in read_voc(out):
        if r.image_id == "photo":
            assert r.objects[0].bbox == mask_bbox(scene()[1] == 2)


def test_custom_classes_extend_the_palette(tmp_path: Path, image: np.ndarray):
    names = ["background"] + [f"thing{i}" for i in range(1, 40)] + ["thing1/head"]
    classes = ClassTable(tuple(names))
    sem = np.zeros((H, W), np.uint8)
    sem[5:20, 5:20] = 33
    sem[30:50, 30:50] = 40
    with VocWriter(tmp_path / "out", classes) as w:
        w.add("x", image, sem)
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    with Image.open(root / "SegmentationClass" / "x.png") as im:
        np.testing.assert_array_equal(np.asarray(im), sem)
        pal = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(pal[33], voc_colormap(256)[33])
    lines = (root / "labelmap.txt").read_text().splitlines()
    r, g, b = voc_colormap(256)[40]
    assert lines[41] == f"thing1/head:{r},{g},{b}::"
    assert (root / "ImageSets" / "Main" / "thing1-head_train.txt").exists()
    recs = list(read_voc(tmp_path / "out"))
    assert [o.class_id for o in recs[0].objects] == [33, 40]
    with pytest.raises(ValueError, match="255"):
        VocWriter(tmp_path / "big", [f"c{i}" for i in range(300)])
    assert not (tmp_path / "big").exists()


# -- bad input ------------------------------------------------------------------------------
def test_bad_records_raise_clear_errors(tmp_path: Path, image: np.ndarray):
    sem, inst = scene()
    with pytest.raises(VocError) as info, VocWriter(tmp_path / "out") as w:
        w.add("ok", image, sem, inst)
        with pytest.raises(VocError, match="given twice"):
            w.add("ok", image, sem, inst)
        with pytest.raises(VocError, match="not usable as a VOC file name"):
            w.add("has space", image, sem, inst)
        with pytest.raises(VocError, match="image shape .* does not match"):
            w.add("small", image[:10], sem, inst)
        with pytest.raises(VocError, match=r"class indices \[30\]"):
            w.add("unknown", image, np.where(sem == 12, 30, sem).astype(np.uint8), inst)
        with pytest.raises(VocError, match="instance map shape"):
            w.add("mismatch", image, sem, inst[:, :10])
        with pytest.raises(VocError, match="given class 'cat' but its pixels are 'dog'"):
            w.add("wrongcls", image, sem, inst, [ObjectInfo(4, class_id=8)])
        with pytest.raises(VocError, match=r"missing\.jpg"):
            w.add("missing", tmp_path / "missing.jpg", sem, inst)
        (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not really")
        with pytest.raises(VocError, match=r"corrupt\.jpg"):
            w.add("corrupt", tmp_path / "corrupt.jpg", sem, inst)
        assert w.image_ids == ["ok"]
        raise VocError("stop")  # leaving with an error discards everything
    assert str(info.value) == "stop"
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_non_empty_out_refused_and_untouched(tmp_path: Path, image: np.ndarray):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        VocWriter(out)
    assert (out / "keep.txt").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    with VocWriter(tmp_path / "empty") as w:  # an empty folder is fine
        w.add("a", image, scene()[0])
    # Overwriting replaces a previous export only, never other files.
    with pytest.raises(FileExistsError, match=r"not a VOC export \(keep\.txt\)"):
        VocWriter(out, overwrite=True)
    assert (out / "keep.txt").read_text() == "precious"
    prev = tmp_path / "empty"
    first = (prev / "VOCdevkit/VOC2012/SegmentationClass/a.png").read_bytes()
    with VocWriter(prev, overwrite=True) as w:
        w.add("b", image, np.zeros((H, W), np.uint8))
    assert not (prev / "VOCdevkit/VOC2012/SegmentationClass/a.png").exists()
    assert (prev / "VOCdevkit/VOC2012/SegmentationClass/b.png").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_write_failure_midway_leaves_existing_output_untouched(tmp_path: Path, image,
                                                               monkeypatch):
    out = tmp_path / "out"
    with VocWriter(out) as w:
        w.add("old", image, scene()[0])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = writer_mod._write_file
    calls = []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) > 6:
            raise OSError(27, "File too large")
        real(path, data)

    monkeypatch.setattr(writer_mod, "_write_file", failing)
    with pytest.raises(OSError) as info, VocWriter(out, overwrite=True) as w:
        for k in range(4):
            w.add(f"new{k}", image, scene()[0])
    # The message names the file (as it would be in OUT) and says nothing was changed.
    assert str(info.value) == (
        f"cannot write {out}/VOCdevkit/VOC2012/SegmentationObject/new1.png: File too large; "
        f"the export stopped and nothing was changed ({out} is as it was)")
    assert info.value.errno == 27
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_in_finish_keeps_old_output(tmp_path: Path, image, monkeypatch):
    out = tmp_path / "out"
    with VocWriter(out) as w:
        w.add("old", image, scene()[0])
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def boom(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer_mod, "labelmap_text", boom)
    with pytest.raises(OSError), VocWriter(out, overwrite=True) as w:
        w.add("new", image, scene()[0])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_instances_follow_the_semantic_map(tmp_path: Path, image: np.ndarray):
    sem, inst = scene()
    inst[0:5, 0:5] = 7          # instance on background -> dropped
    sem[40:50, 5:15] = 8        # a cat no instance covers -> an extra instance
    with VocWriter(tmp_path / "out") as w:
        w.add("x", image, sem, inst)
    [rec] = list(read_voc(tmp_path / "out"))
    assert [(o.instance_id, o.class_id) for o in rec.objects] == [(1, 15), (2, 12), (3, 12),
                                                                   (4, 8)]
    np.testing.assert_array_equal(rec.instance == 4, sem == 8)
    assert (rec.instance[0:5, 0:5] == 0).all()
    np.testing.assert_array_equal(rec.instance > 0, sem > 0)


def test_exif_rotated_jpeg_is_re_encoded_upright(tmp_path: Path, image: np.ndarray):
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; viewers turn it 90 degrees
    src = tmp_path / "phone.jpg"
    Image.fromarray(np.rot90(image, k=-1)).save(src, exif=exif)
    with VocWriter(tmp_path / "out") as w:
        w.add("phone", src, scene()[0])
    out = tmp_path / "out/VOCdevkit/VOC2012/JPEGImages/phone.jpg"
    assert out.read_bytes() != src.read_bytes()
    with Image.open(out) as im:
        assert im.size == (W, H)
        assert im.getexif().get(0x0112, 1) == 1
        assert np.abs(np.asarray(im).astype(int) - image.astype(int)).mean() < 10


def test_band_never_erases_a_thin_object(tmp_path: Path, image: np.ndarray):
    sem = np.zeros((H, W), np.uint8)
    sem[10:13, 10:40] = 5     # a 3-pixel-thin bottle
    sem[30:50, 30:60] = 7
    with VocWriter(tmp_path / "out", border=6) as w:
        w.add("x", image, sem)
    [rec] = list(read_voc(tmp_path / "out"))
    assert (rec.semantic[10:13, 10:40] == 5).all()
    assert (rec.semantic[40, 28:31] == 255).all() and (rec.semantic[40, 36:50] == 7).all()
    assert sorted(set(np.unique(rec.instance)) - {0, 255}) == [1, 2]


def test_xml_depth_describes_the_jpeg_written(tmp_path: Path, image: np.ndarray):
    tv = pytest.importorskip("torchvision.datasets")
    grey = np.asarray(Image.fromarray(image).convert("L"))
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(grey).save(src / "grey.jpg", quality=90)   # copied as is: stays grey
    Image.fromarray(grey).save(src / "greypng.png")            # re-encoded: RGB
    Image.fromarray(image).save(src / "colour.jpg", quality=90)
    with VocWriter(tmp_path / "out", train_fraction=1.0) as w:
        for name in ("grey.jpg", "greypng.png", "colour.jpg"):
            w.add(Path(name).stem, src / name, scene()[0])
    root = tmp_path / "out/VOCdevkit/VOC2012"
    assert (root / "JPEGImages/grey.jpg").read_bytes() == (src / "grey.jpg").read_bytes()
    det = tv.VOCDetection(str(tmp_path / "out"), year="2012", image_set="train",
                          download=False)
    depth = {}
    for k, p in enumerate(det.images):
        with Image.open(p) as im:
            depth[Path(p).stem] = (det[k][1]["annotation"]["size"]["depth"],
                                   len(im.getbands()))
    assert depth == {"grey": ("1", 1), "greypng": ("3", 3), "colour": ("3", 3)}
    seg = tv.VOCSegmentation(str(tmp_path / "out"), year="2012", image_set="train",
                             download=False)
    assert all(seg[k][0].mode == "RGB" for k in range(len(seg)))  # loaders convert anyway





def test_parts_get_their_own_maps_and_xml_parts(tmp_path: Path, image: np.ndarray):
    w = write_part_scene(tmp_path, image)
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    m = part_scene()
    # The object maps are the objects' alone: the heads punch no holes in them.
    np.testing.assert_array_equal(read_label_png(root / "SegmentationClass/parts.png"), m["sem"])
    inst = read_label_png(root / "SegmentationObject/parts.png")
    assert set(np.unique(inst)) == {0, 1, 2, 3}  # 3, 5, 7 -> 1, 2, 3
    psem = read_label_png(root / "SegmentationPart/parts.png")
    np.testing.assert_array_equal(psem, m["psem"])
    with Image.open(root / "SegmentationPart/parts.png") as im:
        assert im.mode == "P" and im.getpalette()[:9] == voc_colormap(3).reshape(-1).tolist()
    pinst = read_label_png(root / "SegmentationPartObject/parts.png")
    assert pinst[12, 8] == 1 and pinst[38, 60] == 2 and pinst[3, 62] == 3
    # An image without parts still gets (empty) part maps, so loaders find a file per id.
    assert not read_label_png(root / "SegmentationPart/plain.png").any()
    assert not read_label_png(root / "SegmentationPartObject/plain.png").any()
    assert w.n_parts == 3 and w.orphan_parts == [("parts", 13)]
    # XML: <part> inside its parent's <object>, named without the parent's prefix.
    size, objects = parse_annotation(root / "Annotations/parts.xml", PART_CLASSES)
    assert [o.class_id for o in objects] == [P_DOG, P_PERSON, P_DOG]
    assert objects[0].parts == (XmlPart("head", P_DOG_HEAD, mask_bbox(m["pinst"] == 11)),)
    assert objects[1].parts == (XmlPart("head", P_PERSON_HEAD,
                                            mask_bbox(m["pinst"] == 12)),)
    assert objects[2].parts == ()
    assert objects[0].bbox == mask_bbox(m["inst"] == 3)  # the object's box, not the part's
    text = (root / "Annotations/parts.xml").read_text()
    assert text.count("<part>") == 2 and "<name>dog/head</name>" not in text
    labelmap = (root / "labelmap.txt").read_text().splitlines()
    assert labelmap[2].startswith("dog:") and labelmap[2].endswith(":head:")
    assert labelmap[3].endswith(":head,hand:") and labelmap[4].startswith("dog/head:")
    assert parse_labelmap(root / "labelmap.txt") == PART_CLASSES
    main = (root / "ImageSets/Main/dog-head_train.txt").read_text().split()
    assert dict(zip(main[::2], main[1::2], strict=True)) == {"parts": "1", "plain": "-1"}


def test_a_dataset_without_parts_has_no_part_folders(tmp_path: Path, image: np.ndarray):
    out, _ = write_scene(tmp_path, image)
    root = out / "VOCdevkit" / "VOC2012"
    assert not (root / "SegmentationPart").exists()
    assert not (root / "SegmentationPartObject").exists()
    assert "<part>" not in (root / "Annotations/photo.xml").read_text()


def test_torchvision_reads_an_export_with_parts(tmp_path: Path, image: np.ndarray):
    tv = pytest.importorskip("torchvision.datasets")
    write_part_scene(tmp_path, image)
    m = part_scene()
    seg = tv.VOCSegmentation(str(tmp_path / "out"), year="2012", image_set="train")
    for k in range(len(seg)):
        np.testing.assert_array_equal(np.asarray(seg[k][1]), m["sem"])
    det = tv.VOCDetection(str(tmp_path / "out"), year="2012", image_set="train")
    k = [Path(p).stem for p in det.images].index("parts")
    objs = det[k][1]["annotation"]["object"]
    assert [o["name"] for o in objs] == ["dog", "person", "dog"]
    assert boxes_of(det[k][1])[0] == ("dog", mask_bbox(m["inst"] == 3))
    assert objs[0]["part"]["name"] == "head" and "part" not in objs[2]
    xmin = int(objs[1]["part"]["bndbox"]["xmin"])
    assert xmin == mask_bbox(m["pinst"] == 12)[0]


def test_part_maps_get_the_void_band_too(tmp_path: Path, image: np.ndarray):
    write_part_scene(tmp_path, image, border=2)
    root = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    psem = read_label_png(root / "SegmentationPart/parts.png")
    pinst = read_label_png(root / "SegmentationPartObject/parts.png")
    # The dog head spans rows 10..15, columns 5..11: a 1 px band inside, 1 px outside.
    assert psem[12, 5] == 255 and psem[12, 6] == P_DOG_HEAD
    assert psem[12, 4] == 255 and psem[12, 3] == 0
    assert psem[12, 12] == 255 and pinst[12, 12] == 255 and psem[12, 13] == 0
    # The object maps have their own band; the head draws none inside the dog.
    sem = read_label_png(root / "SegmentationClass/parts.png")
    assert sem[12, 12] == P_DOG


@pytest.mark.parametrize("change, match", [
    (lambda m, p: m["psem"].__setitem__((0, 0), P_DOG), r"'dog', which are not part classes"),
    (lambda m, p: p.__setitem__(0, ObjectInfo(11, parent=5)),
     r"part 11 is a 'dog/head', which cannot belong to object 5, a 'person'"),
    (lambda m, p: m.__setitem__("psem", None), "parts need a part class map"),
])
def test_bad_parts_are_refused(tmp_path: Path, image: np.ndarray, change, match):
    m = part_scene()
    parts = [ObjectInfo(11, parent=3)]
    change(m, parts)
    with VocWriter(tmp_path / "out", PART_CLASSES) as w, pytest.raises(VocError, match=match):
        w.add("parts", image, m["sem"], m["inst"], None, None, m["psem"], m["pinst"], parts)
    assert w.image_ids == []  # nothing written for the image
    assert not list((tmp_path / "out").rglob("parts.*"))

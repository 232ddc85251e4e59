"""Weak-label readers: synthetic files in tmp_path, plus a check against the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble
from napari_samlabel.io.weak import (
    WeakLabelError,
    WeakLabels,
    cam_peak_points,
    mask_to_polylines,
    read_boxes_json,
    read_boxes_voc_xml,
    read_cam_npy,
    read_points_json,
    read_scribbles_png,
    read_scribbles_txt,
    read_scribbles_xml,
    read_weak_labels,
)

SAMPLE = Path("/work/shared/data/voc-sample")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- points

def test_points_dataset_layout_groups_by_class_and_rank(tmp_path):
    data = {
        "img_a": [
            {"x": 10.5, "y": 20.0, "cls": 15, "rank": 2},
            {"x": 30.0, "y": 40.0, "cls": 8, "rank": 1},
            {"x": 50.0, "y": 60.0, "cls": "person", "rank": 1},
            {"x": 1.0, "y": 2.0, "cls": 0},
        ],
        "img_b": [{"x": 5, "y": 6, "cls": "cat"}],
    }
    labels = read_points_json(write(tmp_path / "pts.json", json.dumps(data)))
    assert list(labels) == ["img_a", "img_b"]
    a = labels["img_a"]
    # Objects sorted by class then rank; x, y -> (row, col).
    assert [(o.class_id, o.points[0].rc) for o in a.objects] == [
        (8, (40.0, 30.0)), (15, (60.0, 50.0)), (15, (20.0, 10.5))]
    assert [o.object_id for o in a.objects] == [1, 2, 3]
    assert a.background == (Point((2.0, 1.0), positive=False),)
    person = a.by_class()[15]
    assert person.object_id == 15 and person.points == (Point((60.0, 50.0)), Point((20.0, 10.5)))
    negs = a.negatives_for(15)
    assert negs == (Point((2.0, 1.0), False), Point((40.0, 30.0), False))
    assert a.negatives_for(15, include_background=False) == (Point((40.0, 30.0), False),)
    assert labels["img_b"].objects[0].class_id == 8


def test_points_same_rank_is_one_object(tmp_path):
    data = [{"x": 1, "y": 1, "cls": 3, "rank": 1}, {"x": 9, "y": 9, "cls": 3, "rank": 1}]
    labels = read_points_json(write(tmp_path / "2008_000001.json", json.dumps(data)))
    (obj,) = labels["2008_000001"].objects
    assert len(obj.points) == 2


def test_points_class_names_tolerate_case(tmp_path):
    labels = read_points_json(write(tmp_path / "p.json", json.dumps(
        {"im": [{"x": 1, "y": 1, "cls": " Person "}]})))
    assert labels["im"].class_ids == [15]


def test_points_per_image_object(tmp_path):
    data = {"image": "x1", "points": [{"x": 3, "y": 4, "cls": 1}]}
    labels = read_points_json(write(tmp_path / "p.json", json.dumps(data)))
    assert labels["x1"].objects[0].points[0].rc == (4.0, 3.0)


def test_points_custom_class_table(tmp_path):
    table = ClassTable(("cell", "nucleus"))
    data = {"im": [{"x": 3, "y": 4, "cls": "nucleus"}]}
    labels = read_points_json(write(tmp_path / "p.json", json.dumps(data)), table)
    assert labels["im"].objects[0].class_id == 2


@pytest.mark.parametrize(("entry", "message"), [
    ({"x": 1, "y": 2}, "missing cls"),
    ({"x": "a", "y": 2, "cls": 1}, "'x' must be a number"),
    ({"x": -1, "y": 2, "cls": 1}, ">= 0"),
    ({"x": 1, "y": 2, "cls": 21}, "outside 0..20"),
    ({"x": 1, "y": 2, "cls": "unicorn"}, "unknown class 'unicorn'"),
    ({"x": 1, "y": 2, "cls": True}, "index or a name"),
    ([1, 2], "must be an object"),
])
def test_points_bad_entry_names_file_image_and_entry(tmp_path, entry, message):
    path = write(tmp_path / "bad.json", json.dumps({"img": [{"x": 0, "y": 0, "cls": 1}, entry]}))
    with pytest.raises(WeakLabelError, match=message) as info:
        read_points_json(path)
    assert str(path) in str(info.value) and "image 'img', entry 1" in str(info.value)


def test_points_invalid_json_names_line(tmp_path):
    path = write(tmp_path / "bad.json", '{"a": [\n  {"x": 1,,}\n]}')
    with pytest.raises(WeakLabelError, match=r"line 2"):
        read_points_json(path)


# --------------------------------------------------------------------------- scribbles

def test_scribbles_txt(tmp_path):
    path = write(tmp_path / "2008_000003_scribble.txt",
                 "# comment\n15,74,195,74,196,80,200\n\n0, 1, 2, 3, 4\nperson 5 6\n")
    labels = read_scribbles_txt(path)
    w = labels["2008_000003"]
    assert len(w.objects) == 2 and all(o.class_id == 15 for o in w.objects)
    np.testing.assert_array_equal(w.objects[0].scribbles[0].path,
                                  [[195, 74], [196, 74], [200, 80]])
    (bg,) = w.background
    assert isinstance(bg, Scribble) and not bg.positive
    np.testing.assert_array_equal(bg.path, [[2, 1], [4, 3]])
    # Class scribbles become negatives for other classes, never for their own class.
    assert len(w.negatives_for(15)) == 1 and len(w.negatives_for(3)) == 3


@pytest.mark.parametrize(("line", "message"), [
    ("15,1,2,3", "coordinate values"),
    ("15", "coordinate values"),
    ("15,1,x", "not a number"),
    ("99,1,2", "outside"),
    ("15,-1,2", ">= 0"),
    (",,,", "only separators"),
    (" , \t, ", "only separators"),
])
def test_scribbles_txt_errors_name_line(tmp_path, line, message):
    path = write(tmp_path / "s.txt", f"15,1,1\n{line}\n")
    with pytest.raises(WeakLabelError, match=message) as info:
        read_scribbles_txt(path)
    assert "line 2" in str(info.value) and str(path) in str(info.value)


XML_SCRIBBLE = """<annotation>
  <filename>2007_000032.jpg</filename>
  <imagesize><nrows>281</nrows><ncols>500</ncols></imagesize>
  <polygon><tag>aeroplane</tag>
    <point><X>10</X><Y>20</Y></point><point><X>11</X><Y>25</Y></point>
  </polygon>
  <polygon><tag>background</tag><point><X>1</X><Y>2</Y></point></polygon>
  <polygon><tag>15</tag><point><X>100</X><Y>200</Y></point></polygon>
</annotation>"""


def test_scribbles_xml(tmp_path):
    labels = read_scribbles_xml(write(tmp_path / "whatever.xml", XML_SCRIBBLE))
    w = labels["2007_000032"]
    assert w.image_shape == (281, 500)
    assert [o.class_id for o in w.objects] == [1, 15]
    np.testing.assert_array_equal(w.objects[0].scribbles[0].path, [[20, 10], [25, 11]])
    assert len(w.background) == 1 and not w.background[0].positive


def test_scribbles_xml_voc_size_and_capitalised_root(tmp_path):
    text = ("<Annotation><filename>im.jpg</filename><size><width>50</width><height>40</height>"
            "</size><polygon><tag>cat</tag><point><X>1</X><Y>2</Y></point></polygon>"
            "</Annotation>")
    w = read_scribbles_xml(write(tmp_path / "s.xml", text))["im"]
    assert w.image_shape == (40, 50) and w.class_ids == [8]


@pytest.mark.parametrize("reader, body", [
    (read_scribbles_xml, "<polygon><tag>cat</tag><point><X>1</X><Y>2</Y></point></polygon>"),
    (read_boxes_voc_xml, "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                         "<xmax>3</xmax><ymax>3</ymax></bndbox></object>"),
])
def test_both_xml_readers_read_the_image_size_alike(tmp_path, reader, body):
    def shape(size: str) -> tuple[int, int] | None:
        text = f"<annotation><filename>im.jpg</filename>{size}{body}</annotation>"
        return reader(write(tmp_path / "s.xml", text))["im"].image_shape

    assert shape("<size><width>50</width><height>40</height></size>") == (40, 50)
    assert shape("<imagesize><nrows>30</nrows><ncols>20</ncols></imagesize>") == (30, 20)
    assert shape("<size><width>50</width><height>40</height></size>"
                 "<imagesize><nrows>30</nrows><ncols>20</ncols></imagesize>") == (30, 20)
    assert shape("<size><width>0</width><height>0</height><depth>3</depth></size>") is None
    assert shape("<size><depth>3</depth></size>") is None
    with pytest.raises(WeakLabelError, match=r"<size>.*missing <height>"):
        shape("<size><width>50</width></size>")
    with pytest.raises(WeakLabelError, match=r"<imagesize>.*not a number"):
        shape("<imagesize><nrows>x</nrows><ncols>20</ncols></imagesize>")


def test_scribbles_xml_errors(tmp_path):
    bad_point = XML_SCRIBBLE.replace("<Y>25</Y>", "<Y>abc</Y>")
    with pytest.raises(WeakLabelError, match=r"<polygon> #1, <point> #2.*not a number"):
        read_scribbles_xml(write(tmp_path / "a.xml", bad_point))
    with pytest.raises(WeakLabelError, match="malformed XML"):
        read_scribbles_xml(write(tmp_path / "b.xml", "<annotation><polygon></annotation>"))
    bomb = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "boom">]>'
            "<annotation>&e;</annotation>")
    with pytest.raises(WeakLabelError, match="unsafe XML"):
        read_scribbles_xml(write(tmp_path / "c.xml", bomb))
    with pytest.raises(WeakLabelError, match="root element"):
        read_scribbles_xml(write(tmp_path / "d.xml", "<foo/>"))
    with pytest.raises(WeakLabelError, match=r"<polygon> #1.*no <point>"):
        read_scribbles_xml(write(tmp_path / "e.xml",
                                 "<annotation><polygon><tag>cat</tag></polygon></annotation>"))


def _pixel_set(scribbles) -> set[tuple[int, int]]:
    return {tuple(p) for s in scribbles for p in s.pixels().tolist()}


def test_mask_to_polylines_covers_exactly_the_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) > 0.7
    mask[5:10, 5:30] = True
    chains = mask_to_polylines(mask)
    covered = _pixel_set(Scribble(c) for c in chains)
    assert covered == set(zip(*np.nonzero(mask), strict=True))
    assert sum(len(c) for c in chains) == mask.sum()  # every pixel in exactly one chain
    for c in chains:  # consecutive vertices are 8-neighbours
        assert np.abs(np.diff(c, axis=0)).max(initial=0) <= 1


def test_mask_to_polylines_thin_line_is_one_chain():
    mask = np.zeros((20, 20), bool)
    mask[3, 2:15] = True
    mask[3:12, 14] = True
    assert len(mask_to_polylines(mask)) == 1


def test_scribbles_png(tmp_path):
    arr = np.full((30, 40), 255, np.uint8)
    arr[5, 3:20] = 8          # one cat stroke
    arr[20:22, 30:35] = 8     # a second, thick cat stroke
    arr[25, 0:40] = 0         # background stroke
    im = Image.fromarray(arr, mode="L").convert("P")
    im.save(tmp_path / "img7_scribble.png")
    w = read_scribbles_png(tmp_path / "img7_scribble.png")["img7"]
    assert w.image_shape == (30, 40)
    assert [o.class_id for o in w.objects] == [8, 8]
    assert _pixel_set(w.by_class()[8].scribbles) == set(zip(*np.nonzero(arr == 8), strict=True))
    assert _pixel_set(w.background) == set(zip(*np.nonzero(arr == 0), strict=True))
    assert all(not s.positive for s in w.background)


def test_scribbles_png_errors(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(WeakLabelError, match="is a RGB colour image"):
        read_scribbles_png(tmp_path / "rgb.png")
    Image.fromarray(np.full((4, 4), 30, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(WeakLabelError, match=r"values \[30\]"):
        read_scribbles_png(tmp_path / "big.png")


# --------------------------------------------------------------------------- boxes

VOC_XML = """<annotation>
  <folder>VOC2012</folder><filename>2007_000027.jpg</filename>
  <size><width>486</width><height>500</height><depth>3</depth></size>
  <object><name>person</name><difficult>0</difficult>
    <bndbox><xmin>174</xmin><ymin>101</ymin><xmax>349</xmax><ymax>351</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>169</xmin><ymin>104</ymin><xmax>209</xmax>
      <ymax>146</ymax></bndbox></part>
  </object>
  <object><name>dog</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>486</xmax><ymax>500</ymax></bndbox>
  </object>
</annotation>"""


def test_boxes_voc_xml_one_based_to_zero_based(tmp_path):
    w = read_boxes_voc_xml(write(tmp_path / "x.xml", VOC_XML))["2007_000027"]
    assert w.image_shape == (500, 486)
    assert [o.class_id for o in w.objects] == [15, 12]  # the <part> is not an object
    assert w.objects[0].boxes == (Box((100.0, 173.0), (350.0, 348.0)),)
    assert w.objects[1].boxes == (Box((0.0, 0.0), (499.0, 485.0)),)
    assert w.negatives_for(15) == ()  # boxes never become negative prompts


@pytest.mark.parametrize(("old", "new", "message"), [
    ("<name>dog</name>", "<name>wolf</name>", r"<object> #2.*unknown class 'wolf'"),
    ("<xmax>486</xmax>", "<xmax>-3</xmax>", r"<object> #2.*swapped"),
    ("<ymin>1</ymin>", "", r"<object> #2 <bndbox>.*missing <ymin>"),
    ("<xmin>1</xmin>", "<xmin>900</xmin>", r"<object> #2.*swapped"),
])
def test_boxes_voc_xml_errors(tmp_path, old, new, message):
    path = write(tmp_path / "x.xml", VOC_XML.replace(old, new))
    with pytest.raises(WeakLabelError, match=message):
        read_boxes_voc_xml(path)


def test_boxes_from_a_voc_root(tmp_path):
    (tmp_path / "VOC2012" / "Annotations").mkdir(parents=True)
    write(tmp_path / "VOC2012" / "Annotations" / "2007_000027.xml", VOC_XML)
    labels = read_weak_labels(tmp_path / "VOC2012", "boxes")
    assert list(labels) == ["2007_000027"] and len(labels["2007_000027"].objects) == 2


def test_boxes_voc_xml_box_outside_image(tmp_path):
    text = VOC_XML.replace("<xmin>1</xmin>", "<xmin>490</xmin>").replace(
        "<xmax>486</xmax>", "<xmax>495</xmax>")
    with pytest.raises(WeakLabelError, match="outside the 486 x 500 image"):
        read_boxes_voc_xml(write(tmp_path / "x.xml", text))


def test_boxes_json_layouts(tmp_path):
    voc_style = {"image": "im1.jpg", "objects": [{"name": "cat", "bbox_xyxy": [28, 1, 335, 496]}]}
    w = read_boxes_json(write(tmp_path / "a.json", json.dumps(voc_style)))["im1"]
    assert w.objects[0].boxes[0] == Box((0.0, 27.0), (495.0, 334.0))
    zero = dict(voc_style, index_base=0)
    w0 = read_boxes_json(write(tmp_path / "b.json", json.dumps(zero)))["im1"]
    assert w0.objects[0].boxes[0] == Box((1.0, 28.0), (496.0, 335.0))
    plain = [["dog", 11, 21, 31, 41], {"cls": 8, "bbox": [1, 1, 2, 2]}]
    wp = read_boxes_json(write(tmp_path / "im2_boxes.json", json.dumps(plain)))["im2"]
    assert [o.class_id for o in wp.objects] == [12, 8]
    assert wp.objects[0].boxes[0] == Box((20.0, 10.0), (40.0, 30.0))
    multi = {"p": [["cat", 1, 1, 5, 5]], "q": [], "index_base": 1}
    assert sorted(read_boxes_json(write(tmp_path / "m.json", json.dumps(multi)))) == ["p", "q"]


@pytest.mark.parametrize(("objects", "message"), [
    ([{"name": "cat"}], "needs a class"),
    ([{"name": "cat", "bbox": [1, 2, 3]}], r"\[xmin, ymin, xmax, ymax\]"),
    ([{"name": "cat", "bbox": [1, 2, 3, None]}], "finite numbers"),
    ([{"name": "background", "bbox": [1, 2, 3, 4]}], "cannot be background"),
    ([["cat", 1, 2]], r"\[cls, xmin"),
])
def test_boxes_json_errors(tmp_path, objects, message):
    path = write(tmp_path / "b.json", json.dumps({"image": "i", "objects": objects}))
    with pytest.raises(WeakLabelError, match=message) as info:
        read_boxes_json(path)
    assert "image 'i', object 0" in str(info.value)


# --------------------------------------------------------------------------- CAMs

def _blob(shape, centre, sigma=4.0, height=1.0):
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return height * np.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sigma**2))


def test_cam_peak_points_finds_maxima_above_threshold():
    shape = (60, 80)
    cat = _blob(shape, (15, 20)) + _blob(shape, (40, 60), height=0.8) + _blob(
        shape, (50, 10), height=0.3)  # the 0.3 bump is below the threshold
    dog = _blob(shape, (30, 40), height=5.0)  # unnormalised: only relative values matter
    objs = cam_peak_points(np.stack([cat, dog]), [8, 12], threshold=0.5, min_distance=5)
    assert [(o.object_id, o.class_id) for o in objs] == [(1, 8), (2, 12)]
    assert [p.rc for p in objs[0].points] == [(15.0, 20.0), (40.0, 60.0)]  # highest first
    assert [p.rc for p in objs[1].points] == [(30.0, 40.0)]
    w = WeakLabels("im", "cams", tuple(objs))
    assert w.negatives_for(8) == (Point((30.0, 40.0), positive=False),)
    # min_distance merges nearby peaks; max_points caps them.
    assert len(cam_peak_points(cat[None], [8], max_points=1)[0].points) == 1


def test_cam_peak_points_fallback_is_an_option_off_by_default():
    flat = np.zeros((20, 20))
    flat[3, 4] = 0.2  # a weak maximum, below the threshold
    # the documented rule: only maxima above the threshold; the class gets no point
    assert cam_peak_points(flat[None], [5], threshold=0.5, normalize=False) == []
    (obj,) = cam_peak_points(np.stack([np.ones((20, 20)), flat]), [0, 5],
                             threshold=0.5, normalize=False, fallback_to_max=True)
    assert obj.class_id == 5 and obj.points == (Point((3.0, 4.0)),)  # background: no object
    with pytest.raises(ValueError, match="2 CAM channels but 1 classes"):
        cam_peak_points(np.stack([flat, flat]), [5])


def test_cam_peak_points_keeps_every_peak_unless_capped(tmp_path):
    shape = (60, 160)
    cam = sum(_blob(shape, (30, 10 + 20 * k), height=1.0 - 0.05 * k, sigma=3) for k in range(7))
    (obj,) = cam_peak_points(cam[None], [8], threshold=0.5, min_distance=5)
    assert len(obj.points) == 7  # no cap by default (the paper's rule)
    assert [p.rc[1] for p in obj.points] == [10.0 + 20 * k for k in range(7)]  # highest first
    (capped,) = cam_peak_points(cam[None], [8], threshold=0.5, min_distance=5, max_points=3)
    assert capped.points == obj.points[:3]
    with pytest.raises(ValueError, match="max_points"):
        cam_peak_points(cam[None], [8], max_points=0)
    # the reader and the dispatcher pass both options on
    np.save(tmp_path / "im.npy", np.stack([cam, np.zeros(shape)]).astype(np.float32))
    write(tmp_path / "im.json", json.dumps(["cat", "dog"]))
    w = read_weak_labels(tmp_path, "cams", min_distance=5)["im"]
    assert w.class_ids == [8] and len(w.objects[0].points) == 7  # the all-zero dog: no point
    # threshold 1.0: no peak clears it (strictly above); only the fallback gives a point
    assert read_weak_labels(tmp_path, "cams", threshold=1.0)["im"].class_ids == []
    w = read_weak_labels(tmp_path, "cams", min_distance=5, max_points=2, threshold=1.0,
                         fallback_to_max=True)["im"]
    assert w.class_ids == [8] and w.objects[0].points == (Point((30.0, 10.0)),)
    with pytest.raises(WeakLabelError, match="im.npy.*max_points"):
        read_weak_labels(tmp_path, "cams", max_points=0)


def test_read_cam_npy_with_sidecar_and_argument(tmp_path):
    cams = np.stack([_blob((30, 30), (10, 10)), _blob((30, 30), (20, 25))]).astype(np.float32)
    np.save(tmp_path / "im3.npy", cams)
    with pytest.raises(WeakLabelError, match="no class list"):
        read_cam_npy(tmp_path / "im3.npy")
    w = read_cam_npy(tmp_path / "im3.npy", cam_classes=["cat", 15])["im3"]
    assert w.image_shape == (30, 30) and w.class_ids == [8, 15]
    write(tmp_path / "im3.json", json.dumps({"classes": ["dog", "horse"]}))
    w = read_weak_labels(tmp_path, "cams")["im3"]  # the sidecar is not read as labels
    assert w.class_ids == [12, 13] and w.by_class()[12].points[0].rc == (10.0, 10.0)
    write(tmp_path / "im3.json", json.dumps({"classes": ["dog", "horse"], "labels": ["horse"]}))
    assert read_cam_npy(tmp_path / "im3.npy")["im3"].class_ids == [13]  # image-level labels
    write(tmp_path / "im3.json", json.dumps(["dog"]))
    with pytest.raises(WeakLabelError, match="2 channels but 1 classes"):
        read_cam_npy(tmp_path / "im3.npy")
    np.save(tmp_path / "obj.npy", np.array([{"keys": [1]}], dtype=object), allow_pickle=True)
    with pytest.raises(WeakLabelError, match="pickled"):
        read_cam_npy(tmp_path / "obj.npy", cam_classes=[1])


# --------------------------------------------------------------------------- dispatcher

def test_read_weak_labels_directory_merges_files_and_skips_others(tmp_path):
    write(tmp_path / "a.txt", "8,1,1,5,5\n")
    write(tmp_path / "a_scribble.xml",
          "<annotation><polygon><tag>dog</tag><point><X>3</X><Y>3</Y></point></polygon>"
          "</annotation>")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg")
    write(tmp_path / "b.txt", "0,1,1,2,2\n")
    labels = read_weak_labels(tmp_path, "scribbles")
    assert list(labels) == ["a", "b"]
    assert [(o.object_id, o.class_id) for o in labels["a"].objects] == [(1, 8), (2, 12)]
    assert labels["b"].objects == () and len(labels["b"].background) == 1


def test_read_weak_labels_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown weak-label kind"):
        read_weak_labels(tmp_path, "polygons")
    with pytest.raises(FileNotFoundError):
        read_weak_labels(tmp_path / "nope", "points")
    with pytest.raises(WeakLabelError, match=r"no boxes files \(.xml, .json\)"):
        read_weak_labels(tmp_path, "boxes")
    with pytest.raises(WeakLabelError, match="unsupported file type"):
        read_weak_labels(write(tmp_path / "x.csv", ""), "points")


def test_weak_labels_round_trip_dict_and_validation():
    w = WeakLabels("i", "points", (ObjectPrompts(1, 3, (Point((1.0, 2.0)),)),),
                   (Point((0.0, 0.0), False),), "src", (10, 20))
    assert WeakLabels.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    with pytest.raises(ValueError, match="background prompts"):
        WeakLabels("i", "points", background=(Point((0.0, 0.0)),))
    with pytest.raises(ValueError, match="class 0"):
        WeakLabels("i", "points", (ObjectPrompts(1, 0, ()),))
    with pytest.raises(ValueError, match="cannot merge points of 'i' with boxes"):
        w.merged_with(WeakLabels("i", "boxes"))


# --------------------------------------------------------------------------- real samples

@pytest.mark.skipif(not SAMPLE.exists(), reason="sample data folder not present")
def test_real_sample_files_read_and_fall_inside_ground_truth():
    weak = SAMPLE / "weak"
    points = read_weak_labels(weak / "points" / "whats_the_point.json", "points")
    boxes = read_weak_labels(weak / "boxes", "boxes")
    assert len(points) == 12 and set(points) == set(boxes)
    scrib = read_weak_labels(weak / "scribbles", "scribbles")["2008_000003"]
    assert scrib.class_ids == [15, 19] and len(scrib.background) == 1
    with Image.open(weak / "scribbles" / "2008_000003.jpg") as im:
        h, w = im.height, im.width
    for s in [p for o in scrib.objects for p in o.prompts] + list(scrib.background):
        assert s.path[:, 0].max() < h and s.path[:, 1].max() < w  # x,y really became row,col
    hits = total = 0
    for image_id, labels in points.items():
        gt = np.asarray(Image.open(SAMPLE / "VOC2012" / "SegmentationClass" / f"{image_id}.png"))
        for obj in labels.objects:
            for p in obj.points:
                total += 1
                hits += gt[int(p.rc[0]), int(p.rc[1])] == obj.class_id
        for obj in boxes[image_id].objects:
            (box,) = obj.boxes
            r0, c0 = map(int, box.top_left)
            r1, c1 = map(int, box.bottom_right)
            assert 0 <= r0 <= r1 < gt.shape[0] and 0 <= c0 <= c1 < gt.shape[1]
            assert (gt[r0:r1 + 1, c0:c1 + 1] == obj.class_id).any()
    assert hits / total >= 0.8


def test_check_within_image_shape():
    pts = WeakLabels("im", "points", (ObjectPrompts(1, 8, (Point((9.4, 19.0)),)),),
                     source="pts.json")
    pts.check_within((10, 20))
    with pytest.raises(WeakLabelError, match=r"pts.json \(object 1 \(class 8\)\): point lies "
                                             r"outside the 10 x 20 image 'im'"):
        pts.check_within((20, 10))  # as if x and y were swapped
    # A stroke that runs past the border is fine (the policies clip it); one wholly
    # outside is not.
    WeakLabels("im", "scribbles", background=(Scribble([[0, 0], [30, 0]], False),)
               ).check_within((10, 10))
    scr = WeakLabels("im", "scribbles", background=(Scribble([[12, 0], [30, 0]], False),))
    with pytest.raises(WeakLabelError, match="background prompt"):
        scr.check_within((10, 10))
    box = WeakLabels("im", "boxes", (ObjectPrompts(1, 8, (Box((5.0, 5.0), (50.0, 50.0)),)),))
    box.check_within((10, 10))  # overlapping boxes are clipped later, not rejected
    with pytest.raises(WeakLabelError, match="box lies outside"):
        box.check_within((4, 4))
    sized = WeakLabels("im", "boxes", image_shape=(10, 20), source="a.xml")
    with pytest.raises(WeakLabelError, match="labels are for a 20 x 10 image"):
        sized.check_within((20, 10))


def test_every_reader_records_where_each_object_is(tmp_path):
    """Origins let the pipeline name an object by its line/element, not its merged index."""
    txt = read_scribbles_txt(write(tmp_path / "a.txt", "# c\n8,1,1,5,5\n0,1,1,2,2\n12,3,3,4,4\n"))
    w = txt["a"]
    assert w.origins == ("line 2", "line 4") and w.background_origins == ("line 3",)
    assert w.where_is(1) == "object 2 (line 4, class 12)"
    xml = read_scribbles_xml(write(tmp_path / "a_scribble.xml", XML_SCRIBBLE))["2007_000032"]
    assert xml.origins == ("<polygon> #1", "<polygon> #3")
    arr = np.full((6, 8), 255, np.uint8)
    arr[1, 1:4] = 8
    arr[4, 5:7] = 8
    Image.fromarray(arr, mode="L").save(tmp_path / "p.png")
    png = read_scribbles_png(tmp_path / "p.png")["p"]
    assert png.origins == ("value 8, stroke 1 (rows 1-1, cols 1-3)",
                           "value 8, stroke 2 (rows 4-4, cols 5-6)")
    cams = np.zeros((3, 10, 10), np.float32)
    cams[2, 5, 5] = 1.0
    np.save(tmp_path / "c.npy", cams)
    write(tmp_path / "c.json", json.dumps({"classes": ["cat", "dog", "cow"], "labels": ["cow"]}))
    assert read_cam_npy(tmp_path / "c.npy")["c"].origins == ("channel 2",)  # the file's channel
    boxes = read_boxes_json(write(tmp_path / "bx.json", json.dumps(
        [{"cls": 8, "bbox": [1, 1, 5, 5]}, ["dog", 2, 2, 6, 6]])))["bx"]
    assert boxes.origins == ("image 'bx', object 0", "image 'bx', object 1")
    # merging files keeps each object's file in its origin; a round trip keeps origins
    merged = txt["a"].merged_with(WeakLabels("a", "scribbles", (ObjectPrompts(1, 3, (
        Scribble([[1, 1], [2, 2]]),)),), source=str(tmp_path / "b.txt")))
    assert merged.origins == ("a.txt: line 2", "a.txt: line 4", "b.txt: object 1")
    assert merged.describe_unit(12) == "class 12: a.txt: line 4"
    assert WeakLabels.from_dict(json.loads(json.dumps(merged.to_dict()))) == merged
    with pytest.raises(ValueError, match="1 origins for 2 prompts"):
        WeakLabels("a", "scribbles", w.objects, origins=("line 1",))


def test_on_error_reports_bad_files_and_images_and_reading_goes_on(tmp_path):
    write(tmp_path / "a_scribble.txt", "8,1,1,5,5\n")
    write(tmp_path / "b_scribble.txt", "8,1,1,5,5\n,,,\n")        # bad file: image b
    write(tmp_path / "c.txt", "8,1,1,5,5\n")
    write(tmp_path / "c.xml", "<annotation><polygon>")              # c has a bad second file
    errors = []
    labels = read_weak_labels(tmp_path, "scribbles", on_error=errors.append)
    assert list(labels) == ["a"]  # c left out: its labels would be incomplete
    assert sorted(e.image_id for e in errors) == ["b", "c"]
    assert any("b_scribble.txt" in str(e) and "line 2" in str(e) for e in errors)
    with pytest.raises(WeakLabelError, match="b_scribble.txt"):
        read_weak_labels(tmp_path, "scribbles")  # without on_error the first bad file raises
    # in a dataset file, one bad image does not take the others with it
    pts = write(tmp_path / "all.json", json.dumps({"x1": [{"x": 1, "y": 1, "cls": 8}],
                                                   "x2": [{"x": 1, "cls": 8}]}))
    errors.clear()
    assert list(read_weak_labels(pts, "points", on_error=errors.append)) == ["x1"]
    assert [(e.image_id, e.where) for e in errors] == [("x2", "image 'x2', entry 0")]
    bxs = write(tmp_path / "bx.json", json.dumps({"y1": [["cat", 1, 1, 4, 4]],
                                                  "y2": [["nope", 1, 1, 4, 4]]}))
    errors.clear()
    assert list(read_weak_labels(bxs, "boxes", on_error=errors.append)) == ["y1"]
    assert [e.image_id for e in errors] == ["y2"]

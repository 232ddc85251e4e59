import numpy as np
import pytest

from napari_samlabel.core.classes import VOC_CLASSES, ClassTable, voc_colormap
from napari_samlabel.core.compose import MaskEntry, compose_label_maps, paint_order
from napari_samlabel.core.coords import box_rc_to_xyxy, rc_to_xy, xy_to_rc, xyxy_to_box_rc
from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble, prompt_from_dict


def test_rc_xy_round_trip_swaps_axes():
    rc = np.array([[10.0, 50.0], [3.5, 7.25]])
    xy = rc_to_xy(rc)
    assert xy.tolist() == [[50.0, 10.0], [7.25, 3.5]]
    assert np.array_equal(xy_to_rc(xy), rc.astype(np.float32))


def test_box_conversion_normalises_corners():
    assert box_rc_to_xyxy((40, 30), (10, 80)).tolist() == [30, 10, 80, 40]
    tl, br = xyxy_to_box_rc([30, 10, 80, 40])
    assert tl.tolist() == [10, 30] and br.tolist() == [40, 80]
    assert Box((40, 80), (10, 30)).top_left == (10.0, 30.0)


def test_scribble_pixels_follow_path_and_clip():
    s = Scribble(np.array([[0, 0], [0, 4], [3, 4]]))
    pix = s.pixels()
    assert pix[0].tolist() == [0, 0] and pix[-1].tolist() == [3, 4]
    assert len(pix) == 8  # 5 along the row, 3 down the column, the corner once
    clipped = Scribble(np.array([[-2, 1], [2, 1]])).pixels(shape=(10, 10))
    assert clipped[:, 0].min() == 0 and len(clipped) == 3


def test_thick_scribble_covers_more_pixels():
    thin = Scribble(np.array([[10, 10], [10, 20]]), width=1).pixels()
    thick = Scribble(np.array([[10, 10], [10, 20]]), width=5).pixels()
    assert len(thick) > 3 * len(thin)
    assert {9, 10, 11} <= set(thick[:, 0].tolist())


def test_prompt_serialisation_round_trip():
    op = ObjectPrompts(3, 12, (Point((1.5, 2.0), False), Box((0, 0), (5, 6)),
                               Scribble(np.array([[1, 1], [4, 5]]), True, 3.0)))
    again = ObjectPrompts.from_dict(op.to_dict())
    assert again == op
    assert len(again.points) == 1 and len(again.boxes) == 1 and len(again.scribbles) == 1
    with pytest.raises(ValueError, match="unknown prompt type"):
        prompt_from_dict({"type": "circle"})
    with pytest.raises(ValueError, match="bad point"):
        prompt_from_dict({"type": "point", "rc": [1]})


def test_voc_colormap_known_values():
    cmap = voc_colormap()
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in cmap}) == 256


def test_class_table(tmp_path):
    voc = ClassTable.voc()
    assert voc.names == VOC_CLASSES and voc.index("dog") == 12 and voc.name(255) == "void"
    with pytest.raises(KeyError, match="unknown class"):
        voc.index("unicorn")
    f = tmp_path / "classes.txt"
    f.write_text("# parts\ndog\ndog/head\ndog/tail\ncat\n")
    t = ClassTable.from_file(f)
    assert t.names[0] == "background" and t.parent(t.index("dog/head")) == t.index("dog")
    assert t.parts(t.index("dog")) == [2, 3]
    f.write_text("dog\ndog\n")
    with pytest.raises(ValueError, match=r"classes.txt.*twice"):
        ClassTable.from_file(f)
    with pytest.raises(ValueError, match="at most 255"):
        ClassTable(tuple(f"c{i}" for i in range(300)))


@pytest.mark.parametrize("first", ["background", "_background_", "__background__",
                                   "Background"])
def test_background_aliases_are_index_0_not_a_class(tmp_path, first):
    # labelme's class_names.txt starts with "_background_": it must not become class 1.
    f = tmp_path / "classes.txt"
    f.write_text(f"{first}\ncat\ndog\n")
    t = ClassTable.from_file(f)
    assert t.names == ("background", "cat", "dog")
    assert ClassTable(("cat", "dog")).names == ("background", "cat", "dog")


def test_from_indexed_takes_entry_0_as_background_whatever_its_name():
    t = ClassTable.from_indexed(["bg", "cat", "dog"])
    assert t.names == ("background", "cat", "dog") and t.index("dog") == 2
    assert ClassTable.from_indexed(["background", "cat"]).names == ("background", "cat")
    with pytest.raises(ValueError, match="index 0"):
        ClassTable.from_indexed([])


def test_compose_overlap_rule():
    a = np.zeros((4, 4), bool)
    a[:, :3] = True
    b = np.zeros((4, 4), bool)
    b[:, 1:] = True
    sem, inst = compose_label_maps((4, 4), [MaskEntry(1, 1, a, 0.9), MaskEntry(2, 2, b, 0.8)])
    assert sem[0].tolist() == [1, 1, 1, 2] and inst[0].tolist() == [1, 1, 1, 2]
    sem, _ = compose_label_maps((4, 4), [MaskEntry(1, 1, a, 0.8), MaskEntry(2, 2, b, 0.8)])
    assert sem[0].tolist() == [1, 2, 2, 2]  # tie: later wins
    assert paint_order([None, 0.1, None]) == [0, 2, 1]
    with pytest.raises(ValueError, match="mask shape"):
        compose_label_maps((5, 5), [MaskEntry(1, 1, a, 0.8)])

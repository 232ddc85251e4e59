"""The HTML report: parsed with html.parser; thumbnails exist, worst first, overlays drawn."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.curate.assessment import assess_image, rank_images
from napari_samlabel.curate.report import (
    NEGATIVE,
    POSITIVE,
    object_colour,
    render_overlay,
    write_report,
)

SHAPE = (120, 160)


class ReportParser(HTMLParser):
    """Collects thumbnails and item sections in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.items: list[str] = []
        self.errors = 0
        self._in_err = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a" and "thumbnails/" in a.get("href", ""):
            self.links.append(a["href"])
        if tag == "section" and "item" in a.get("class", ""):
            self.items.append(a["data-image-id"])
        if tag == "p" and a.get("class") == "err":
            self.errors += 1


def make_obj(oid, rows, cols, score, prompts=()):
    m = np.zeros(SHAPE, dtype=bool)
    m[rows, cols] = True
    return AnnotatedObject(oid, 1, m, prompts, score)


@pytest.fixture()
def dataset():
    """Five images, each with one object of decreasing quality (id i_k: lower k worse)."""
    rng = np.random.default_rng(1)
    images, objects = {}, {}
    for k, score in enumerate([0.3, 0.6, 0.8, 0.9, 0.97]):
        iid = f"img {k}&<x>"  # odd characters must survive paths and HTML
        images[iid] = rng.integers(0, 255, size=SHAPE + (3,), dtype=np.uint8)
        objects[iid] = [make_obj(1, slice(20, 80), slice(30, 110), score,
                                 (Point((50, 70)), Box((20, 30), (79, 109))))]
    return images, objects


def test_report_renders_worst_first(tmp_path, dataset):
    images, objects = dataset
    ranked = rank_images(assess_image(i, SHAPE, objects[i]) for i in sorted(images))
    # Rank 4 loses its image: the report carries on with a message.
    lost = ranked[3].image_id

    def load(iid):
        if iid == lost:
            raise OSError(f"cannot read {iid}.jpg")
        return images[iid], objects[iid]

    calls = []
    path = write_report(tmp_path, ranked, load, top=4,
                        progress=lambda d, t, m: calls.append((d, t)))
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    n_low = sum("low_iou" in a.flags for a in ranked)
    assert n_low and f'low_iou</span> {n_low}' in text  # the header counts images per flag
    parser = ReportParser()
    parser.feed(text)
    assert parser.items == [a.image_id for a in ranked[:4]]
    assert parser.items[0] == "img 0&<x>"  # the lowest predicted IoU is the worst
    assert len(parser.images) == 3 and parser.errors == 1
    for src in parser.images:
        from urllib.parse import unquote

        assert (tmp_path / unquote(src)).is_file(), src
    assert "0001_" in parser.images[0]
    assert calls[-1] == (4, 4)
    thumbs = sorted(p.name for p in (tmp_path / "thumbnails").glob("*.png"))
    assert len(thumbs) == 3
    # Each thumbnail links to its full-size overlay, at the image's own size here.
    links = parser.links
    assert len(links) == 3 and all("thumbnails/full/" in h for h in links)
    for href, src in zip(links, parser.images, strict=True):
        from urllib.parse import unquote

        with Image.open(tmp_path / unquote(href)) as big, Image.open(tmp_path / unquote(src)) \
                as small:
            assert big.size == (SHAPE[1], SHAPE[0]) and max(small.size) <= 320
            assert Path(unquote(href)).name == Path(unquote(src)).name

    # A second run replaces the thumbnail folder as a whole (no stale files).
    write_report(tmp_path, ranked[:1], load, top=1)
    assert len(list((tmp_path / "thumbnails").glob("*.png"))) == 1
    assert len(list((tmp_path / "thumbnails" / "full").glob("*.png"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overlay_draws_masks_points_and_boxes():
    image = np.full(SHAPE + (3,), 128, dtype=np.uint8)
    obj = make_obj(2, slice(20, 60), slice(20, 60), 0.9,
                   (Point((40, 40)), Point((100, 140), positive=False),
                    Box((10, 100), (50, 150)),
                    Scribble(np.array([[90, 10], [90, 60]]), positive=True, width=3)))
    thumb = render_overlay(image, [obj], max_side=80)  # scale 0.5
    assert thumb.shape == (60, 80, 3) and thumb.dtype == np.uint8
    colour = np.array(object_colour(2))
    # Points at half scale: positive (40, 40) -> (20, 20), negative (100, 140) -> (50, 70).
    assert tuple(thumb[20, 20]) == POSITIVE
    assert tuple(thumb[50, 70]) == NEGATIVE
    # Box outline at rows 5..25, cols 50..75 in the object's colour; its inside untouched.
    assert tuple(thumb[5, 60]) == tuple(colour)
    assert tuple(thumb[15, 65]) == (128, 128, 128)
    # Scribble along row 45.
    assert tuple(thumb[45, 15]) == POSITIVE
    # Mask fill: a blend between grey and the object colour, inside the mask only.
    inside = thumb[25, 12].astype(float)
    expected = 0.55 * 128 + 0.45 * colour
    np.testing.assert_allclose(inside, expected, atol=2)
    assert tuple(thumb[55, 5]) == (128, 128, 128)


def test_overlay_keeps_tiny_objects_and_accepts_grey():
    image = np.zeros((400, 400), dtype=np.uint8)
    obj = make_obj(1, slice(0, 2), slice(0, 2), 0.9)
    obj = AnnotatedObject(1, 1, np.pad(obj.mask[:2, :2], ((100, 298), (100, 298))))
    thumb = render_overlay(image, [obj], max_side=100)  # 4x4 pixels -> one thumbnail pixel
    assert thumb.shape == (100, 100, 3)
    assert thumb[25, 25].any()
    with pytest.raises(ValueError, match="RGB"):
        render_overlay(np.zeros((4, 4, 2), np.uint8), [])


def test_thumbnail_png_is_valid(tmp_path, dataset):
    images, objects = dataset
    ranked = rank_images(assess_image(i, SHAPE, objects[i]) for i in images)
    write_report(tmp_path, ranked, lambda i: (images[i], objects[i]), top=2, max_side=64)
    for p in Path(tmp_path / "thumbnails").glob("*.png"):
        with Image.open(p) as im:
            assert im.format == "PNG" and max(im.size) == 64


def test_object_table_is_capped_worst_first():
    from napari_samlabel.curate.report import MAX_TABLE_ROWS, report_html

    objs = [make_obj(k, slice(k, k + 1), slice(0, 3), 0.5 + k / 100)
            for k in range(1, MAX_TABLE_ROWS + 6)]
    [a] = rank_images([assess_image("many", SHAPE, objs)])
    page = report_html([a], {"many": None})
    assert "5 more objects with lower scores" in page
    # The worst object (lowest predicted IoU, id 1) is listed; the best (the last id) is not.
    assert "</span> 1</td>" in page
    assert f"</span> {MAX_TABLE_ROWS + 5}</td>" not in page


def test_positive_click_shows_over_the_same_click_as_another_objects_negative():
    image = np.full(SHAPE + (3,), 128, dtype=np.uint8)
    # Object 1's positive click is object 2's negative (a pseudo-label unit's negatives are
    # the other classes' clicks); object 2 comes later but must not paint it red.
    a = make_obj(1, slice(20, 60), slice(20, 60), 0.9, (Point((40, 40)),))
    b = make_obj(2, slice(70, 100), slice(90, 140), 0.9,
                 (Point((85, 115)), Point((40, 40), positive=False),
                  Point((110, 10), positive=False)))
    thumb = render_overlay(image, [a, b], max_side=160)  # scale 1
    assert tuple(thumb[40, 40]) == POSITIVE
    assert tuple(thumb[110, 10]) == NEGATIVE  # a negative of its own still shows


def test_ground_truth_outline():
    from napari_samlabel.curate.report import GT_OUTLINE

    image = np.full(SHAPE + (3,), 128, dtype=np.uint8)
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[30:70, 40:100] = 3
    gt[30, 40:100] = 255  # void is not outlined
    thumb = render_overlay(image, [], max_side=160, gt=gt)
    assert tuple(thumb[50, 40]) == GT_OUTLINE and tuple(thumb[69, 70]) == GT_OUTLINE
    assert tuple(thumb[50, 70]) == (128, 128, 128)  # inside
    assert tuple(thumb[30, 70]) == (128, 128, 128)  # void row
    with pytest.raises(ValueError, match="ground truth"):
        render_overlay(image, [], gt=gt[:10])


def test_numbers_read_as_integers_and_percentages():
    from napari_samlabel.curate.report import format_value, percent

    assert format_value("area", 1830.0) == "1,830"
    assert format_value("components", 3.0) == "3"
    assert format_value("area_fraction", 2e-05) == "0.0020%"
    assert format_value("area_fraction", 0.0024) == "0.24%"
    assert format_value("area_fraction", 0.25) == "25%"
    assert format_value("box_fill", 0.4) == "40%"
    assert format_value("predicted_iou", 0.8765) == "0.88"
    assert format_value("gt_iou", None) == "\u2013"
    assert percent(0.0) == "0%" and percent(0.05) == "5.0%"


def test_report_says_why_an_image_scored_high(tmp_path):
    from napari_samlabel.curate.report import report_html

    big = np.zeros((400, 500), dtype=bool)
    big[50:350, 50:450] = True
    speck = np.zeros((400, 500), dtype=bool)
    speck[10:12, 10:12] = True  # 4 px of 200,000: 0.0020 %
    objs = [AnnotatedObject(1, 1, big, (), 0.86), AnnotatedObject(2, 1, speck, (), 0.97)]
    [a] = rank_images([assess_image("why", (400, 500), objs)])
    page = report_html([a], {"why": None}, ["background", "cat"])
    assert "Main reason: <b>object 2 (cat): area 0.0020% of the image (adds 0.60)" in page
    assert "e-0" not in page and "e+0" not in page  # no scientific notation anywhere
    assert '<td class="bad main">0.0020%</td>' in page  # the tiny area cell is marked
    # Object 1's mild predicted IoU is its own main reason, but it neither is flagged nor
    # sets the image's score: not outlined.
    assert "<td>0.86</td>" in page and 'class="main">0.86' not in page
    assert "<td>120,000</td>" in page  # pixel counts as integers
    # A clean image says so rather than showing a bare score.
    clean = [AnnotatedObject(1, 1, big, (), 0.97)]
    [c] = rank_images([assess_image("clean", (400, 500), clean)])
    assert "Main reason: <b>nothing suspicious</b>" in report_html([c], {"clean": None})
    # The overview table links every shown image to its section.
    assert '<a href="#rank-1">why</a>' in page
    # When an image-level rule set the score, the worst object's trouble is still named.
    [f] = rank_images([assess_image("f", (400, 500), objs, status="flagged")])
    page = report_html([f], {"f": None}, ["background", "cat"])
    assert "Main reason: <b>flagged by an annotator</b>" in page
    assert "Worst object: object 2 (cat): area 0.0020% of the image (adds 0.60)" in page


def test_ground_truth_instances_are_outlined_apart():
    from napari_samlabel.curate.report import GT_OUTLINE

    image = np.full(SHAPE + (3,), 128, dtype=np.uint8)
    sem = np.zeros(SHAPE, dtype=np.uint8)
    sem[30:70, 20:100] = 12  # two dogs side by side: one class region
    inst = np.zeros(SHAPE, dtype=np.uint8)
    inst[30:70, 20:60] = 1
    inst[30:70, 60:100] = 2
    by_class = render_overlay(image, [], max_side=160, gt=sem)
    by_instance = render_overlay(image, [], max_side=160, gt=sem, gt_instance=inst)
    assert tuple(by_class[50, 59]) == (128, 128, 128)  # no line between the dogs
    assert tuple(by_instance[50, 59]) == GT_OUTLINE and tuple(by_instance[50, 60]) == GT_OUTLINE
    assert tuple(by_instance[50, 20]) == GT_OUTLINE  # the outer edge is still drawn

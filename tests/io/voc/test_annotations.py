"""Tests of the VOC text files: image sets and the layout parts of Annotations XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc.annotations import (
    XmlPart,
    parse_annotation,
    read_image_set,
)
from tests.io.voc.scenes import (
    P_HAND,
    P_PERSON,
    P_PERSON_HEAD,
    PART_CLASSES,
)


def test_read_image_set_takes_first_words_and_names_missing_files(tmp_path: Path):
    f = tmp_path / "failures.txt"
    f.write_text("2008_000003\n\n# a comment\n2008_000007  1\n2008_000009 -1  # trailing\n")
    assert read_image_set(f) == ["2008_000003", "2008_000007", "2008_000009"]
    with pytest.raises(VocError, match=r"image list .*nope\.txt not found"):
        read_image_set(tmp_path / "nope.txt")


VOC_LAYOUT_XML = """<annotation>
	<filename>2007_000129.jpg</filename>
	<size><width>80</width><height>60</height><depth>3</depth></size>
	<object>
		<name>person</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>0</difficult>
		<bndbox><xmin>10</xmin><ymin>5</ymin><xmax>40</xmax><ymax>58</ymax></bndbox>
		<part>
			<name>head</name>
			<bndbox><xmin>20</xmin><ymin>5</ymin><xmax>30</xmax><ymax>14</ymax></bndbox>
		</part>
		<part>
			<name>hand</name>
			<bndbox><xmin>10.0</xmin><ymin>30</ymin><xmax>14</xmax><ymax>35</ymax></bndbox>
		</part>
		<part>
			<name>foot</name>
			<bndbox><xmin>12</xmin><ymin>52</ymin><xmax>18</xmax><ymax>58</ymax></bndbox>
		</part>
	</object>
</annotation>
"""


def test_reader_takes_voc_layout_parts_and_keeps_the_objects_box(tmp_path: Path):
    path = tmp_path / "layout.xml"
    path.write_text(VOC_LAYOUT_XML)
    size, [person] = parse_annotation(path, PART_CLASSES)
    assert size == (60, 80) and person.class_id == P_PERSON
    assert person.bbox == (10, 5, 40, 58)
    assert person.parts == (XmlPart("head", P_PERSON_HEAD, (20, 5, 30, 14)),
                            XmlPart("hand", P_HAND, (10, 30, 14, 35)),
                            XmlPart("foot", None, (12, 52, 18, 58)))  # not listed
    path.write_text(VOC_LAYOUT_XML.replace("<xmax>30</xmax>", "<xmax>wide</xmax>"))
    with pytest.raises(VocError, match=r"object 1: part 1: <xmax> is 'wide'"):
        parse_annotation(path, PART_CLASSES)

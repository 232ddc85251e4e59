"""The queue files: CSV rows per object in rank order, JSON round trip, failures.txt."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Point
from napari_samlabel.curate.assessment import assess_image, rank_images
from napari_samlabel.curate.queue import (
    CSV_COLUMNS,
    QUEUE_FORMAT,
    read_queue,
    write_queue,
)
from napari_samlabel.curate.signals import Thresholds

SHAPE = (60, 80)


def obj(oid, cls, rows, cols, score=0.97, prompts=()):
    m = np.zeros(SHAPE, dtype=bool)
    m[rows, cols] = True
    return AnnotatedObject(oid, cls, m, prompts, score)


@pytest.fixture()
def ranked():
    good = obj(1, 15, slice(10, 30), slice(10, 40), prompts=(Point((20, 20)),))
    bad = obj(2, 12, slice(35, 55), slice(40, 70), score=0.4,
              prompts=(Point((5, 5)),))  # positive click outside its mask
    return rank_images([
        assess_image("img_ok", SHAPE, [good]),
        assess_image("img_bad", SHAPE, [good, bad]),
        assess_image("img_empty", SHAPE, []),
    ])


def test_write_queue_files(tmp_path, ranked):
    paths = write_queue(tmp_path / "out", ranked, meta={"source": "synthetic"},
                        thresholds=Thresholds(low_iou=0.7))
    assert {p.name for p in paths.values()} == {"queue.json", "queue.csv", "failures.txt"}

    # failures.txt: flagged images only, worst first, one id per line. Issue 16: an image
    # without objects (0.5) now outranks one whose broken object is one of its two classes
    # (about 1/3: the class-averaged object scores).
    assert paths["failures"].read_text() == "img_empty\nimg_bad\n"

    rows = list(csv.DictReader(paths["csv"].open(newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["image_id"] for r in rows] == ["img_empty", "img_bad", "img_bad", "img_ok"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 2, 3]
    by_obj = {(r["image_id"], r["object_id"]): r for r in rows}
    bad = by_obj[("img_bad", "2")]
    assert bad["class_name"] == "dog"
    assert set(bad["object_flags"].split(";")) >= {"low_iou", "positive_outside"}
    assert float(bad["predicted_iou"]) == pytest.approx(0.4)
    assert float(bad["positive_outside"]) == 1.0
    assert by_obj[("img_empty", "")]["image_flags"] == "no_objects"
    assert by_obj[("img_ok", "1")]["object_flags"] == ""

    data = read_queue(tmp_path / "out")
    assert data["format"] == QUEUE_FORMAT and data["source"] == "synthetic"
    assert data["thresholds"]["low_iou"] == 0.7
    assert [i["image_id"] for i in data["images"]] == ["img_empty", "img_bad", "img_ok"]
    assert data["summary"]["flagged_images"] == 2
    first = data["images"][0]
    assert first["rank"] == 1 and first["score"] == pytest.approx(ranked[0].score, abs=1e-6)
    second = data["images"][1]
    assert {o["class_name"] for o in second["objects"]} == {"person", "dog"}


def test_rewrite_replaces_files(tmp_path, ranked):
    write_queue(tmp_path, ranked)
    write_queue(tmp_path, ranked[2:])  # only the clean image
    assert (tmp_path / "failures.txt").read_text() == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_read_queue_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_queue(tmp_path)
    (tmp_path / "queue.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        read_queue(tmp_path)
    (tmp_path / "queue.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not a curation queue"):
        read_queue(tmp_path)
    (tmp_path / "queue.json").write_text(json.dumps({"format": QUEUE_FORMAT,
                                                     "schema_version": 99, "images": []}))
    with pytest.raises(ValueError, match="newer"):
        read_queue(tmp_path / "queue.json")


def test_queue_files_carry_the_main_reason(tmp_path, ranked):
    paths = write_queue(tmp_path, ranked)
    rows = list(csv.DictReader(paths["csv"].open(newline="")))
    by_obj = {(r["image_id"], r["object_id"]): r for r in rows}
    bad = by_obj[("img_bad", "2")]
    # The positive click outside the mask adds most (0.9 x 1) to object 2's score.
    assert bad["object_reason"] == "positive_outside"
    assert bad["main_reason"] == "2:positive_outside"
    assert by_obj[("img_empty", "")]["main_reason"] == "no_objects"
    assert by_obj[("img_ok", "1")]["main_reason"] == ""
    data = read_queue(tmp_path)
    first = next(i for i in data["images"] if i["image_id"] == "img_bad")
    assert first["main_reason"] == {"object_id": 2, "signal": "positive_outside", "value": 1.0,
                                    "contribution": 0.9}
    worst = next(o for o in first["objects"] if o["object_id"] == 2)
    assert worst["main_reason"]["signal"] == "positive_outside"
    assert "positive_outside" in data["reasons"]


def test_read_queue_accepts_the_previous_schema(tmp_path):
    (tmp_path / "queue.json").write_text(json.dumps({"format": QUEUE_FORMAT,
                                                     "schema_version": 1, "images": []}))
    assert read_queue(tmp_path)["schema_version"] == 1

"""The oracle built from a VOC folder: pseudo-label -> VOC export -> evaluate, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.evaluate.metrics import EvaluationError, evaluate_dirs
from napari_samlabel.io.voc.labelpng import write_label_png
from napari_samlabel.io.weak import read_weak_labels
from napari_samlabel.pseudo.pipeline import pseudo_label
from napari_samlabel.testing.oracle import oracle_from_voc
from tests.pseudo.test_pipeline import make_dataset


def test_points_file_through_the_whole_chain(tmp_path):
    """Images as JPEG (lossy: the oracle must key on the loaded pixels), GT as VOC PNGs,
    weak labels as a "What's the point" JSON (x, y swapped relative to row, col)."""
    img_dir, weak, gts = make_dataset(tmp_path / "src", n=3)
    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    points = {}
    for image_id, (sem, inst) in gts.items():
        Image.open(img_dir / f"{image_id}.png").save(voc / "JPEGImages" / f"{image_id}.jpg",
                                                     quality=80)
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", sem)
        write_label_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
        points[image_id] = [{"x": o.points[0].rc[1], "y": o.points[0].rc[0],
                             "cls": o.class_id, "rank": 1} for o in weak[image_id].objects]
    (tmp_path / "points.json").write_text(json.dumps(points))
    weak_read = read_weak_labels(tmp_path / "points.json", "points")
    engine = oracle_from_voc(voc, overlap=2)
    report = pseudo_label(voc / "JPEGImages", weak_read, tmp_path / "out", engine)
    assert report.failed == {} and len(report.done) == 3
    scores = evaluate_dirs(report.voc_root, voc)
    assert scores.miou >= 0.95
    # the per-image folder evaluates the same as the exported VOC tree
    assert evaluate_dirs(tmp_path / "out", voc).miou == pytest.approx(scores.miou)
    assert np.isfinite(scores.pixel_accuracy)


def test_oracle_from_voc_names_missing_files(tmp_path):
    with pytest.raises(EvaluationError, match="SegmentationClass"):
        oracle_from_voc(tmp_path)
    write_label_png(tmp_path / "SegmentationClass" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(EvaluationError, match="a.jpg"):
        oracle_from_voc(tmp_path)

"""Simulated weak labels: where they fall, and that the readers read them back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import Box
from napari_samlabel.evaluate.simulate import gt_objects, simulate_weak_dir, simulate_weak_labels
from napari_samlabel.io.weak import read_weak_labels


@pytest.fixture()
def label_map() -> np.ndarray:
    """Two cats (8) as separate components, a person (15) ring, a void border, background."""
    lab = np.zeros((60, 80), np.uint8)
    lab[5:25, 5:30] = 8
    lab[35:55, 50:75] = 8
    rr, cc = np.mgrid[:60, :80]
    ring = (np.hypot(rr - 40, cc - 20) < 15) & (np.hypot(rr - 40, cc - 20) > 7)
    lab[ring] = 15
    lab[24, 5:30] = 255  # a void band along the first cat's border
    lab[0:2, 70:72] = 12  # a 4-pixel sliver, below min_area
    return lab


def test_gt_objects_components_and_instances(label_map):
    objs = gt_objects(label_map)
    assert [(o.class_id, o.rank) for o in objs] == [(8, 1), (8, 2), (15, 1)]
    assert objs[0].bbox == (35, 50, 54, 74)  # rank 1 is the larger cat
    assert objs[1].bbox == (5, 5, 23, 29)
    inst = np.zeros_like(label_map)
    inst[label_map == 8] = 1
    inst[35:55, 50:75] = 2
    inst[label_map == 15] = 3
    inst[24, 5:30] = 255
    objs = gt_objects(label_map, inst)
    assert [(o.class_id, o.rank) for o in objs] == [(8, 1), (8, 2), (15, 1)]
    assert objs[0].bbox == (5, 5, 23, 29)  # instance order now
    merged = np.where(label_map == 8, 1, inst)  # both cats one instance
    assert [o.class_id for o in gt_objects(label_map, merged)] == [8, 15]


def test_points_lie_inside_their_objects(label_map):
    for mode in ("center", "random"):
        w = simulate_weak_labels(label_map, "points", point_mode=mode, background_points=3,
                                 rng=np.random.default_rng(5))
        assert [o.class_id for o in w.objects] == [8, 8, 15]
        for o in w.objects:
            (p,) = o.points
            assert label_map[int(p.rc[0]), int(p.rc[1])] == o.class_id
        assert len(w.background) == 3
        assert all(label_map[int(p.rc[0]), int(p.rc[1])] == 0 for p in w.background)
    centre = simulate_weak_labels(label_map, "points")
    assert centre.objects[0].points[0].rc == (44.0, 62.0)  # middle of rows 35-54, cols 50-74


def test_random_points_follow_the_seed(label_map):
    a = simulate_weak_labels(label_map, "points", point_mode="random",
                             rng=np.random.default_rng(1))
    b = simulate_weak_labels(label_map, "points", point_mode="random",
                             rng=np.random.default_rng(1))
    c = simulate_weak_labels(label_map, "points", point_mode="random",
                             rng=np.random.default_rng(2))
    assert a.objects == b.objects and a.objects != c.objects


def test_scribbles_follow_skeletons_inside_objects(label_map):
    w = simulate_weak_labels(label_map, "scribbles", step=3)
    assert w.class_ids == [8, 15] and len(w.background) >= 1
    for o in w.objects:
        pix = np.concatenate([s.pixels(label_map.shape) for s in o.scribbles])
        assert np.mean(label_map[pix[:, 0], pix[:, 1]] == o.class_id) >= 0.95
    bg = np.concatenate([s.pixels(label_map.shape) for s in w.background])
    assert np.mean(label_map[bg[:, 0], bg[:, 1]] == 0) >= 0.95
    assert simulate_weak_labels(label_map, "scribbles", background=False).background == ()


def test_boxes_are_tight(label_map):
    w = simulate_weak_labels(label_map, "boxes")
    assert [o.boxes for o in w.objects] == [
        (Box((35.0, 50.0), (54.0, 74.0)),), (Box((5.0, 5.0), (23.0, 29.0)),),
        (Box((26.0, 6.0), (54.0, 34.0)),)]


def test_bad_arguments(label_map):
    with pytest.raises(ValueError, match="cannot simulate"):
        simulate_weak_labels(label_map, "cams")
    with pytest.raises(ValueError, match="point_mode"):
        simulate_weak_labels(label_map, "points", point_mode="edge")


def _write_gt(folder, maps):
    folder.mkdir(parents=True)
    for name, arr in maps.items():
        Image.fromarray(arr, mode="L").save(folder / f"{name}.png")


@pytest.mark.parametrize("kind", ["points", "scribbles", "boxes"])
def test_round_trip_through_the_readers(tmp_path, label_map, kind):
    second = np.zeros((30, 40), np.uint8)
    second[10:20, 10:30] = 12
    _write_gt(tmp_path / "voc" / "SegmentationClass", {"a": label_map, "b": second})
    calls = []
    summary = simulate_weak_dir(tmp_path / "voc", kind, tmp_path / "out", seed=3,
                                progress=lambda d, t, m: calls.append((d, t, m)))
    assert summary["images"] == 2 and summary["objects"] == 4
    assert calls[-1][:2] == (2, 2)
    back = read_weak_labels(tmp_path / "out", kind)
    assert sorted(back) == ["a", "b"]
    for image_id, arr in (("a", label_map), ("b", second)):
        direct = simulate_weak_labels(arr, kind, image_id=image_id)
        assert back[image_id].objects == direct.objects  # exactly what was simulated
        assert back[image_id].background == direct.background


def test_dir_is_reproducible_and_uses_instances(tmp_path, label_map):
    _write_gt(tmp_path / "voc" / "SegmentationClass", {"a": label_map})
    inst = np.zeros_like(label_map)
    inst[label_map == 8] = 1  # both cats are one instance
    inst[label_map == 15] = 2
    _write_gt(tmp_path / "voc" / "SegmentationObject", {"a": inst})
    for out in ("o1", "o2"):
        simulate_weak_dir(tmp_path / "voc", "points", tmp_path / out, seed=7,
                          point_mode="random")
    one = json.loads((tmp_path / "o1" / "points.json").read_text())
    assert one == json.loads((tmp_path / "o2" / "points.json").read_text())
    assert [(r["cls"], r["rank"]) for r in one["a"]] == [(8, 1), (15, 1)]
    boxes = simulate_weak_dir(tmp_path / "voc", "boxes", tmp_path / "b",
                              classes=ClassTable.voc())
    doc = json.loads((tmp_path / "b" / "a.json").read_text())
    assert boxes["objects"] == 2 and doc["objects"][0] == {"name": "cat",
                                                          "bbox_xyxy": [6, 6, 75, 55]}


def test_dir_errors(tmp_path):
    from napari_samlabel.evaluate.metrics import EvaluationError

    with pytest.raises(EvaluationError, match="not found"):
        simulate_weak_dir(tmp_path / "nope", "points", tmp_path / "o")
    _write_gt(tmp_path / "gt", {"a": np.full((5, 5), 40, np.uint8)})
    with pytest.raises(EvaluationError, match=r"a.png: values \[40\] outside the 21 classes"):
        simulate_weak_dir(tmp_path / "gt", "boxes", tmp_path / "o")

"""The simulated annotator: the clicker's rules, the oracle, proposals, resume, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.annotate.effort import (
    DatasetError,
    GroundTruth,
    GroundTruthObject,
    Settings,
    clicker,
    load_costs,
    open_dataset,
    simulate_annotation,
    simulate_image,
)
from napari_samlabel.annotate.effort.report import CostError, image_seconds
from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.io.voc.labelpng import write_label_png
from napari_samlabel.testing.fakes import DiskEngine, OracleEngine

CLASSES = ClassTable.voc()


def _scene():
    """64 x 64: a bar (rows 20-30, cols 2-61, class 1) and a square (rows 40-49, class 2)."""
    img = np.full((64, 64, 3), 10, np.uint8)
    inst = np.zeros((64, 64), np.uint8)
    inst[20:31, 2:62] = 1
    inst[40:50, 10:20] = 2
    sem = np.where(inst == 1, 1, np.where(inst == 2, 2, 0)).astype(np.uint8)
    img[inst == 1] = 200
    img[inst == 2] = 120
    return img, sem, inst


def _gt(sem, inst, image_id="a"):
    objs = tuple(GroundTruthObject(k, int(sem[inst == k][0]), inst == k)
                 for k in np.unique(inst) if k)
    return GroundTruth(image_id, sem.shape, objs, np.zeros(sem.shape, bool))


def _brute_depth(region):
    """Distance of each region pixel to the nearest non-region pixel, by brute force."""
    h, w = region.shape
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded) - 1
    out = np.zeros(region.shape)
    for r, c in np.argwhere(region):
        out[r, c] = np.sqrt(((outside - (r, c)) ** 2).sum(axis=1)).min()
    return out


# -- the clicker's rules ------------------------------------------------------------------------

def test_deepest_point_is_first_maximum_in_row_major_order():
    region = np.zeros((20, 30), bool)
    region[5:16, 3:28] = True  # 11 rows: depth 6 on row 10 only, cols 8..22
    assert clicker.deepest_point(region) == (10, 8)
    d = clicker.depth(region)
    np.testing.assert_allclose(d, _brute_depth(region))


def test_image_border_counts_as_outside():
    region = np.zeros((10, 10), bool)
    region[:, :5] = True  # touches the top, bottom and left border
    assert clicker.depth(region)[0, 0] == 1.0
    # depth 3 on rows 2-7 of col 2 (3 px to the image's top, bottom and left edge)
    assert clicker.depth(region)[2, 2] == 3.0
    assert clicker.deepest_point(region) == (2, 2)


def test_largest_error_prefers_bigger_region_and_signs():
    target = np.zeros((30, 30), bool)
    target[5:25, 5:25] = True
    mask = target.copy()
    mask[5:10, 5:25] = False            # 100 missed pixels
    mask[26:30, 0:30] = True            # 120 false pixels
    region = clicker.largest_error(mask, target)
    assert region is not None and not region.missed and region.area == 120
    p = clicker.next_prompt(mask, target, "points")
    assert isinstance(p, Point) and not p.positive and p.rc == (27.0, 1.0)  # depth 2, first


def test_void_pixels_are_no_errors_and_do_not_count_for_iou():
    target = np.zeros((10, 10), bool)
    target[2:8, 2:8] = True
    void = np.zeros_like(target)
    void[2:8, 2] = True
    mask = target & ~void
    assert clicker.iou(mask, target, void) == 1.0
    assert clicker.largest_error(mask, target, void) is None


def test_first_prompts_per_kind():
    target = np.zeros((40, 40), bool)
    target[10:21, 5:36] = True
    (box,) = clicker.first_prompts(target, "box")
    assert box == Box((10.0, 5.0), (20.0, 35.0))
    both = clicker.first_prompts(target, "box+points")
    assert both[0] == box and both[1] == Point((15.0, 10.0), True)
    (stroke,) = clicker.first_prompts(target, "scribble")
    assert isinstance(stroke, Scribble) and stroke.positive
    # along the bar's axis, staying at least STROKE_MARGIN inside it
    np.testing.assert_array_equal(stroke.path[:, 0], [15, 15, 15])
    assert stroke.path[0, 1] == 6 and stroke.path[2, 1] == 34
    with pytest.raises(ValueError, match="unknown prompt kind"):
        clicker.first_prompts(target, "lasso")


# -- through the session ------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "given"), [("points", 1), ("box", 1), ("scribble", 1),
                                             ("box+points", 2)])
def test_oracle_needs_one_interaction_per_object(kind, given):
    img, sem, inst = _scene()
    oracle = OracleEngine.from_pairs([(img, sem, inst)])
    res = simulate_image(oracle, img, _gt(sem, inst), Settings("oracle", kind), CLASSES)
    # box+points always gives both, but the box alone already reaches the target
    assert [o.interactions for o in res.objects] == [given, given]
    assert all(o.noc == {"0.85": 1, "0.90": 1} and o.final_iou == 1.0 for o in res.objects)
    assert res.decodes == 2 * given and len(oracle.calls) == 2 * given


def test_disk_engine_clicks_follow_the_rule_step_by_step():
    """Radius-5 disks on an 11-row bar: each click lands 11 columns right of the last."""
    img, sem, inst = _scene()
    engine = DiskEngine(radius=5.0)
    gt = _gt(sem, inst)
    res = simulate_image(engine, img, GroundTruth("a", gt.shape, gt.objects[:1], gt.void),
                         Settings("disk", max_clicks=5), CLASSES)
    (bar,) = res.objects
    assert [(p["rc"], p["positive"]) for p in bar.prompts] == [
        ([25.0, 7.0], True), ([25.0, 18.0], True), ([25.0, 29.0], True),
        ([25.0, 40.0], True), ([25.0, 51.0], True)]
    # the session fed all clicks so far and the previous logits back each time
    assert [len(c.point_coords) for c in engine.calls] == [1, 2, 3, 4, 5]
    assert engine.calls[0].mask_input is None
    assert all(c.mask_input is not None for c in engine.calls[1:])
    assert np.all(np.diff(bar.ious) > 0) and bar.final_iou < 0.85
    assert bar.noc == {"0.85": None, "0.90": None}  # a failure at both targets


def test_disk_engine_negative_click_at_the_deepest_false_pixel():
    """A disk larger than a 4 x 4 object: the second click is negative, deepest false pixel."""
    img = np.zeros((64, 64, 3), np.uint8)
    target = np.zeros((64, 64), bool)
    target[30:34, 30:34] = True
    gt = GroundTruth("b", (64, 64), (GroundTruthObject(1, 1, target),),
                     np.zeros((64, 64), bool))
    res = simulate_image(DiskEngine(radius=6.0), img, gt, Settings("disk", max_clicks=2),
                         CLASSES)
    first, second = res.objects[0].prompts
    assert first == {"type": "point", "rc": [31.0, 31.0], "positive": True}
    rr, cc = np.ogrid[:64, :64]
    false = ((rr - 31) ** 2 + (cc - 31) ** 2 <= 36) & ~target
    d = _brute_depth(false)
    expected = np.unravel_index(int(np.argmax(d)), d.shape)
    assert second["positive"] is False
    assert tuple(second["rc"]) == (float(expected[0]), float(expected[1]))


class _FakeConcepts:
    """Proposals: the exact bar, a wrong blob, and the square shifted by 3 columns."""

    name = "fake"

    def __init__(self, inst):
        self.inst = inst
        self.calls = 0

    def propose(self, engine, image, classes, progress=None):
        self.calls += 1
        blob = np.zeros(self.inst.shape, bool)
        blob[0:5, 0:5] = True
        shifted = np.roll(self.inst == 2, 3, axis=1)
        return [Candidate(self.inst == 1, 0.9, "text:aeroplane", class_id=1),
                Candidate(blob, 0.8, "text:bicycle", class_id=2),
                Candidate(shifted, 0.7, "text:bicycle", class_id=2)]


def test_proposals_are_decided_then_the_rest_clicked():
    img, sem, inst = _scene()
    oracle = OracleEngine.from_pairs([(img, sem, inst)])
    source = _FakeConcepts(inst)
    res = simulate_image(oracle, img, _gt(sem, inst), Settings("oracle", proposals="fake"),
                         CLASSES, source)
    assert (res.accepted, res.rejected) == (1, 2)
    bar, square = res.objects
    assert bar.source == "proposal:text:aeroplane" and bar.interactions == 0
    assert bar.noc == {"0.85": 0, "0.90": 0} and bar.class_choices == 0
    assert square.source == "clicks" and square.interactions == 1
    costs = load_costs(None)
    # 3 decisions + 1 click + the square's class choice
    assert image_seconds(res, costs) == pytest.approx(3 * 1.0 + 1.5 + 1.0)


# -- datasets, runs, resume ---------------------------------------------------------------------

def _voc(root: Path, scenes) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for image_id, (img, sem, inst) in scenes.items():
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.png")
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", sem)
        write_label_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
    return root


def test_run_writes_tables_and_resumes(tmp_path):
    img, sem, inst = _scene()
    img2 = img.copy()
    img2[0, 0] = 1  # another image (the oracle knows images by content)
    root = _voc(tmp_path / "data", {"a": (img, sem, inst), "b": (img2, sem, inst)})
    dataset = open_dataset(root)
    oracle = OracleEngine.from_pairs([(img, sem, inst), (img2, sem, inst)])
    out = tmp_path / "out"
    settings = Settings("fake-oracle", "points", max_clicks=3)
    rep = simulate_annotation(dataset, oracle, out, settings, ids=["a"])
    assert rep.done == ["a"] and not rep.failed
    calls = len(oracle.calls)
    rep = simulate_annotation(dataset, oracle, out, settings)
    assert rep.skipped == ["a"] and rep.done == ["b"]
    assert len(oracle.calls) == 2 * calls  # only b was decoded again
    assert rep.summary["objects"] == 4 and rep.summary["NoC@90"] == 1.0
    run = rep.folder
    assert (run / "objects.csv").read_text().count("\n") == 5
    assert json.loads((run / "summary.json").read_text())["curve"] == [0.0, 1.0, 1.0, 1.0]
    # another prompt kind into the same folder: a second row and line
    simulate_annotation(dataset, oracle, out, Settings("fake-oracle", "box", max_clicks=3))
    table = (out / "summary.md").read_text()
    assert table.count("fake-oracle") == 2 and "| box |" in table
    with Image.open(out / "curve.png") as png:
        assert png.size[0] == 720


def test_a_half_written_result_is_redone(tmp_path):
    img, sem, inst = _scene()
    root = _voc(tmp_path / "data", {"a": (img, sem, inst)})
    oracle = OracleEngine.from_pairs([(img, sem, inst)])
    settings = Settings("fake-oracle")
    rep = simulate_annotation(open_dataset(root), oracle, tmp_path / "out", settings)
    (rep.folder / "images" / "a.json").write_text('{"image_id": "a", "obj')
    rep = simulate_annotation(open_dataset(root), oracle, tmp_path / "out", settings)
    assert rep.done == ["a"] and rep.skipped == []


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a VOC dataset"):
        open_dataset(tmp_path / "empty")
    costs = tmp_path / "costs.yaml"
    costs.write_text("click: 2\nhover: 1\n")
    with pytest.raises(CostError, match="unknown action 'hover'"):
        load_costs(costs)
    costs.write_text("click: 2.5\n")
    assert load_costs(costs)["click"] == 2.5


def test_on_a_cluster_each_image_is_a_task_with_the_local_result(tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from napari_samlabel.pseudo.engines import EngineSpec

    img, sem, inst = _scene()
    root = _voc(tmp_path / "data", {"a": (img, sem, inst), "b": (img, sem, inst)})
    (root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "b.png").write_bytes(b"broken")
    dataset = open_dataset(root)
    spec = EngineSpec.fake("disk", radius=5)
    settings = Settings(spec.model_id(), max_clicks=4)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        rep = simulate_annotation(dataset, spec, tmp_path / "cl", settings,
                                  scheduler=cluster.scheduler_address)
    assert rep.done == ["a"] and list(rep.failed) == ["b"]
    assert "cannot read image" in rep.failed["b"]
    local = simulate_annotation(dataset, spec, tmp_path / "local", settings, ids=["a"])
    assert local.summary["mIoU@3"] == rep.summary["mIoU@3"] > 0


def test_a_project_with_accepted_objects_is_ground_truth(tmp_path):
    from napari_samlabel.io.project import Project

    img, sem, inst = _scene()
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "p.png")
    Image.fromarray(img[::-1].copy()).save(tmp_path / "imgs" / "q.png")  # not annotated
    project = Project.create(tmp_path / "proj", tmp_path / "imgs")
    doc = project.load_document("p", class_id=1)
    for k, cls in ((1, 1), (2, 2)):
        doc.set_current_class(cls)
        prompts = (Point((25.0, 30.0)),)
        doc.set_prompts(prompts)
        doc.set_prediction(prompts, inst == k, 1.0, None)
        doc.accept()
    project.save_document(doc)
    dataset = open_dataset(tmp_path / "proj")
    assert dataset.kind == "project" and dataset.ids == ["p"]
    oracle = OracleEngine.from_pairs([(img, sem, inst)])
    rep = simulate_annotation(dataset, oracle, tmp_path / "out", Settings("fake-oracle"))
    assert rep.summary["objects"] == 2 and rep.summary["NoC@85"] == 1.0
    # the project is only read
    assert Project.open(tmp_path / "proj").read_objects("q") == []


def test_a_class_outside_the_class_list_fails_its_image_only(tmp_path):
    img, sem, inst = _scene()
    bad = sem.copy()
    bad[inst == 2] = 40  # VOC has 21 classes
    img2 = img.copy()
    img2[0, 0] = 1
    root = _voc(tmp_path / "data", {"a": (img, sem, inst), "b": (img2, bad, inst)})
    oracle = OracleEngine.from_pairs([(img, sem, inst), (img2, bad, inst)])
    rep = simulate_annotation(open_dataset(root), oracle, tmp_path / "out",
                              Settings("fake-oracle"))
    assert rep.done == ["a"] and "class index 40 is outside" in rep.failed["b"]


def test_an_interrupted_run_resumes_after_the_last_finished_image(tmp_path):
    img, sem, inst = _scene()
    img2 = img.copy()
    img2[0, 0] = 1
    root = _voc(tmp_path / "data", {"a": (img, sem, inst), "b": (img2, sem, inst)})
    oracle = OracleEngine.from_pairs([(img, sem, inst), (img2, sem, inst)])
    settings = Settings("fake-oracle")

    def kill(done, total, image_id):  # the process dies right after the first image
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_annotation(open_dataset(root), oracle, tmp_path / "out", settings,
                            progress=kill)
    rep = simulate_annotation(open_dataset(root), oracle, tmp_path / "out", settings)
    assert rep.skipped == ["a"] and rep.done == ["b"] and rep.summary["objects"] == 4


class _ConceptOracle(OracleEngine):
    """A concept engine for tests: ``find_all("aeroplane")`` finds the bar (no class given),
    any other phrase nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.phrases = []

    def find_all(self, text=None, exemplars=(), negatives=(), threshold=0.5):
        self.phrases.append(text)
        if text != "aeroplane":
            return []
        return [Candidate(self._instances == 1, 0.9, f"text:{text}")]


def test_concept_proposals_ask_every_class_name_and_count_decisions():
    from napari_samlabel.annotate.effort import ConceptProposals, SimulationError
    from napari_samlabel.engine.concept_source import class_phrase
    from napari_samlabel.engine.protocol import ConceptEngine

    img, sem, inst = _scene()
    engine = _ConceptOracle.from_pairs([(img, sem, inst)])
    assert isinstance(engine, ConceptEngine)
    res = simulate_image(engine, img, _gt(sem, inst), Settings("c", proposals="concept"),
                         CLASSES, ConceptProposals())
    # every class asked by its phrase, as the Proposals tab asks (pottedplant -> potted plant)
    assert engine.phrases == [class_phrase(CLASSES, i) for i in range(1, len(CLASSES.names))]
    assert "potted plant" in engine.phrases
    assert (res.accepted, res.rejected) == (1, 0)
    bar, square = res.objects
    # the candidate got its phrase's class, so accepting it needs no class choice
    assert bar.source == "proposal:text:aeroplane" and bar.class_choices == 0
    assert square.interactions == 1
    # a points-and-boxes model (the disk fake: no find_all) cannot give concept proposals
    with pytest.raises(SimulationError, match="cannot find concepts"):
        simulate_image(DiskEngine(), img, _gt(sem, inst),
                       Settings("o", proposals="concept"), CLASSES, ConceptProposals())

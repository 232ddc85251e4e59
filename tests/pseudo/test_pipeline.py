"""Batch pseudo-labelling: composition, resuming, failures, VOC export.

The synthetic dataset (helpers below, reused by test_distributed.py): three images with
classes cat (8), dog (12) and person (15); the dog overlaps the cat, the person touches both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble
from napari_samlabel.engine.policies import get_policy
from napari_samlabel.evaluate.metrics import ConfusionMatrix
from napari_samlabel.io.images import load_image
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.io.weak import WeakLabels
from napari_samlabel.pseudo.pipeline import label_image, pseudo_label
from napari_samlabel.testing.fakes import DiskEngine, FakeEngine, OracleEngine

SHAPE = (64, 80)
CAT, DOG, PERSON = 8, 12, 15


def synth_gt(k: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, tuple]]]:
    """Semantic + instance maps and ``(instance, class, (r0, c0, r1, c1))`` boxes."""
    sem = np.zeros(SHAPE, np.uint8)
    inst = np.zeros(SHAPE, np.uint8)
    rr, cc = np.ogrid[:SHAPE[0], :SHAPE[1]]
    cat = ((rr - 30) / 18.0) ** 2 + ((cc - (24 + k)) / 16.0) ** 2 <= 1
    sem[cat], inst[cat] = CAT, 1
    dog = np.zeros(SHAPE, bool)
    dog[20 + k:50, 36:60] = True  # drawn over the cat's right side
    sem[dog], inst[dog] = DOG, 2
    person = np.zeros(SHAPE, bool)
    person[8:56, 62:74] = True
    sem[person], inst[person] = PERSON, 3
    boxes = []
    for i, c in ((1, CAT), (2, DOG), (3, PERSON)):
        rows, cols = np.nonzero(inst == i)
        boxes.append((i, c, (rows.min(), cols.min(), rows.max(), cols.max())))
    return sem, inst, boxes


def synth_weak(k: int, kind: str) -> WeakLabels:
    sem, inst, boxes = synth_gt(k)
    objects = []
    for i, c, (r0, c0, r1, c1) in boxes:
        rows, cols = np.nonzero(inst == i)
        centre = (float(np.median(rows)), float(np.median(cols)))
        if kind == "boxes":
            prompts: tuple = (Box((r0, c0), (r1, c1)),)
        elif kind == "points":
            prompts = (Point(centre),)
        else:
            r = centre[0]
            row_cols = cols[rows == int(r)]
            prompts = (Scribble(np.array([[r, row_cols.min() + 2], [r, row_cols.max() - 2]])),)
        objects.append(ObjectPrompts(i, c, prompts))
    background = ()
    if kind == "scribbles":
        background = (Scribble(np.array([[60, 2], [60, 77]]), positive=False),)
    return WeakLabels(f"img{k}", kind, tuple(objects), background, "synthetic", SHAPE)


def make_dataset(root: Path, n: int = 3, kind: str = "points"):
    """Write ``n`` PNG images; return ``(image_dir, weak, gts)``."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    weak, gts = {}, {}
    rng = np.random.default_rng(0)
    palette = {0: (30, 40, 50), CAT: (200, 120, 40), DOG: (90, 200, 90), PERSON: (220, 60, 160)}
    for k in range(n):
        sem, inst, _ = synth_gt(k)
        rgb = np.zeros(SHAPE + (3,), np.uint8)
        for c, col in palette.items():
            rgb[sem == c] = col
        rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(img_dir / f"img{k}.png")
        weak[f"img{k}"] = synth_weak(k, kind)
        gts[f"img{k}"] = (sem, inst)
    return img_dir, weak, gts


def oracle_for(img_dir: Path, gts, overlap: int = 2) -> OracleEngine:
    return OracleEngine.from_pairs(
        [(load_image(img_dir / f"{i}.png"), sem, inst) for i, (sem, inst) in gts.items()],
        overlap=overlap)


def miou(out: Path, gts) -> float:
    cm = ConfusionMatrix(21)
    for image_id, (sem, _) in gts.items():
        cm.update(read_label_png(out / "SegmentationClass" / f"{image_id}.png"), sem)
    return cm.scores().miou


@pytest.mark.parametrize("kind", ["points", "boxes", "scribbles"])
def test_oracle_pseudo_labels_match_ground_truth(tmp_path, kind):
    img_dir, weak, gts = make_dataset(tmp_path, kind=kind)
    engine = oracle_for(img_dir, gts, overlap=2)
    report = pseudo_label(img_dir, weak, tmp_path / "out", engine, kind=kind)
    assert report.failed == {} and sorted(report.done) == sorted(gts)
    score = miou(tmp_path / "out", gts)
    assert score >= 0.95, f"{kind}: mIoU {score:.3f}"
    # overlaps happened (grown masks of touching objects) and were resolved by the rule
    rec = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())
    assert sum(o["mask_pixels"] for o in rec["objects"]) > sum(o["pixels"] for o in rec["objects"])


def test_class_mixup_is_caught_by_the_oracle_check(tmp_path):
    """The same check fails when classes are mixed up, so it can catch composition bugs."""
    img_dir, weak, gts = make_dataset(tmp_path, n=1)
    w = weak["img0"]
    swapped = WeakLabels("img0", "points", tuple(
        ObjectPrompts(o.object_id, {CAT: DOG, DOG: CAT}.get(o.class_id, o.class_id), o.prompts)
        for o in w.objects), (), "swapped", SHAPE)
    pseudo_label(img_dir, {"img0": swapped}, tmp_path / "out", oracle_for(img_dir, gts),
                 export=False)
    assert miou(tmp_path / "out", {"img0": gts["img0"]}) < 0.6


class ScoredBoxEngine(FakeEngine):
    """Whole mask: a 21 x 21 square around the first positive point; predicted IoU from its x."""

    def whole_mask(self, xy, labels, box, mask_input):
        out = np.zeros(self.shape, bool)
        x, y = np.rint(xy[labels == 1][0]).astype(int)
        out[max(y - 10, 0):y + 11, max(x - 10, 0):x + 11] = True
        self._x = x
        return out

    def predicted_ious(self, whole):
        return np.array([0.1, 0.2, 0.5 + self._x / 1000], np.float32)


@pytest.mark.parametrize("order", [(CAT, DOG), (DOG, CAT)])
def test_overlap_goes_to_higher_predicted_iou_whatever_the_order(order):
    eng = ScoredBoxEngine()
    left, right = Point((30, 30)), Point((30, 40))  # squares overlap on cols 30..40
    pts = {order[0]: left, order[1]: right}
    weak = WeakLabels("x", "points", tuple(ObjectPrompts(i, c, (pts[c],))
                                           for i, c in enumerate(order, 1)))
    sem, inst, recs = label_image(eng, np.zeros(SHAPE + (3,), np.uint8), weak,
                                  get_policy("points", multimask_choice="whole"))
    # the right square has the higher predicted IoU: it owns the overlap
    assert sem[30, 35] == order[1] and sem[30, 22] == order[0] and sem[30, 48] == order[1]
    assert sem[0, 0] == 0  # unclaimed -> background
    assert {r["class_id"] for r in recs} == set(order)
    by_cls = {r["class_id"]: r for r in recs}
    assert by_cls[order[1]]["pixels"] == 21 * 21
    assert by_cls[order[0]]["pixels"] == 21 * 21 - 21 * 11


def test_ties_go_to_the_later_unit():
    eng = DiskEngine(radius=6)  # equal predicted IoUs for every unit
    weak = WeakLabels("x", "points", (ObjectPrompts(1, CAT, (Point((30, 30)),)),
                                      ObjectPrompts(2, DOG, (Point((30, 36)),))))
    sem, _, _ = label_image(eng, np.zeros(SHAPE + (3,), np.uint8), weak,
                            get_policy("points", multimask_choice="whole"))
    assert sem[30, 33] == DOG


def test_scribbles_policy_sends_other_classes_and_background_as_negatives(tmp_path):
    img_dir, weak, gts = make_dataset(tmp_path, n=1, kind="scribbles")
    eng = oracle_for(img_dir, gts)
    pseudo_label(img_dir, weak, tmp_path / "out", eng, kind="scribbles", export=False)
    first = eng.calls[0]  # the cat, first class
    assert (first.point_labels == 0).any()
    neg_xy = first.point_coords[first.point_labels == 0]
    # negatives: the background scribble (row 60) and dog/person scribble pixels
    rows = np.rint(neg_xy[:, 1]).astype(int)
    assert 60 in rows and len(set(rows)) >= 2
    sem, _, _ = synth_gt(0)
    for x, y in np.rint(neg_xy).astype(int):
        assert sem[y, x] != CAT


def test_rerun_skips_finished_images_and_redoes_changed_ones(tmp_path):
    img_dir, weak, gts = make_dataset(tmp_path)
    out = tmp_path / "out"
    eng = oracle_for(img_dir, gts)
    first = pseudo_label(img_dir, weak, out, eng)
    assert len(first.done) == 3 and eng.images_set == 3
    before = (out / "SegmentationClass" / "img1.png").stat().st_mtime_ns
    again = pseudo_label(img_dir, weak, out, eng)
    assert again.done == [] and sorted(again.skipped) == ["img0", "img1", "img2"]
    assert eng.images_set == 3  # nothing recomputed
    assert (out / "SegmentationClass" / "img1.png").stat().st_mtime_ns == before
    # an interrupted image (no marker) and changed weak labels are redone
    (out / "scores" / "img0.json").unlink()
    weak2 = dict(weak, img2=synth_weak(2, "boxes"))
    third = pseudo_label(img_dir, weak2, out, eng)
    assert sorted(third.done) == ["img0", "img2"] and third.skipped == ["img1"]
    # another policy is another run: everything redone
    fourth = pseudo_label(img_dir, weak, out, eng, policy="one-shot")
    assert len(fourth.done) == 3


def test_failing_images_are_listed_and_skipped(tmp_path):
    img_dir, weak, gts = make_dataset(tmp_path)
    (img_dir / "img1.png").write_bytes(b"not an image")
    bad = weak["img2"]
    weak = dict(weak, img2=WeakLabels("img2", "points", (ObjectPrompts(1, CAT, (
        Point((500, 10)),)),) + bad.objects[1:], (), "bad.json", SHAPE),
        ghost=WeakLabels("ghost", "points", bad.objects))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img_dir / "unlabelled.png")
    seen = []
    report = pseudo_label(img_dir, weak, tmp_path / "out", DiskEngine(),
                          progress=lambda d, t, m: seen.append((d, t, m)))
    assert report.done == ["img0"]
    assert set(report.failed) == {"img1", "img2", "ghost"}
    assert "img1.png" in report.failed["img1"]
    assert ("bad.json (object 1 (class 8)): point lies outside the 80 x 64 image"
            in report.failed["img2"])
    assert "no image file" in report.failed["ghost"]
    assert report.unlabelled == ["unlabelled"]
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == report.failed
    assert [d for d, _, _ in seen] == [1, 2, 3, 4] and {t for _, t, _ in seen} == {4}
    # the VOC export holds the good image only
    voc = report.voc_root
    assert sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png")) == ["img0"]
    assert not (tmp_path / "out" / "scores" / "img1.json").exists()


def test_voc_export_and_records(tmp_path):
    img_dir, weak, gts = make_dataset(tmp_path, kind="boxes")
    report = pseudo_label(img_dir, weak, tmp_path / "out", oracle_for(img_dir, gts, 0),
                          kind="boxes")
    voc = report.voc_root
    assert voc == tmp_path / "out" / "voc" / "VOCdevkit" / "VOC2012"
    for image_id, (sem, _inst) in gts.items():
        np.testing.assert_array_equal(read_label_png(voc / "SegmentationClass" /
                                                     f"{image_id}.png"), sem)
        # boxes run by object: the object map is the objects (renumbered 1..N)
        obj = read_label_png(voc / "SegmentationObject" / f"{image_id}.png")
        assert len(np.unique(obj)) == 4
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
    ids = (voc / "ImageSets" / "Segmentation" / "trainval.txt").read_text().split()
    assert sorted(ids) == sorted(gts)
    rec = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())
    assert rec["unit"] == "object" and rec["policy"]["name"] == "boxes"
    assert [o["class"] for o in rec["objects"]] == ["cat", "dog", "person"]
    assert all(o["score"] == pytest.approx(1.0) and o["decoder_calls"] == 1
               for o in rec["objects"])
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["kind"] == "boxes" and run["model_id"] == "fake-oracle"


def test_weak_labels_for_another_image_size_fail_that_image(tmp_path):
    img_dir, weak, _ = make_dataset(tmp_path, n=1)
    w = weak["img0"]
    weak = {"img0": WeakLabels("img0", "points", w.objects, (), "x.json", (10, 10))}
    report = pseudo_label(img_dir, weak, tmp_path / "out", DiskEngine())
    assert "10 x 10 image" in report.failed["img0"]
    assert report.voc_root is None


def test_tiny_sam_end_to_end(tmp_path, tiny_checkpoint):
    from napari_samlabel.pseudo.engines import EngineSpec

    img_dir, weak, _ = make_dataset(tmp_path, n=1, kind="scribbles")
    spec = EngineSpec.sam("vit_tiny_test", tiny_checkpoint, cache=None, device="cpu")
    report = pseudo_label(img_dir, weak, tmp_path / "out", spec, kind="scribbles")
    assert report.done == ["img0"], report.failed
    rec = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())
    assert rec["model_id"].startswith("vit_tiny_test")
    assert [o["class_id"] for o in rec["objects"]] == [CAT, DOG, PERSON]
    assert all(len(o["ious"]) == 3 and o["decoder_calls"] == 1 for o in rec["objects"])
    sem = read_label_png(tmp_path / "out" / "SegmentationClass" / "img0.png")
    assert sem.shape == SHAPE and set(np.unique(sem)) <= {0, CAT, DOG, PERSON}


def test_engine_error_on_one_image_does_not_stop_the_run(tmp_path):
    img_dir, weak, _ = make_dataset(tmp_path, n=3)

    class Flaky(DiskEngine):
        def set_image(self, image):
            super().set_image(image)
            if self.images_set == 2:
                raise RuntimeError("device lost")

    report = pseudo_label(img_dir, weak, tmp_path / "out", Flaky())
    assert sorted(report.done) == ["img0", "img2"]
    msg = report.failed["img1"]
    assert msg.startswith("RuntimeError: device lost") and "test_pipeline.py:" in msg


def test_scribble_outside_the_image_fails_the_image_naming_file_and_line(tmp_path):
    """A stroke outside the image was dropped silently and the image marked done; no more."""
    from napari_samlabel.io.weak import read_weak_labels

    img_dir, _, _ = make_dataset(tmp_path, n=2, kind="scribbles")
    weak_dir = tmp_path / "weak"
    weak_dir.mkdir()
    # img0: the dog's stroke (line 3) lies wholly right of the 80-pixel-wide image
    (weak_dir / "img0_scribble.txt").write_text(
        "# cat, then dog\n8,20,30,30,30\n12,200,30,210,35\n0,2,60,70,60\n")
    # img1: the cat's stroke runs past the right border (x 95 > 80): clipped, not an error
    (weak_dir / "img1_scribble.txt").write_text("8,20,30,95,30\n0,2,60,70,60\n")
    weak = read_weak_labels(weak_dir, "scribbles")
    report = pseudo_label(img_dir, weak, tmp_path / "out", DiskEngine(), kind="scribbles")
    assert report.done == ["img1"] and list(report.failed) == ["img0"]
    msg = report.failed["img0"]
    assert "img0_scribble.txt" in msg and "line 3" in msg and "class 12" in msg
    assert "outside the 80 x 64 image" in msg
    assert not (tmp_path / "out" / "scores" / "img0.json").exists()


def test_points_of_a_class_name_their_entries_in_errors(tmp_path):
    """Units of a by-class policy merge entries; a policy error still names file and entries."""
    from napari_samlabel.io.weak import read_weak_labels

    img_dir, _, _ = make_dataset(tmp_path, n=1)
    path = tmp_path / "pts.json"
    path.write_text(json.dumps({"img0": [{"x": 20, "y": 30, "cls": 8, "rank": 1},
                                         {"x": 70, "y": 40, "cls": 15, "rank": 1},
                                         {"x": 79.4, "y": 63.4, "cls": 8, "rank": 2}]}))
    weak = read_weak_labels(path, "points")
    assert weak["img0"].origins == ("image 'img0', entry 0", "image 'img0', entry 2",
                                    "image 'img0', entry 1")
    assert (weak["img0"].describe_unit(CAT)
            == "class 8: image 'img0', entry 0, image 'img0', entry 2")

    class Refusing(DiskEngine):
        def predict(self, inputs):
            if len(inputs.point_coords) > 1:
                raise ValueError("too many points for this engine")
            return super().predict(inputs)

    report = pseudo_label(img_dir, weak, tmp_path / "out", Refusing(),
                          policy=get_policy("points", iterative=False))
    msg = report.failed["img0"]
    assert "pts.json" in msg and "class 8 (cat)" in msg and "entry 2" in msg
    assert "too many points" in msg
    # a point past the border names its own entry
    path.write_text(json.dumps({"img0": [{"x": 20, "y": 30, "cls": 8},
                                         {"x": 20, "y": 300, "cls": 15}]}))
    report = pseudo_label(img_dir, read_weak_labels(path, "points"), tmp_path / "out2",
                          DiskEngine())
    assert "pts.json (object 2 (image 'img0', entry 1, class 15))" in report.failed["img0"]


def test_unreadable_weak_labels_fail_their_image_and_the_run_goes_on(tmp_path):
    img_dir, weak, _ = make_dataset(tmp_path, n=3)
    report = pseudo_label(img_dir, {k: v for k, v in weak.items() if k != "img1"},
                          tmp_path / "out", DiskEngine(),
                          input_errors={"img1": "img1.txt (line 2): bad", "img2": "x.xml: bad"})
    assert report.done == ["img0"] and report.unlabelled == []
    assert report.failed == {"img1": "weak labels: img1.txt (line 2): bad",
                             "img2": "weak labels: x.xml: bad"}  # img2's other labels unused
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == report.failed


def test_resume_key_is_the_weights_not_the_paths(tmp_path, tiny_checkpoint):
    """Another --cache reuses results; other weights at the same path redo them."""
    import shutil

    from napari_samlabel.pseudo.engines import EngineSpec

    img_dir, weak, _ = make_dataset(tmp_path, n=1)
    ckpt = tmp_path / "weights.pth"
    shutil.copy(tiny_checkpoint, ckpt)

    def run(cache: str):
        spec = EngineSpec.sam("vit_tiny_test", ckpt, cache=None, device="cpu",
                              cache_dir=str(tmp_path / cache))
        return pseudo_label(img_dir, weak, tmp_path / "out", spec, export=False)

    assert run("cache-a").done == ["img0"]
    assert run("cache-b").skipped == ["img0"]  # same weights, another cache folder
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["model_id"].startswith("vit_tiny_test:")
    import torch

    state = torch.load(ckpt, map_location="cpu")
    key = next(k for k, v in state.items() if v.dtype.is_floating_point)
    state[key] = state[key] + 1.0
    torch.save(state, ckpt)  # other weights at the same path
    again = run("cache-b")
    assert again.done == ["img0"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model_id"] != \
        run_json["model_id"]


def test_records_carry_stability_and_candidate_iou_spread(tmp_path):
    from napari_samlabel.engine.quality import stability_score
    from napari_samlabel.testing.fakes import mask_to_lowres_logits

    img_dir, weak, _ = make_dataset(tmp_path, n=1)
    image = load_image(img_dir / "img0.png")
    eng = DiskEngine(radius=6, ious=(0.3, 0.5, 0.9))
    _, _, records = label_image(eng, image, weak["img0"], "points")
    for rec in records:
        assert rec["iou_spread"] == pytest.approx(0.6)
        assert 0.0 < rec["stability"] <= 1.0
    # the stability is that of the chosen (whole) mask's logits, not a constant
    eng.set_image(image)
    pred = eng.predict(eng.calls[0])
    assert records[0]["stability"] == pytest.approx(stability_score(pred.low_res_logits[2]),
                                                    abs=1e-6)
    assert stability_score(mask_to_lowres_logits(np.zeros(SHAPE, bool))) == 0.0
    # one candidate (single-mask head): no spread; no decode at all: no stability either
    _, _, single = label_image(eng, image, weak["img0"], get_policy("points",
                                                                     multimask_choice="single"))
    assert all(r["iou_spread"] is None and r["stability"] is not None for r in single)
    empty = WeakLabels("img0", "points", (ObjectPrompts(1, CAT, ()),))
    _, _, none = label_image(eng, image, empty, "points")
    assert none[0]["stability"] is None and none[0]["iou_spread"] is None

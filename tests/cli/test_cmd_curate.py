"""``samlabel curate`` end to end on a small synthetic project and VOC trees."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point

SHAPE = (64, 80)


class Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.ids.append(a["data-image-id"])
        if tag == "img":
            self.srcs.append(a["src"])


def _images(folder, ids):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for iid in ids:
        Image.fromarray(rng.integers(0, 255, SHAPE + (3,), dtype=np.uint8)).save(
            folder / f"{iid}.png")


def _rect(r0, r1, c0, c1):
    m = np.zeros(SHAPE, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture()
def project(tmp_path):
    from napari_samlabel.io.project import Project

    _images(tmp_path / "images", ["a", "b", "c", "d"])
    proj = Project.create(tmp_path / "proj", tmp_path / "images", ["cat", "dog"])
    clean = _rect(10, 40, 10, 50)
    good = AnnotatedObject(1, 1, clean, (Point((25, 30)), Box((10, 10), (39, 49))), 0.97)
    broken = clean.copy()
    broken[50:60, 60:75] = True  # a stray second piece
    bad = AnnotatedObject(1, 2, broken, (Point((60, 5)), Point((20, 20), positive=False)),
                          0.62)
    for iid, objects, status in (("a", [good], ImageStatus.DONE),
                                 ("b", [good, AnnotatedObject(2, 2, broken, bad.prompts, 0.62)],
                                  ImageStatus.DONE),
                                 ("c", [good], ImageStatus.FLAGGED)):
        proj.save_document(AnnotationDocument(iid, SHAPE, objects, status))
        proj.set_status(iid, status)
    return proj


def test_curate_project_end_to_end(tmp_path, project, capsys):
    out = tmp_path / "review"
    rc = main(["curate", str(project.folder), "--out", str(out), "--top", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "3 images assessed, 2 flagged" in captured.out
    assert "1 images not annotated yet" in captured.out  # "d" has status new

    assert (out / "failures.txt").read_text() == "c\nb\n"
    data = json.loads((out / "queue.json").read_text())
    assert [i["image_id"] for i in data["images"]] == ["c", "b", "a"]
    assert data["source_kind"] == "project" and data["unannotated"] == 1
    b = data["images"][1]
    assert {"positive_outside", "negative_inside", "fragmented", "low_iou"} <= set(b["flags"])
    worst_obj = max(b["objects"], key=lambda o: o["score"])
    assert worst_obj["object_id"] == 2 and worst_obj["class_name"] == "dog"

    rows = list(csv.DictReader((out / "queue.csv").open(newline="")))
    assert [r["image_id"] for r in rows] == ["c", "b", "b", "a"]

    page = Sections()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.ids == ["c", "b"]  # --top 2, worst first
    assert all((out / s).is_file() for s in page.srcs) and len(page.srcs) == 2

    # A rerun into the same folder replaces the outputs cleanly.
    assert main(["curate", str(project.folder), "--out", str(out), "--top", "1"]) == 2
    assert "report.html exists; pass --overwrite" in capsys.readouterr().err
    assert main(["curate", str(project.folder), "--out", str(out), "--top", "1",
                 "--overwrite"]) == 0
    assert len(list((out / "thumbnails").glob("*.png"))) == 1


def _voc(root, classes, maps):
    from napari_samlabel.io.voc.writer import VocWriter

    rng = np.random.default_rng(1)
    with VocWriter(root, classes) as w:
        for iid, (sem, inst) in maps.items():
            w.add(iid, rng.integers(0, 255, SHAPE + (3,), dtype=np.uint8), sem, inst)
    return root


def _labels(*rects):
    sem = np.zeros(SHAPE, np.uint8)
    inst = np.zeros(SHAPE, np.uint8)
    for k, (cls, r) in enumerate(rects, 1):
        sem[r] = cls
        inst[r] = k
    return sem, inst


def test_curate_voc_against_ground_truth(tmp_path, capsys):
    classes = ["background", "cat", "dog"]
    truth = {"x": _labels((1, _rect(5, 30, 5, 30)), (2, _rect(35, 60, 40, 75))),
             "y": _labels((1, _rect(10, 50, 10, 60))),
             "z": _labels((2, _rect(10, 40, 10, 40)))}
    pseudo = {"x": _labels((1, _rect(5, 30, 5, 30))),  # the dog is missing
              "y": _labels((1, _rect(10, 50, 10, 60))),  # perfect
              "z": _labels((1, _rect(10, 40, 10, 40)))}  # right shape, wrong class
    gt = _voc(tmp_path / "gt", classes, truth)
    pred = _voc(tmp_path / "pseudo", classes, pseudo)
    out = tmp_path / "out"
    rc = main(["curate", str(pred), "--gt", str(gt), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "queue.json").read_text())
    by_id = {i["image_id"]: i for i in data["images"]}
    assert data["source_kind"] == "voc"
    assert [i["image_id"] for i in data["images"]][-1] == "y"
    assert "gt_missed" in by_id["x"]["flags"]
    assert "gt_wrong_class" in by_id["z"]["flags"]
    assert by_id["y"]["flags"] == [] and by_id["y"]["objects"][0]["signals"]["gt_iou"] == 1.0
    # Without prompts or SAM scores only the mask signals are there.
    assert "predicted_iou" not in by_id["y"]["objects"][0]["signals"]
    assert (out / "failures.txt").read_text().split() == [i["image_id"] for i in
                                                         data["images"][:2]]


def test_curate_user_errors_and_skipped_images(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["curate", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "neither a napari-samlabel project" in capsys.readouterr().err

    classes = ["background", "cat"]
    pred = _voc(tmp_path / "pseudo", classes, {"p": _labels((1, _rect(5, 30, 5, 30))),
                                                "q": _labels((1, _rect(5, 30, 5, 30)))})
    assert main(["curate", str(pred), "--out", str(tmp_path / "o"),
                 "--threshold", "nonsense=1"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err

    # Ground truth of the wrong size for "q": that image is skipped, the run goes on.
    gt = tmp_path / "gtpng"
    gt.mkdir()
    Image.fromarray(np.zeros(SHAPE, np.uint8), mode="L").save(gt / "p.png")
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(gt / "q.png")
    rc = main(["curate", str(pred), "--gt", str(gt), "--out", str(tmp_path / "o"),
               "--threshold", "gt_mismatch=0.9"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "skipped q: ground truth" in text and "q.png is 10x10" in text
    data = json.loads((tmp_path / "o" / "queue.json").read_text())
    assert [i["image_id"] for i in data["images"]] == ["p"]
    assert data["skipped"][0]["image_id"] == "q"
    assert data["thresholds"]["gt_mismatch"] == 0.9


def test_curate_pseudo_label_output_with_weak_labels(tmp_path, capsys):
    """The real pipeline's output folder (deterministic disk engine), read back with prompts."""
    from napari_samlabel.io.weak import read_weak_labels
    from napari_samlabel.pseudo.pipeline import pseudo_label
    from napari_samlabel.testing.fakes import DiskEngine

    _images(tmp_path / "images", ["apart", "close"])
    points = {  # (x, y, VOC class): cat 8, dog 12
        "apart": [{"x": 15, "y": 15, "cls": 8}, {"x": 60, "y": 45, "cls": 12}],
        # The dog click is 5.7 px from the cat click: the dog's disk (later unit, same
        # predicted IoU) takes the cat's click and most of its disk.
        "close": [{"x": 20, "y": 20, "cls": 8}, {"x": 24, "y": 24, "cls": 12}],
    }
    weak_file = tmp_path / "points.json"
    weak_file.write_text(json.dumps(points))
    weak = read_weak_labels(weak_file, "points")
    out = tmp_path / "pseudo"
    pseudo_label(tmp_path / "images", weak, out, DiskEngine(radius=8.0, ious=(0.5, 0.6, 0.9)))

    review = tmp_path / "review"
    rc = main(["curate", str(out), "--weak", str(weak_file), "--out", str(review)])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((review / "queue.json").read_text())
    assert data["source_kind"] == "pseudo"
    assert [i["image_id"] for i in data["images"]] == ["close", "apart"]
    close = {o["class_name"]: o for o in data["images"][0]["objects"]}
    assert {"positive_outside", "overlapped"} <= set(close["cat"]["flags"])
    assert close["cat"]["signals"]["predicted_iou"] == pytest.approx(0.9)
    assert close["cat"]["signals"]["iou_spread"] == pytest.approx(0.4)
    assert data["images"][1]["flags"] == []
    assert (review / "failures.txt").read_text() == "close\n"

    # Without the weak labels the prompt checks are absent, the SAM scores still there.
    assert main(["curate", str(out), "--out", str(review), "--overwrite"]) == 0
    data = json.loads((review / "queue.json").read_text())
    cat = data["images"][0]["objects"][0]
    assert "positive_outside" not in cat["signals"] and "predicted_iou" in cat["signals"]
    # --weak makes no sense for a VOC tree.
    assert main(["curate", str(out / "voc"), "--weak", str(weak_file), "--out",
                 str(review), "--overwrite"]) == 2
    assert "pseudo-label" in capsys.readouterr().err


def test_curate_plain_voc_tree_without_instances(tmp_path, capsys):
    """Only JPEGImages + SegmentationClass (like VOC's own ground truth): components."""
    from napari_samlabel.io.voc.labelpng import write_label_png

    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    sem = np.zeros(SHAPE, np.uint8)
    sem[5:30, 5:30] = 8
    sem[40:60, 40:75] = 8  # a second cat, apart: a second object
    sem[29, 5:30] = 255  # void band row
    Image.fromarray(np.full(SHAPE + (3,), 90, np.uint8)).save(voc / "JPEGImages" / "v.jpg")
    write_label_png(voc / "SegmentationClass" / "v.png", sem)
    gt = tmp_path / "gt" / "SegmentationClass"
    gt_sem = sem.copy()
    gt_sem[40:60, 40:75] = 0  # the ground truth has only the first cat
    write_label_png(gt / "v.png", gt_sem)
    out = tmp_path / "out"
    assert main(["curate", str(tmp_path), "--gt", str(tmp_path / "gt"), "--out",
                 str(out)]) == 0, capsys.readouterr().err
    data = json.loads((out / "queue.json").read_text())
    [image] = data["images"]
    ious = sorted(o["signals"]["gt_iou"] for o in image["objects"])
    assert ious == [0.0, 1.0]  # void row ignored; the extra cat matches nothing
    assert "gt_mismatch" in image["flags"] and "gt_missed" not in image["flags"]
    page = Sections()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.ids == ["v"] and (out / page.srcs[0]).is_file()


def test_curate_voc_skips_a_broken_image_and_goes_on(tmp_path, capsys):
    classes = ["background", "cat"]
    pred = _voc(tmp_path / "pseudo", classes, {"p": _labels((1, _rect(5, 30, 5, 30))),
                                                "q": _labels((1, _rect(5, 30, 5, 30))),
                                                "r": _labels((1, _rect(5, 30, 5, 30)))})
    seg = next((tmp_path / "pseudo").rglob("SegmentationClass"))
    (seg / "q.png").write_bytes(b"not a png")
    rc = main(["curate", str(pred), "--out", str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert rc == 1 and "skipped q:" in text and "q.png" in text
    data = json.loads((tmp_path / "o" / "queue.json").read_text())
    assert sorted(i["image_id"] for i in data["images"]) == ["p", "r"]


def _plain_voc_with_specks(root):
    """A VOC tree without SegmentationObject whose class map has 1-5 px specks (as VOC's)."""
    from napari_samlabel.io.voc.labelpng import write_label_png

    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    sem = np.zeros(SHAPE, np.uint8)
    sem[5:30, 5:30] = 8  # a cat, 625 px
    sem[40:60, 40:75] = 12  # a dog, 700 px
    sem[29, 5:30] = 255  # void band row
    for k, (r, c) in enumerate([(2, 50), (10, 70), (50, 10), (62, 30), (35, 5)]):
        sem[r:r + 1, c:c + 1 + k % 3] = 8 if k % 2 else 12  # specks of 1..3 px
    sem[45:47, 20:22] = 8  # a 4 px speck
    Image.fromarray(np.full(SHAPE + (3,), 90, np.uint8)).save(voc / "JPEGImages" / "s.jpg")
    write_label_png(voc / "SegmentationClass" / "s.png", sem)
    return voc


def test_curate_voc_class_maps_make_the_objects_import_voc_makes(tmp_path, capsys):
    from napari_samlabel.curate.sources import import_voc_min_area
    from napari_samlabel.io.voc_project import import_voc

    voc = _plain_voc_with_specks(tmp_path / "voc")
    out = tmp_path / "out"
    assert main(["curate", str(voc), "--out", str(out)]) == 0, capsys.readouterr().err
    [image] = json.loads((out / "queue.json").read_text())["images"]
    project = import_voc(voc, tmp_path / "proj")
    imported = project.read_objects("s")
    assert import_voc_min_area() == 10
    assert len(image["objects"]) == len(imported) == 2  # the specks are not objects
    assert sorted(o["area"] for o in image["objects"]) == \
        sorted(int(o.mask.sum()) for o in imported)
    assert image["flags"] == []  # no tiny specks at the top of the queue
    # --min-area 0 keeps every speck as an object (and flags them tiny).
    assert main(["curate", str(voc), "--out", str(out), "--min-area", "0",
                 "--overwrite"]) == 0
    [image] = json.loads((out / "queue.json").read_text())["images"]
    assert len(image["objects"]) == 8 and "tiny" in image["flags"]
    assert main(["curate", str(voc), "--out", str(out), "--min-area", "-1"]) == 2
    assert "--min-area" in capsys.readouterr().err


def test_curate_merged_instances_against_voc_ground_truth(tmp_path, capsys):
    """One pseudo mask over two touching ground-truth dogs: flagged, both dogs missed."""
    classes = ["background", "cat", "dog"]
    truth = {"m": _labels((2, _rect(10, 50, 10, 40)), (2, _rect(10, 50, 40, 70)))}
    pseudo = {"m": _labels((2, _rect(10, 50, 10, 70)))}
    gt = _voc(tmp_path / "gt", classes, truth)
    pred = _voc(tmp_path / "pseudo", classes, pseudo)
    out = tmp_path / "out"
    assert main(["curate", str(pred), "--gt", str(gt), "--out", str(out)]) == 0, \
        capsys.readouterr().err
    [image] = json.loads((out / "queue.json").read_text())["images"]
    assert {"gt_merged", "gt_mismatch", "gt_missed"} <= set(image["flags"])
    # Issue 16: the score is 1 - the image's mIoU, and its class map is right (one dog mask
    # over two dogs); the flags and the main reason show the merge.
    assert image["signals"]["gt_missed"] == 2 and image["score"] == 0.0
    assert image["objects"][0]["main_reason"]["signal"] in ("gt_iou", "gt_merge")
    rows = list(csv.DictReader((out / "queue.csv").open(newline="")))
    assert rows[0]["gt_merge"] == "1" and rows[0]["main_reason"] == "gt_missed"
    # The report outlines both ground-truth instances (white between the two dogs).
    from napari_samlabel.curate.report import GT_OUTLINE

    page = Sections()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    thumb = np.asarray(Image.open(out / page.srcs[0]).convert("RGB"))
    assert thumb.shape[:2] == SHAPE  # small image: thumbnail at its own size
    assert (thumb[20:40, 39:41] == GT_OUTLINE).all(axis=-1).any()


def test_curate_reads_stability_and_iou_spread_when_the_producer_stored_them(tmp_path, capsys):
    from napari_samlabel.io.weak import read_weak_labels
    from napari_samlabel.pseudo.pipeline import pseudo_label
    from napari_samlabel.testing.fakes import DiskEngine

    _images(tmp_path / "images", ["p", "q"])
    points = {"p": [{"x": 15, "y": 15, "cls": 8}], "q": [{"x": 50, "y": 40, "cls": 12}]}
    weak_file = tmp_path / "points.json"
    weak_file.write_text(json.dumps(points))
    out = tmp_path / "pseudo"
    pseudo_label(tmp_path / "images", read_weak_labels(weak_file, "points"), out,
                 DiskEngine(radius=8.0, ious=(0.85, 0.88, 0.9)))
    # The pipeline stores stability and iou_spread per unit: give "p" telling values and
    # make "q" look like a record of an older run, which has neither.
    rec_path = out / "scores" / "p.json"
    rec = json.loads(rec_path.read_text())
    rec["objects"][0].update(stability=0.6, iou_spread=0.31)
    rec_path.write_text(json.dumps(rec))
    old_path = out / "scores" / "q.json"
    old = json.loads(old_path.read_text())
    for key in ("stability", "iou_spread"):
        old["objects"][0].pop(key, None)
    old_path.write_text(json.dumps(old))
    review = tmp_path / "review"
    assert main(["curate", str(out), "--out", str(review), "--overwrite"]) == 0, \
        capsys.readouterr().err
    by_id = {i["image_id"]: i for i in json.loads((review / "queue.json").read_text())["images"]}
    p, q = by_id["p"]["objects"][0], by_id["q"]["objects"][0]
    assert p["signals"]["stability"] == 0.6 and "unstable" in p["flags"]
    assert p["signals"]["iou_spread"] == 0.31  # the stored value, not max - min of ious
    assert "stability" not in q["signals"] and "unstable" not in q["flags"]
    assert q["signals"]["iou_spread"] == pytest.approx(0.05)  # from the candidates' ious
    for o in (p, q):
        assert "iou_spread" not in o["badness"]  # reported, not scored (docs/curation.md)
    assert by_id["p"]["rank"] < by_id["q"]["rank"]
    rows = {r["image_id"]: r for r in csv.DictReader((review / "queue.csv").open(newline=""))}
    assert rows["p"]["stability"] == "0.6" and rows["q"]["stability"] == ""


def test_curate_project_objects_with_and_without_stored_signals(tmp_path, capsys):
    from napari_samlabel.io.project import Project

    _images(tmp_path / "images", ["s", "t"])
    proj = Project.create(tmp_path / "proj", tmp_path / "images", ["cat"])
    mask = _rect(10, 40, 10, 50)
    with_signals = AnnotatedObject(1, 1, mask, (Point((25, 30)),), 0.97,
                                   signals={"stability": 0.7, "iou_spread": 0.2})
    without = AnnotatedObject(1, 1, mask, (Point((25, 30)),), 0.97)
    for iid, obj in (("s", with_signals), ("t", without)):
        proj.save_document(AnnotationDocument(iid, SHAPE, [obj], ImageStatus.DONE))
        proj.set_status(iid, ImageStatus.DONE)
    out = tmp_path / "out"
    assert main(["curate", str(proj.folder), "--out", str(out)]) == 0, capsys.readouterr().err
    data = json.loads((out / "queue.json").read_text())
    assert [i["image_id"] for i in data["images"]] == ["s", "t"]
    s, t = (i["objects"][0] for i in data["images"])
    assert s["signals"]["stability"] == 0.7 and s["flags"] == ["unstable"]
    assert s["main_reason"]["signal"] == "stability"
    assert s["signals"]["iou_spread"] == 0.2
    assert "stability" not in t["signals"] and "iou_spread" not in t["signals"]
    assert t["flags"] == [] and t["main_reason"] is None
    assert data["schema_version"] == 2

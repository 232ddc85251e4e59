"""Issue 16: the queue ranks by how bad an image is, not only by whether it is bad.

Ground truth and pseudo labels are built here: ellipses of a few classes with VOC's void
band around them, degraded by known amounts (eroded, dilated, shifted, a part cut off, a
wrong class, missing, or left clean). The true quality of each image is its mIoU over the
classes present, computed with the evaluation's own confusion matrix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.stats import spearmanr

from napari_samlabel.core.classes import VOID
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.curate.assessment import assess_image, assess_object, rank_images
from napari_samlabel.curate.matching import GroundTruth, GtMatch
from napari_samlabel.evaluate.metrics import ConfusionMatrix

SHAPE = (96, 128)
CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle"]
KINDS = ("clean", "erode", "dilate", "shift", "cut", "wrong_class", "missing")


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    rr, cc = np.mgrid[:SHAPE[0], :SHAPE[1]]
    r0, c0 = rng.uniform(20, SHAPE[0] - 20), rng.uniform(20, SHAPE[1] - 20)
    a, b = rng.uniform(8, 22), rng.uniform(8, 28)
    return ((rr - r0) / a) ** 2 + ((cc - c0) / b) ** 2 <= 1.0


def _ground_truth(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """A class map with 1-3 objects (later ones in front) and a void band, and the objects."""
    sem = np.zeros(SHAPE, np.uint8)
    objects: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, 4))):
        m = _ellipse(rng)
        cls = int(rng.integers(1, len(CLASSES)))
        sem[m] = cls
        objects = [(c, o & ~m) for c, o in objects] + [(cls, m)]
    objects = [(c, o) for c, o in objects if o.sum() > 40]
    band = np.zeros(SHAPE, bool)
    for _, o in objects:
        band |= ndi.binary_dilation(o, iterations=1) & ~o
    sem[band] = VOID
    return sem, objects


def _degrade(mask: np.ndarray, kind: str, amount: float, rng: np.random.Generator
             ) -> np.ndarray:
    size = np.sqrt(mask.sum())
    if kind == "erode":
        return ndi.distance_transform_edt(mask) > max(1.0, amount * size / 4)
    if kind == "dilate":
        return ndi.distance_transform_edt(~mask) <= max(1.0, amount * size / 4)
    if kind == "shift":
        d = int(round(max(1.0, amount * size / 2)))
        return np.roll(mask, (d, -d) if rng.random() < 0.5 else (-d, d), axis=(0, 1))
    if kind == "cut":
        rows = np.nonzero(mask)[0]
        out = mask.copy()
        out[rows.max() - int((rows.max() - rows.min()) * 0.7 * amount):, :] = False
        return out
    return mask.copy()


def _pseudo(sem: np.ndarray, gt_objects: list[tuple[int, np.ndarray]],
            rng: np.random.Generator) -> list[AnnotatedObject]:
    """Degraded copies of the ground-truth objects, with each one's box and click."""
    out = []
    for cls, gt in gt_objects:
        kind = str(rng.choice(KINDS))
        if kind == "missing":
            continue
        mask = _degrade(gt, kind, float(rng.uniform(0.1, 1.0)), rng)
        label = cls % (len(CLASSES) - 1) + 1 if kind == "wrong_class" else cls
        rows, cols = np.nonzero(gt)
        centre = np.unravel_index(int(np.argmax(ndi.distance_transform_edt(gt))), SHAPE)
        prompts = (Box((rows.min(), cols.min()), (rows.max(), cols.max())), Point(centre))
        prompts += tuple(Point(np.unravel_index(int(np.argmax(ndi.distance_transform_edt(o))),
                                                SHAPE), positive=False)
                         for c, o in gt_objects if c != label)
        out.append(AnnotatedObject(len(out) + 1, label, mask, prompts, None))
    return out


def _class_map(objects: list[AnnotatedObject]) -> np.ndarray:
    pred = np.zeros(SHAPE, np.uint8)
    for o in objects:  # the objects carry no scores: the later one is on top
        pred[o.mask] = o.class_id
    return pred


def _true_miou(pred: np.ndarray, sem: np.ndarray) -> float:
    cm = ConfusionMatrix(len(CLASSES))
    cm.update(pred, sem)
    return cm.scores().miou


def _dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    data = []
    for k in range(n):
        sem, gt_objects = _ground_truth(rng)
        objects = _pseudo(sem, gt_objects, rng)
        data.append((f"img{k:02d}", sem, objects, _true_miou(_class_map(objects), sem)))
    return data


def test_with_ground_truth_the_queue_follows_the_true_miou(tmp_path):
    """End to end: VOC trees on disk, `curate --gt`, ranks in queue.json against mIoU."""
    from napari_samlabel.curate.run import curate
    from napari_samlabel.io.voc.writer import VocWriter

    data = _dataset(30, seed=16)
    rng = np.random.default_rng(0)
    for root, maps in (("gt", [(iid, sem) for iid, sem, _, _ in data]),
                       ("pseudo", [(iid, _class_map(objs)) for iid, _, objs, _ in data])):
        with VocWriter(tmp_path / root, CLASSES) as w:
            for iid, sem in maps:
                w.add(iid, rng.integers(0, 255, SHAPE + (3,), dtype=np.uint8), sem)
    result = curate(tmp_path / "pseudo", tmp_path / "out", gt=tmp_path / "gt", top=5,
                    min_area=0)
    assert not result.skipped
    queue = json.loads((tmp_path / "out" / "queue.json").read_text())
    assert queue["ranking"] == "ground_truth"
    true = {iid: miou for iid, _, _, miou in data}
    ranks = [(rec["rank"], true[rec["image_id"]]) for rec in queue["images"]]
    rho = spearmanr([r for r, _ in ranks], [m for _, m in ranks]).statistic
    assert rho >= 0.9, rho  # worst first: rank 1 has the lowest mIoU
    for rec in queue["images"]:
        assert rec["score"] == pytest.approx(1.0 - true[rec["image_id"]], abs=1e-6)
        assert rec["signals"]["gt_miou"] == pytest.approx(true[rec["image_id"]], abs=1e-6)
    assert len({round(rec["score"], 6) for rec in queue["images"]}) > 20  # no saturation
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "The ranking uses the ground truth" in page
    assert "<svg" in page and "histogram of image scores" in page


def test_without_ground_truth_the_score_grows_with_what_is_wrong():
    """The signals alone rank the same images clearly better than the worst object did."""
    data = _dataset(40, seed=7)
    scores, worst, true = [], [], []
    for iid, _, objects, miou in data:
        a = assess_image(iid, SHAPE, objects)
        scores.append(a.score)
        worst.append(max((o.score for o in a.objects), default=0.5))
        true.append(1.0 - miou)
    rho = spearmanr(scores, true).statistic
    assert rho >= 0.6, rho
    assert rho > spearmanr(worst, true).statistic
    ranked = rank_images([assess_image(iid, SHAPE, objs) for iid, _, objs, _ in data])
    assert "gt_miou" not in ranked[0].signals


def test_object_scores_with_ground_truth_do_not_saturate():
    obj = AnnotatedObject(1, 1, np.ones((10, 10), bool))
    scores = [assess_object(obj, (10, 10), gt=GtMatch(iou, 1)).score
              for iou in (0.95, 0.7, 0.45, 0.3, 0.2, 0.1, 0.0)]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert scores[-1] == 1.0 and scores[-2] < 1.0


def test_image_score_with_ground_truth_is_one_minus_its_miou():
    sem = np.zeros((40, 40), np.uint8)
    sem[5:25, 5:25] = 1
    sem[25:35, 25:35] = 2
    half = np.zeros((40, 40), bool)
    half[5:15, 5:25] = True
    whole2 = sem == 2
    a = assess_image("a", (40, 40), [AnnotatedObject(1, 1, half), AnnotatedObject(2, 2, whole2)],
                     gt=GroundTruth(sem))
    # Classes present: background, 1, 2. IoU(1) = 200 / 400, IoU(2) = 1; background: 1100
    # ground-truth pixels, all predicted background, plus the 200 missed pixels of class 1.
    expected = (1100 / 1300 + 0.5 + 1.0) / 3
    assert a.signals["gt_miou"] == pytest.approx(expected)
    assert a.score == pytest.approx(1.0 - expected)
    # An annotator's flag still puts the image at the top.
    assert assess_image("f", (40, 40), [], gt=GroundTruth(sem), status="flagged").score == 1.0


def test_score_histogram_counts_every_image():
    from napari_samlabel.curate.histogram import score_histogram_svg
    from napari_samlabel.curate.report import report_html

    svg = score_histogram_svg([0.0, 0.02, 0.5, 0.97, 1.0], [False, False, True, True, True],
                              cut=0.5)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "0.00\u20130.05: 2 not flagged" in svg and "0.95\u20131.00: 2 flagged" in svg
    assert "stroke-dasharray" in svg  # the cut
    objs = [AnnotatedObject(1, 1, _ellipse(np.random.default_rng(1)))]
    ranked = rank_images([assess_image(f"i{k}", SHAPE, objs) for k in range(3)])
    page = report_html(ranked, {}, CLASSES, top=2)
    assert "The ranking uses the failure signals" in page
    assert "Image scores of all 3 images" in page and "(#2, " in page


def test_the_queue_says_what_the_ranking_used(tmp_path):
    from napari_samlabel.curate.queue import RANKING_TEXT, ranking_basis, read_queue, write_queue

    sem = np.zeros(SHAPE, np.uint8)
    sem[20:60, 20:80] = 1
    obj = AnnotatedObject(1, 1, sem == 1)
    with_gt = assess_image("g", SHAPE, [obj], gt=GroundTruth(sem))
    without = assess_image("s", SHAPE, [obj])
    assert ranking_basis([with_gt]) == "ground_truth"
    assert ranking_basis([without]) == "signals" == ranking_basis([])
    assert ranking_basis([with_gt, without]) == "mixed"
    assert set(RANKING_TEXT) == {"ground_truth", "signals", "mixed"}
    write_queue(tmp_path, rank_images([with_gt, without]))
    data = read_queue(tmp_path)
    assert data["ranking"] == "mixed" and data["summary"]["images_with_ground_truth"] == 1


def test_parts_do_not_dilute_the_image_score():
    whole = np.zeros(SHAPE, bool)
    whole[20:60, 20:80] = True
    head = np.zeros(SHAPE, bool)
    head[20:30, 20:35] = True
    broken = AnnotatedObject(1, 1, whole, (Point((90, 120)),), 0.5)  # click outside the mask
    part = AnnotatedObject(2, 2, head, (), 0.97)
    alone = assess_image("a", SHAPE, [broken]).score
    assert assess_image("p", SHAPE, [broken, part], parts=[2]).score == pytest.approx(alone)
    assert assess_image("w", SHAPE, [broken, part]).score < alone

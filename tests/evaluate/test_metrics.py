"""Confusion-matrix metrics against a hand-worked example and an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import ClassTable, voc_colormap
from napari_samlabel.evaluate.metrics import (
    ConfusionMatrix,
    EvaluationError,
    evaluate_dirs,
    scores_from_confusion,
)


def reference_scores(pairs, n):
    """Straightforward per-class loop over (pred, gt) images, as the devkit describes it."""
    tp = np.zeros(n)
    gt_count = np.zeros(n)
    pred_count = np.zeros(n)
    for pred, gt in pairs:
        valid = gt != 255
        for c in range(n):
            tp[c] += np.sum((gt == c) & (pred == c) & valid)
            gt_count[c] += np.sum((gt == c) & valid)
            pred_count[c] += np.sum((pred == c) & valid)
    ious = []
    for c in range(n):
        union = gt_count[c] + pred_count[c] - tp[c]
        ious.append(tp[c] / union if union else math.nan)
    present = [v for v in ious if not math.isnan(v)]
    total = sum(np.sum(gt != 255) for _, gt in pairs)
    return ious, sum(present) / len(present), tp.sum() / total


def test_hand_worked_example():
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [255, 2, 2]], np.uint8)
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    s = cm.scores()
    # class 0: TP 1, GT 2, P 1 -> 1/2; class 1: TP 1, GT 2 (one predicted void), P 2 -> 1/3;
    # class 2: TP 1 (the prediction on the void pixel is ignored) -> 1; class 3 absent -> nan.
    np.testing.assert_allclose(s.iou[:3], [1 / 2, 1 / 3, 1.0])
    assert math.isnan(s.iou[3])
    assert s.miou == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert s.pixel_accuracy == pytest.approx(3 / 5)
    assert s.mean_accuracy == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert s.confusion[1, -1] == 1 and s.confusion.sum() == 5  # one void prediction


def test_accumulates_over_images_not_mean_of_images():
    rng = np.random.default_rng(1)
    n = 6
    pairs = []
    for shape in [(17, 23), (40, 31), (8, 9)]:
        gt = rng.integers(0, n, shape).astype(np.uint8)
        gt[rng.random(shape) < 0.1] = 255
        pred = np.where(rng.random(shape) < 0.6, gt, rng.integers(0, n, shape)).astype(np.uint8)
        pred[rng.random(shape) < 0.05] = 255
        pairs.append((pred, gt))
    pairs.append((np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8)))
    cm = ConfusionMatrix(n + 1)  # one class never appears -> nan, left out of the mean
    for pred, gt in pairs:
        cm.update(pred, gt)
    s = cm.scores()
    ious, miou, pixel_acc = reference_scores(pairs, n + 1)
    np.testing.assert_allclose(s.iou, ious)
    assert math.isnan(s.iou[n])
    assert s.miou == pytest.approx(miou)
    assert s.pixel_accuracy == pytest.approx(pixel_acc)
    assert cm.images == 4
    # The mean of per-image mIoUs differs: the matrix really is accumulated.
    per_image = np.mean([reference_scores([p], n + 1)[1] for p in pairs])
    assert not np.isclose(per_image, s.miou)


def test_merge_equals_single_accumulation():
    rng = np.random.default_rng(2)
    a, b, whole = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    for i in range(4):
        gt = rng.integers(0, 3, (10, 10))
        pred = rng.integers(0, 3, (10, 10))
        (a if i % 2 else b).update(pred, gt)
        whole.update(pred, gt)
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, whole.matrix)


def test_square_matrix_and_errors():
    s = scores_from_confusion(np.array([[3, 1], [0, 0]]), ["a", "b"])
    assert s.iou[0] == pytest.approx(0.75) and s.iou[1] == 0.0
    assert s.to_dict()["classes"][1]["iou"] == 0.0
    cm = ConfusionMatrix(3)
    with pytest.raises(EvaluationError,
                       match=r"im7: prediction is 4 x 3 but ground truth is 3 x 4"):
        cm.update(np.zeros((3, 4)), np.zeros((4, 3)), name="im7")
    with pytest.raises(EvaluationError, match=r"prediction has values \[7\]"):
        cm.update(np.full((2, 2), 7), np.zeros((2, 2)), name="x")
    with pytest.raises(EvaluationError, match=r"ground truth has values \[3\]"):
        cm.update(np.zeros((2, 2)), np.full((2, 2), 3), name="x")
    with pytest.raises(EvaluationError, match="x: prediction holds non-integer values"):
        cm.update(np.full((2, 2), 0.5), np.zeros((2, 2)), name="x")
    assert cm.images == 0 and cm.matrix.sum() == 0  # failed updates leave no trace


def save_palette(path, arr):
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(voc_colormap().ravel().tolist())
    im.save(path)


def test_evaluate_dirs(tmp_path):
    rng = np.random.default_rng(3)
    table = ClassTable(("cat", "dog"))
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    pairs = []
    for i in range(3):
        gt = rng.integers(0, 3, (12, 14)).astype(np.uint8)
        gt[0] = 255
        pred = np.where(rng.random(gt.shape) < 0.7, gt % 255, 1).astype(np.uint8)
        save_palette(tmp_path / "gt" / f"im{i}.png", gt)
        # Greyscale predictions work too: values are read, never colours.
        Image.fromarray(pred, mode="L").save(tmp_path / "pred" / f"im{i}.png")
        pairs.append((pred, gt))
    save_palette(tmp_path / "pred" / "extra.png", np.zeros((2, 2)))
    calls = []
    s = evaluate_dirs(tmp_path / "pred", tmp_path / "gt", table,
                      progress=lambda d, t, m: calls.append((d, t)))
    ious, miou, acc = reference_scores(pairs, 3)
    np.testing.assert_allclose(s.iou, ious)
    assert s.miou == pytest.approx(miou) and s.pixel_accuracy == pytest.approx(acc)
    assert s.class_names == ("background", "cat", "dog") and s.images == 3
    assert calls[-1] == (3, 3) and s.extra["unmatched_predictions"] == 1
    only = evaluate_dirs(tmp_path / "pred", tmp_path / "gt", table, ids=["im1"])
    np.testing.assert_allclose(only.iou, reference_scores(pairs[1:2], 3)[0])


def test_evaluate_dirs_voc_root_and_errors(tmp_path):
    seg = tmp_path / "voc" / "SegmentationClass"
    seg.mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    for i in range(7):
        save_palette(seg / f"a{i}.png", np.ones((4, 5)))
    with pytest.raises(EvaluationError, match=r"7 of 7 images have no predictions.*a0.png.*"
                                              r"and 2 more"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "voc")
    for i in range(7):
        save_palette(tmp_path / "pred" / f"a{i}.png", np.ones((4, 5) if i != 3 else (5, 4)))
    with pytest.raises(EvaluationError, match=r"a3.png: prediction is 4 x 5"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "voc")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "pred" / "a3.png")
    with pytest.raises(EvaluationError, match=r"a3.png is a RGB colour image"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "voc")
    with pytest.raises(EvaluationError, match="folder not found"):
        evaluate_dirs(tmp_path / "nope", tmp_path / "voc")


def test_matches_mmsegmentation_style_histc_computation():
    """mmsegmentation's intersect_and_union (torch.histc per image, summed, nanmean)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    n = 5
    totals = np.zeros((3, n))  # intersect, union, label
    cm = ConfusionMatrix(n)
    for shape in [(20, 30), (33, 17)]:
        gt = rng.integers(0, n - 1, shape)  # class n-1 never in GT
        gt[rng.random(shape) < 0.2] = 255
        pred = np.where(rng.random(shape) < 0.5, gt, rng.integers(0, n, shape))
        pred[rng.random(shape) < 0.1] = 255
        cm.update(pred, gt)
        p, g = torch.from_numpy(pred), torch.from_numpy(gt)
        keep = g != 255
        p, g = p[keep], g[keep]
        inter = p[p == g]

        def hist(t):
            return torch.histc(t.float(), bins=n, min=0, max=n - 1).numpy()
        a_i, a_p, a_l = hist(inter), hist(p), hist(g)
        totals += [a_i, a_p + a_l - a_i, a_l]
    with np.errstate(invalid="ignore"):
        iou = totals[0] / totals[1]
    s = cm.scores()
    np.testing.assert_allclose(s.iou, iou)
    assert s.miou == pytest.approx(np.nanmean(iou))
    assert s.pixel_accuracy == pytest.approx(totals[0].sum() / totals[2].sum())
    assert s.iou[n - 1] == 0.0  # predicted but never in GT: union > 0, IoU 0 (not nan)

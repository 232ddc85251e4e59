"""Semantic-segmentation metrics from one confusion matrix accumulated over a dataset.

The rules (the VOC development kit's and mmsegmentation's)
----------------------------------------------------------
- One confusion matrix is accumulated over all images; IoU is computed from it once at the
  end (not averaged per image).
- Pixels whose ground truth is 255 (void) are ignored.
- A prediction of 255 on a valid ground-truth pixel is a "void prediction": it counts as a
  miss of the ground-truth class (the pixel is in that class's union but not in its
  intersection) and as a false positive of no class. This is what mmsegmentation computes
  (its histogram of predictions drops out-of-range values); the VOC devkit refuses
  prediction values above the last class outright, so for inputs it accepts the two agree.
  Any other value outside the class table is an error naming the file.
- ``IoU_c = TP_c / (GT_c + P_c - TP_c)``. A class with an empty union (absent from both
  ground truth and prediction) has IoU NaN and is left out of the mean (mmsegmentation's
  ``nanmean``), so mIoU is over the classes present.
- Pixel accuracy = correct pixels / valid ground-truth pixels; per-class accuracy
  ``TP_c / GT_c`` (NaN when the class is absent from ground truth); mean accuracy is their
  nan-mean.

The matrix has one row per ground-truth class and one column per predicted class plus a last
"void prediction" column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable, as_class_table
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc.labelpng import read_label_png


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (missing prediction, size mismatch, bad values)."""


class ConfusionMatrix:
    """Accumulate a ``(C, C + 1)`` confusion matrix over images (rows: GT, cols: prediction).

    Parameters
    ----------
    num_classes : int
        Number of classes ``C`` (label indices ``0..C-1``; 255 is void).
    """

    def __init__(self, num_classes: int) -> None:
        if not 1 <= num_classes <= VOID:
            raise ValueError(f"num_classes must be in 1..{VOID}, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        self.images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str = "prediction",
               gt_name: str | None = None) -> None:
        """Add one image's ``pred`` against ``gt`` (integer label maps of the same shape).

        Raises
        ------
        EvaluationError
            On a shape mismatch or a value outside ``0..C-1`` and 255, naming ``name`` (the
            prediction's file) or, for a bad ground-truth value, ``gt_name``.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise EvaluationError(f"{name}: prediction is {_hw(pred)} but ground truth is "
                                  f"{_hw(gt)}")
        n = self.num_classes
        for arr, what, file in ((gt, "ground truth", gt_name or name),
                                (pred, "prediction", name)):
            if not np.issubdtype(arr.dtype, np.integer) and np.any(arr != np.round(arr)):
                raise EvaluationError(f"{file}: {what} holds non-integer values; label maps "
                                      "are class indices")
            if arr.size and (arr.min() < 0 or np.any((arr >= n) & (arr != VOID))):
                bad = np.unique(arr[(arr < 0) | ((arr >= n) & (arr != VOID))])[:10]
                raise EvaluationError(f"{file}: {what} has values {bad.tolist()} outside the "
                                      f"{n} classes (0..{n - 1}, 255 = void)")
        valid = gt != VOID
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        p[p == VOID] = n  # the void-prediction column
        self.matrix += np.bincount(g * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)
        self.images += 1

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another accumulator (for per-worker partial sums)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different class counts")
        self.matrix += other.matrix
        self.images += other.images

    def scores(self, class_names: Sequence[str] | None = None) -> SegmentationScores:
        """Compute the scores (rules in the module doc) from the accumulated matrix."""
        return scores_from_confusion(self.matrix, class_names, images=self.images)


def _hw(arr: np.ndarray) -> str:
    return " x ".join(str(s) for s in arr.shape[::-1]) if arr.ndim == 2 else str(arr.shape)


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of a dataset.

    Attributes
    ----------
    class_names : tuple of str
    iou, accuracy : numpy.ndarray
        Per-class IoU and accuracy, NaN where undefined.
    miou, pixel_accuracy, mean_accuracy : float
    confusion : numpy.ndarray
        ``(C, C + 1)`` int64 matrix; the last column counts void predictions.
    images : int
        Images accumulated.
    """

    class_names: tuple[str, ...]
    iou: np.ndarray
    accuracy: np.ndarray
    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    confusion: np.ndarray
    images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scores; NaN becomes None."""
        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "miou": num(self.miou), "pixel_accuracy": num(self.pixel_accuracy),
            "mean_accuracy": num(self.mean_accuracy), "images": self.images,
            "classes": [{"index": i, "name": n, "iou": num(self.iou[i]),
                         "accuracy": num(self.accuracy[i]),
                         "gt_pixels": int(self.confusion[i].sum()),
                         "pred_pixels": int(self.confusion[:, i].sum())}
                        for i, n in enumerate(self.class_names)],
            "void_predictions": int(self.confusion[:, -1].sum()),
            "confusion": self.confusion.tolist(),
            **self.extra,
        }


def scores_from_confusion(matrix: np.ndarray, class_names: Sequence[str] | None = None,
                          images: int = 0) -> SegmentationScores:
    """Scores from a ``(C, C + 1)`` (or square ``(C, C)``) confusion matrix.

    Rows are ground truth, columns predictions; an extra last column counts void
    predictions (misses with no false positive).
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = m.shape[0]
    if m.shape == (n, n):
        m = np.concatenate([m, np.zeros((n, 1), np.int64)], axis=1)
    if m.shape != (n, n + 1):
        raise ValueError(f"confusion matrix must be C x C or C x (C+1), got {m.shape}")
    tp = np.diag(m[:, :n]).astype(np.float64)
    gt = m.sum(axis=1).astype(np.float64)
    pred = m[:, :n].sum(axis=0).astype(np.float64)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = gt.sum()
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(n))
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    return SegmentationScores(
        class_names=names, iou=iou, accuracy=acc,
        miou=_nanmean(iou), pixel_accuracy=float(tp.sum() / total) if total else math.nan,
        mean_accuracy=_nanmean(acc), confusion=m, images=images)


def _nanmean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else math.nan


def _pngs(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder not found: {folder}")
    return {p.stem: p for p in sorted(folder.glob("*.png")) if not p.name.startswith(".")}


def evaluate_dirs(pred_dir: str | Path, gt_dir: str | Path,
                  classes: ClassTable | Sequence[str] | None = None,
                  ids: Sequence[str] | None = None,
                  progress: ProgressCallback = no_progress) -> SegmentationScores:
    """Evaluate a folder of predicted label PNGs against a folder of ground-truth PNGs.

    Parameters
    ----------
    pred_dir, gt_dir : str or pathlib.Path
        Folders of ``<id>.png`` index PNGs, matched by file stem. A VOC dataset (any layout
        of :func:`voc_label_folder`, e.g. the output folder of ``samlabel export``) is
        accepted for either: its ``SegmentationClass/`` is read.
    classes : ClassTable or list of str, optional
        The class table (VOC's 21 classes by default); its length is the number of classes.
    ids : sequence of str, optional
        Evaluate only these ids (for example an ``ImageSets`` split); default: every
        ground-truth PNG.
    progress : callable
        ``progress(done, total, message)`` after each image.

    Returns
    -------
    SegmentationScores

    Raises
    ------
    EvaluationError
        When predictions are missing (names the first few), a PNG is unreadable or holds
        colours rather than indices, sizes differ or values fall outside the class table
        (names the file).
    """
    table = as_class_table(classes)
    pred_dir, gt_dir = (_seg_folder(Path(d)) for d in (pred_dir, gt_dir))
    gts = _pngs(gt_dir, "ground-truth")
    preds = _pngs(pred_dir, "prediction")
    wanted = list(ids) if ids is not None else list(gts)
    if not wanted:
        raise EvaluationError(f"no ground-truth PNGs in {gt_dir}")
    for what, have, folder in (("ground truth", gts, gt_dir), ("predictions", preds, pred_dir)):
        missing = [i for i in wanted if i not in have]
        if missing:
            shown = ", ".join(f"{i}.png" for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise EvaluationError(f"{len(missing)} of {len(wanted)} images have no {what} in "
                                  f"{folder}: {shown}{more}")
    cm = ConfusionMatrix(len(table))
    for k, image_id in enumerate(wanted, start=1):
        try:
            pred, gt = read_label_png(preds[image_id]), read_label_png(gts[image_id])
        except VocError as exc:  # unreadable, or colours instead of indices: not evaluable
            raise EvaluationError(str(exc)) from exc
        cm.update(pred, gt, name=str(preds[image_id]), gt_name=str(gts[image_id]))
        progress(k, len(wanted), image_id)
    scores = cm.scores(table.names)
    scores.extra.update(pred_dir=str(pred_dir), gt_dir=str(gt_dir),
                        unmatched_predictions=len(set(preds) - set(wanted)))
    return scores


def voc_label_folder(folder: Path, sub: str = "SegmentationClass") -> Path | None:
    """Folder ``sub`` of the VOC dataset at ``folder``, or None when it is a folder of PNGs.

    ``folder`` may be any layout :func:`napari_samlabel.io.voc.reader.find_voc_root` accepts:
    ``VOC2012`` itself, ``VOCdevkit``, or the folder holding ``VOCdevkit`` that ``samlabel
    export`` writes. A folder holding PNGs itself is a label folder, never a VOC root.
    """
    from napari_samlabel.io.voc.reader import find_voc_root

    if not folder.is_dir() or any(folder.glob("*.png")):
        return None
    try:
        voc = find_voc_root(folder)
    except VocError:
        return None
    return voc / sub if (voc / sub).is_dir() else None


def _seg_folder(folder: Path) -> Path:
    """Accept a VOC dataset for a label folder: use its ``SegmentationClass/``."""
    return voc_label_folder(folder) or folder

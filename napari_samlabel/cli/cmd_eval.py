"""``samlabel eval``: mIoU of predicted label maps against ground truth."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_classes
from napari_samlabel.cli._progress import tqdm_progress

if TYPE_CHECKING:
    from napari_samlabel.evaluate.metrics import SegmentationScores


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval", help="mIoU of predicted label PNGs against ground truth",
        description="Evaluate a folder of predicted label PNGs against ground truth, matched by "
                    "file name: one confusion matrix over the dataset, ground-truth 255 ignored, "
                    "predicted 255 counted as a miss. Prints per-class IoU, mIoU (over classes "
                    "present) and pixel accuracy.")
    p.add_argument("pred_dir", metavar="PRED", type=Path,
                   help="predictions: a folder of <id>.png label maps (palette or greyscale), "
                        "or a VOC dataset (e.g. the output of samlabel pseudo-label or export)")
    p.add_argument("--gt", dest="gt_dir", metavar="GT", type=Path, required=True,
                   help="ground truth: a folder of <id>.png label maps, or a VOC dataset (the "
                        "output folder of samlabel export, VOCdevkit/ or VOC2012/)")
    add_classes(p)
    p.add_argument("--image-set", dest="image_set", metavar="FILE", type=Path,
                   help="evaluate only the ids listed in this file (ImageSets style, e.g. "
                        "ImageSets/Segmentation/val.txt)")
    p.add_argument("--json", metavar="FILE", type=Path, dest="json_out",
                   help="also write the scores (per class, confusion matrix) as JSON")
    p.set_defaults(func=run)


def _fmt(v: float) -> str:
    return "    -" if math.isnan(v) else f"{100 * v:5.1f}"


def format_table(scores: SegmentationScores) -> str:
    """Per-class IoU and accuracy table, then the summary lines (percentages)."""
    width = max(12, *(len(n) for n in scores.class_names))
    lines = [f"{'class':<{width}}    IoU    Acc", "-" * (width + 15)]
    for name, iou, acc in zip(scores.class_names, scores.iou, scores.accuracy, strict=True):
        lines.append(f"{name:<{width}}  {_fmt(iou)}  {_fmt(acc)}")
    present = int((~np.isnan(scores.iou)).sum())
    lines += ["-" * (width + 15),
              f"{'mIoU':<{width}}  {_fmt(scores.miou)}   ({present} of "
              f"{len(scores.class_names)} classes present, {scores.images} images)",
              f"{'pixel acc.':<{width}}  {_fmt(scores.pixel_accuracy)}",
              f"{'mean acc.':<{width}}  {_fmt(scores.mean_accuracy)}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.core.fsutil import atomic_write_text, write_error
    from napari_samlabel.evaluate.metrics import EvaluationError, evaluate_dirs

    try:
        classes = ClassTable.from_file(args.classes) if args.classes else ClassTable.voc()
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    ids = None
    if args.image_set:
        try:
            ids = [s.split()[0] for s in args.image_set.read_text(encoding="utf-8").splitlines()
                   if s.strip()]
        except OSError as exc:
            raise CLIError(f"cannot read image set {args.image_set}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CLIError(f"image set {args.image_set} is not UTF-8 text") from None
    try:
        with tqdm_progress("eval") as progress:
            scores = evaluate_dirs(args.pred_dir, args.gt_dir, classes, ids=ids,
                                   progress=progress)
    except EvaluationError as exc:
        raise CLIError(str(exc)) from None
    print(format_table(scores))
    if args.json_out:
        try:
            atomic_write_text(args.json_out, json.dumps(scores.to_dict(), indent=1))
        except OSError as exc:  # read-only folder, full disk: the table above stands
            raise CLIError(write_error(args.json_out, exc, "the scores were not saved")) \
                from None
        print(f"scores written to {args.json_out}")
    return 0

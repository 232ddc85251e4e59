"""The review queue on disk: ``queue.csv``, ``queue.json`` and ``failures.txt``.

Written from the ranked :class:`~napari_samlabel.curate.assessment.ImageAssessment` list
(worst first, see :func:`~napari_samlabel.curate.assessment.rank_images`):

``queue.json``
    ``{"format": "samlabel-curation-queue", "schema_version": 2, "image_score": ...,
    "ranking": ..., "thresholds": {...}, "summary": {...}, "images": [...]}``; ``ranking`` is
    ``ground_truth`` when every image was scored against ground truth (score ``1 - `` its
    mIoU, image signal ``gt_miou``), ``signals`` when none was, ``mixed`` otherwise (absent
    from queues written before issue 16, whose image score was the worst object's). Each
    image record has its ``rank``, ``image_id``, ``score``, ``status``, size, ``flags``,
    ``main_reason`` (the strongest evidence), image-level ``signals`` and ``objects`` (each
    with ``object_id``, ``class_id``, ``class_name``, ``area``, ``score``, ``flags``,
    ``main_reason``, raw ``signals`` and per-signal ``badness``). Signals that could not be
    measured are absent; non-finite values are ``null``.
``queue.csv``
    One row per object in rank order (an image without objects has one row with empty object
    columns): ``rank, image_id, image_score, image_flags, main_reason, status, object_id,
    class_id, class_name, object_score, object_flags, object_reason`` and one column per raw
    signal. Flags are joined with ``;``; a reason is a signal name (a badness key of
    :data:`~napari_samlabel.curate.signals.SIGNAL_TEXT`), for the image prefixed with the
    object id (``2:predicted_iou``). Spreadsheet-friendly: filter by flag, sort by any signal.
``failures.txt``
    The ids of the images with at least one flag, one per line, worst first: an
    ``ImageSets``-style list that training scripts take, and that ``samlabel export
    --exclude FILE`` leaves out of train and val.

Every file is written atomically (:mod:`napari_samlabel.core.fsutil`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.curate.assessment import ImageAssessment
from napari_samlabel.curate.signals import (
    FLAG_LEVEL,
    FLAGS,
    NO_OBJECTS_SCORE,
    SIGNAL_TEXT,
    Thresholds,
)

QUEUE_FORMAT = "samlabel-curation-queue"
#: 2: one-to-one ground-truth matching, ``main_reason``, ``box_gap`` and ``gt_merge``.
SCHEMA_VERSION = 2
QUEUE_JSON = "queue.json"
QUEUE_CSV = "queue.csv"
FAILURES_TXT = "failures.txt"

#: How the image score is defined (recorded in queue.json).
IMAGE_SCORE_RULE = ("how much of the image is wrong, 0 to 1: with ground truth, 1 - the "
                    "image's mIoU over the classes present (VOC's rule); without, the mean "
                    "over the classes present, background counted as right, of each class's "
                    "area-weighted object scores (an object's score is the noisy-OR of its "
                    f"weighted signal badness, {FLAG_LEVEL:g} or more exactly when flagged), "
                    f"at least {NO_OBJECTS_SCORE:g} without objects; 1.0 when an annotator "
                    "flagged the image")
#: What ``ranking`` in queue.json says, in words (the report states it).
RANKING_TEXT = {
    "ground_truth": "The ranking uses the ground truth: each image's score is 1 - its mIoU "
                    "against the ground truth (over the classes present, as VOC computes it).",
    "signals": "The ranking uses the failure signals (no ground truth): each image's score "
               "estimates how much of it is wrong from its objects' scores.",
    "mixed": "The ranking uses the ground truth where an image has it (score 1 - its mIoU) "
             "and the failure signals for the images without (an estimate on a similar "
             "scale, not the same one).",
}

#: Raw signal columns of queue.csv, in order.
CSV_SIGNALS = (
    "area", "area_fraction", "predicted_iou", "stability", "disagreement", "iou_spread",
    "positive_outside", "negative_inside", "box_fill", "box_gap", "outside_box", "components",
    "fragment_fraction", "holes", "hole_fraction", "overlap_lost", "gt_iou", "gt_merge",
)
CSV_COLUMNS = ("rank", "image_id", "image_score", "image_flags", "main_reason", "status",
               "object_id", "class_id", "class_name", "object_score", "object_flags",
               "object_reason") + CSV_SIGNALS


def class_name(classes: ClassTable, class_id: int) -> str:
    """Name of ``class_id`` in ``classes``, or the number when the table has no such class."""
    try:
        return classes.name(class_id)
    except IndexError:
        return str(class_id)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}"


def reason_key(reason: Mapping[str, Any] | None) -> str:
    """A main reason as a short key: ``signal``, or ``object_id:signal`` for an object's."""
    if not reason:
        return ""
    oid = reason.get("object_id")
    return f"{reason['signal']}" if oid is None else f"{oid}:{reason['signal']}"


def queue_records(ranked: Sequence[ImageAssessment],
                  classes: ClassTable | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """JSON records of the ranked images, with class names added to the objects."""
    table = as_class_table(classes)
    out = []
    for a in ranked:
        rec = a.to_dict()
        for o in rec["objects"]:
            o["class_name"] = class_name(table, o["class_id"])
        out.append(rec)
    return out


def failures(ranked: Sequence[ImageAssessment]) -> list[str]:
    """Ids of the images with at least one flag, in rank order."""
    return [a.image_id for a in ranked if a.flags]


def csv_text(ranked: Sequence[ImageAssessment],
             classes: ClassTable | Sequence[str] | None = None) -> str:
    """The ``queue.csv`` content (see the module docstring)."""
    table = as_class_table(classes)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in ranked:
        head = [a.rank if a.rank is not None else "", a.image_id, _fmt(a.score),
                ";".join(a.flags), reason_key(a.main_reason), a.status or ""]
        if not a.objects:
            writer.writerow(head + [""] * (len(CSV_COLUMNS) - len(head)))
            continue
        for o in a.objects:
            writer.writerow(head + [o.object_id, o.class_id, class_name(table, o.class_id),
                                    _fmt(o.score), ";".join(o.flags),
                                    reason_key(o.main_reason)]
                            + [_fmt(o.signals.get(s)) for s in CSV_SIGNALS])
    return buf.getvalue()


def ranking_basis(ranked: Sequence[ImageAssessment]) -> str:
    """``ground_truth``, ``signals`` or ``mixed``: what the images' scores were computed from.

    An image was scored against ground truth when it has the image signal ``gt_miou``.
    """
    with_gt = sum(1 for a in ranked if "gt_miou" in a.signals)
    if with_gt and with_gt == len(ranked):
        return "ground_truth"
    return "mixed" if with_gt else "signals"


def summary(ranked: Sequence[ImageAssessment]) -> dict[str, Any]:
    """Counts: images, objects, flagged images, and images per flag."""
    per_flag: dict[str, int] = {}
    for a in ranked:
        for f in a.flags:
            per_flag[f] = per_flag.get(f, 0) + 1
    return {"images": len(ranked), "objects": sum(len(a.objects) for a in ranked),
            "flagged_images": len(failures(ranked)),
            "images_with_ground_truth": sum(1 for a in ranked if "gt_miou" in a.signals),
            "images_per_flag": dict(sorted(per_flag.items(), key=lambda kv: (-kv[1], kv[0])))}


def write_queue(
    out_dir: str | os.PathLike[str],
    ranked: Sequence[ImageAssessment],
    classes: ClassTable | Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``queue.json``, ``queue.csv`` and ``failures.txt`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed). Only these three files are replaced.
    ranked : sequence of ImageAssessment
        Images in rank order (see :func:`~napari_samlabel.curate.assessment.rank_images`).
    classes : ClassTable or list of str, optional
        For class names (default: the VOC classes).
    thresholds : Thresholds, optional
        The flag thresholds used (recorded in ``queue.json``; default: the defaults).
    meta : mapping, optional
        Extra JSON-ready fields for ``queue.json`` (the source folder, for example).

    Returns
    -------
    dict
        ``{"json": path, "csv": path, "failures": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": QUEUE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "written_by": f"napari-samlabel {__version__}",
        "created": time.time(),
        **dict(meta or {}),
        "image_score": IMAGE_SCORE_RULE,
        "ranking": ranking_basis(ranked),
        "thresholds": asdict(thresholds or Thresholds()),
        "flags": FLAGS,
        "reasons": SIGNAL_TEXT,
        "summary": summary(ranked),
        "images": queue_records(ranked, classes),
    }
    paths = {"json": out / QUEUE_JSON, "csv": out / QUEUE_CSV, "failures": out / FAILURES_TXT}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1) + "\n")
    atomic_write_text(paths["csv"], csv_text(ranked, classes))
    ids = failures(ranked)
    atomic_write_text(paths["failures"], "".join(f"{i}\n" for i in ids))
    return paths


def read_queue(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``queue.json`` (or the folder holding it), checking its format and version.

    Raises
    ------
    ValueError
        If the file is missing, not JSON, not a curation queue, or from a newer version;
        the message names the file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / QUEUE_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"curation queue not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read curation queue {p}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != QUEUE_FORMAT:
        raise ValueError(f"{p} is not a curation queue (field 'format' is not "
                         f"{QUEUE_FORMAT!r})")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"{p}: schema_version {version!r} is newer than this version of "
                         f"napari-samlabel reads ({SCHEMA_VERSION}); upgrade napari-samlabel")
    if not isinstance(data.get("images"), list):
        raise ValueError(f"{p}: field 'images' must be a list")
    return data


__all__ = [
    "CSV_COLUMNS", "CSV_SIGNALS", "FAILURES_TXT", "IMAGE_SCORE_RULE", "QUEUE_CSV",
    "QUEUE_FORMAT", "QUEUE_JSON", "RANKING_TEXT", "SCHEMA_VERSION", "class_name", "csv_text",
    "failures", "queue_records", "ranking_basis", "read_queue", "reason_key", "summary",
    "write_queue",
]

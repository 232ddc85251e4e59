"""The review queue on disk: ``queue.csv``, ``queue.json`` and ``failures.txt``.

Written from the ranked :class:`~napari_samlabel.curate.signals.ImageAssessment` list
(worst first, see :func:`~napari_samlabel.curate.signals.rank_images`):

``queue.json``
    ``{"format": "samlabel-curation-queue", "schema_version": 2, "image_score": ...,
    "thresholds": {...}, "summary": {...}, "images": [...]}``; each image record has its
    ``rank``, ``image_id``, ``score``, ``status``, size, ``flags``, ``main_reason`` (what set
    the score), image-level ``signals`` and ``objects`` (each with ``object_id``,
    ``class_id``, ``class_name``, ``area``, ``score``, ``flags``, ``main_reason``, raw
    ``signals`` and per-signal ``badness``). Signals that could not be measured are absent;
    non-finite values are ``null``.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.curate.signals import (
    FLAG_LEVEL,
    FLAGS,
    NO_OBJECTS_SCORE,
    SIGNAL_TEXT,
    GroundTruth,
    ImageAssessment,
    Thresholds,
    assess_image,
    rank_images,
)

QUEUE_FORMAT = "samlabel-curation-queue"
#: 2: one-to-one ground-truth matching, ``main_reason``, ``box_gap`` and ``gt_merge``.
SCHEMA_VERSION = 2
QUEUE_JSON = "queue.json"
QUEUE_CSV = "queue.csv"
FAILURES_TXT = "failures.txt"

#: How the image score is defined (recorded in queue.json).
IMAGE_SCORE_RULE = (f"max of the image's object scores (noisy-OR of weighted signal "
                    f"badness; {FLAG_LEVEL:g} or more exactly when flagged); at least "
                    f"{NO_OBJECTS_SCORE:g} without objects, at least {FLAG_LEVEL:g} + "
                    f"{1 - FLAG_LEVEL:g} x the fraction of ground-truth objects missed, 1.0 "
                    "when an annotator flagged the image")

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


def summary(ranked: Sequence[ImageAssessment]) -> dict[str, Any]:
    """Counts: images, objects, flagged images, and images per flag."""
    per_flag: dict[str, int] = {}
    for a in ranked:
        for f in a.flags:
            per_flag[f] = per_flag.get(f, 0) + 1
    return {"images": len(ranked), "objects": sum(len(a.objects) for a in ranked),
            "flagged_images": len(failures(ranked)),
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
        Images in rank order (see :func:`~napari_samlabel.curate.signals.rank_images`).
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


# --------------------------------------------------------------------------------------------
# Sources: a project folder or a VOC tree, and ground truth
# --------------------------------------------------------------------------------------------
@dataclass
class CurationItem:
    """One image to assess: its objects (masks, prompts, scores) and status."""

    image_id: str
    shape: tuple[int, int]
    objects: list[AnnotatedObject]
    status: str | None = None


class ProjectSource:
    """The annotated images of a project folder (:mod:`napari_samlabel.io.project`).

    Images with status ``new`` and no saved object are not annotated yet and are skipped.
    Objects carry their prompts, SAM score and stored signals.
    """

    kind = "project"

    def __init__(self, folder: Path) -> None:
        from napari_samlabel.io.project import Project

        self.project = Project.open(folder)
        self.folder = self.project.folder
        self.classes = self.project.classes

    def __len__(self) -> int:
        return len(self.project)

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per annotated image, or ``(image_id, error)`` for a broken one."""
        from napari_samlabel.core.document import ImageStatus
        from napari_samlabel.io.project import ProjectError

        for entry in self.project:
            try:
                objects = self.project.read_objects(entry.image_id)
            except (ProjectError, OSError) as exc:
                yield entry.image_id, exc
                continue
            if entry.status == ImageStatus.NEW and not objects:
                yield CurationItem(entry.image_id, entry.shape, [], None)
                continue
            yield CurationItem(entry.image_id, entry.shape, objects, entry.status.value)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        return load_image(self.project.image_path(image_id)), \
            self.project.read_objects(image_id)


def import_voc_min_area() -> int:
    """The ``min_area`` that ``samlabel import-voc`` uses by default (pixels).

    Read from :func:`napari_samlabel.io.voc_project.import_voc` itself, so that curation and
    import turn a class map into the same objects, whatever that default becomes.
    """
    from napari_samlabel.io.voc_project import import_voc

    return int((import_voc.__kwdefaults__ or {})["min_area"])


class VocSource:
    """The images of a VOC tree (ground truth or pseudo labels, :mod:`napari_samlabel.io.voc`).

    Each instance (``SegmentationObject``, else each connected class region of at least
    ``min_area`` pixels: VOC's class maps have specks of 1-5 pixels between their void bands)
    becomes one object; its class is its ``Annotations`` entry's, else the majority class of
    its pixels. That is the rule of ``samlabel import-voc``, with its default ``min_area``
    (:func:`import_voc_min_area`). Without prompts and SAM scores only the mask-based
    signals apply.
    """

    kind = "voc"

    def __init__(self, folder: Path, min_area: int | None = None) -> None:
        from napari_samlabel.io.voc import VocError, find_voc_root, read_voc_classes

        self.min_area = import_voc_min_area() if min_area is None else int(min_area)
        self.folder = find_voc_root(folder)
        self.classes = read_voc_classes(self.folder)
        seg = self.folder / "SegmentationClass"
        if not seg.is_dir():
            raise VocError(f"{self.folder} has no SegmentationClass folder")
        self.ids = sorted(p.stem for p in seg.glob("*.png") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self, image_id: str) -> tuple[Path, tuple[int, int], list[AnnotatedObject]]:
        """Image path, shape and objects of one image, read the way ``read_voc`` reads them.

        Read image by image (not through the ``read_voc`` generator) so that one broken file
        skips one image instead of ending the run.
        """
        from napari_samlabel.io.images import image_size
        from napari_samlabel.io.voc import (
            VocError,
            find_image,
            instances_from_components,
            parse_annotation,
            read_label_png,
        )
        from napari_samlabel.io.voc_project import objects_from_maps

        png = self.folder / "SegmentationClass" / f"{image_id}.png"
        semantic = read_label_png(png)
        image = find_image(self.folder / "JPEGImages", image_id)
        size = image_size(image)
        if size != semantic.shape:
            raise VocError(f"{png} is {semantic.shape[0]}x{semantic.shape[1]} but its image "
                           f"{image} is {size[0]}x{size[1]} (HxW)")
        obj_png = self.folder / "SegmentationObject" / png.name
        xml = self.folder / "Annotations" / f"{image_id}.xml"
        infos: list[Any] = []
        if obj_png.is_file():
            instance = read_label_png(obj_png)
            if instance.shape != semantic.shape:
                raise VocError(f"{obj_png} is {instance.shape} but {png} is {semantic.shape}")
            if xml.is_file():
                infos = parse_annotation(xml, self.classes)[1]
        else:
            # XML order would not match the components, so the XML is not read.
            instance = instances_from_components(semantic, self.min_area)
        # The VOC -> objects rule of `samlabel import-voc`, so that both agree.
        objects = objects_from_maps(semantic, instance, infos, self.classes, image_id)
        return image, (int(semantic.shape[0]), int(semantic.shape[1])), objects

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per image with a ``SegmentationClass`` PNG (sorted by id)."""
        for iid in self.ids:
            try:
                _, shape, objects = self._read(iid)
            except (ValueError, OSError) as exc:
                yield iid, exc
                continue
            yield CurationItem(iid, shape, objects, None)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        image, _, objects = self._read(image_id)
        return load_image(image), objects


class PseudoSource:
    """The output folder of ``samlabel pseudo-label`` (:mod:`napari_samlabel.pseudo.store`).

    Reads ``scores/<id>.json`` (one record per segmented unit: class, SAM's predicted IoU
    ``score``, the predicted IoUs of all candidate masks ``ious``, and when the run stored
    them ``stability``, ``disagreement`` and ``iou_spread``) and the unit map
    ``SegmentationObject/<id>.png`` (unit ``k`` has value ``k``): each unit becomes one object
    whose mask is the pixels it kept after composition. With ``weak`` (the weak labels the
    run used) each unit also gets its prompts: its own positive prompts (all prompts of its
    class for a run by class, its own for a run by object) plus, as negatives, the
    background prompts and the other classes' points and scribbles, whether or not the
    policy fed them to SAM: another class's click inside the mask is a failure either way.
    """

    kind = "pseudo"

    def __init__(self, folder: Path, weak: str | os.PathLike[str] | None = None) -> None:
        from napari_samlabel.core.classes import ClassTable
        from napari_samlabel.pseudo.store import SCORES_DIR, ResultStore

        self.folder = Path(folder).absolute()
        self.store = ResultStore(self.folder)
        run_file = self.folder / "run.json"
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
            names = run["classes"]
            self.classes = ClassTable(tuple(names))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{run_file}: cannot read the run settings ({exc})") from None
        self.weak_kind = run.get("kind")
        self.ids = sorted(p.stem for p in (self.folder / SCORES_DIR).glob("*.json")
                          if not p.name.startswith("."))
        self.weak: dict[str, Any] | None = None
        if weak is not None:
            from napari_samlabel.io.weak import read_weak_labels

            if self.weak_kind is None:
                raise ValueError(f"{run_file} does not say which kind of weak labels the "
                                 "run used (field 'kind')")
            self.weak = read_weak_labels(Path(weak), self.weak_kind, self.classes)

    @staticmethod
    def is_pseudo(folder: str | os.PathLike[str]) -> bool:
        """True when ``folder`` looks like a pseudo-label output folder."""
        from napari_samlabel.pseudo.store import CLASS_DIR, OBJECT_DIR, SCORES_DIR

        f = Path(folder)
        return all((f / d).is_dir() for d in (CLASS_DIR, OBJECT_DIR, SCORES_DIR)) and \
            (f / "run.json").is_file()

    def __len__(self) -> int:
        return len(self.ids)

    def _prompts(self, image_id: str, rec: Mapping[str, Any], unit: str) -> tuple:
        from napari_samlabel.core.prompts import ObjectPrompts

        weak = (self.weak or {}).get(image_id)
        if weak is None:
            return ()
        cid = int(rec["class_id"])
        if unit == "class":
            own: ObjectPrompts | None = weak.by_class().get(cid)
        else:
            own = next((o for o in weak.objects if o.object_id == int(rec["object_id"])), None)
        positives = own.prompts if own is not None else ()
        return tuple(positives) + tuple(weak.negatives_for(cid))

    def _read(self, image_id: str) -> tuple[dict[str, Any], list[AnnotatedObject]]:
        rec = self.store.read_record(image_id)
        where = self.store.record_path(image_id)
        if rec is None:
            raise ValueError(f"{where}: missing or not JSON")
        semantic, instance = self.store.read_maps(image_id)
        unit = str(rec.get("unit", "object"))
        objects = []
        units = rec.get("objects")
        if not isinstance(units, list):
            raise ValueError(f"{where}: field 'objects' must be a list")
        for n, u in enumerate(units):
            try:
                k = int(u["unit"])
                score = u.get("score")
                ious = [float(v) for v in u.get("ious") or []]
                # Signals a run may store per unit are used as given.
                signals = {name: float(u[name])
                           for name in ("stability", "disagreement", "iou_spread")
                           if isinstance(u.get(name), (int, float))
                           and not isinstance(u.get(name), bool)}
                if len(ious) > 1:
                    signals.setdefault("iou_spread", max(ious) - min(ious))
                if u.get("mask_pixels"):
                    signals["overlap_lost"] = 1.0 - float(u.get("pixels", 0)) / float(
                        u["mask_pixels"])
                objects.append(AnnotatedObject(
                    k, int(u["class_id"]), instance == k, self._prompts(image_id, u, unit),
                    None if score is None else float(score), rec.get("model_id"), signals))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: objects[{n}]: {exc}") from None
        return rec, objects

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per finished image."""
        for iid in self.ids:
            try:
                rec, objects = self._read(iid)
                shape = tuple(int(v) for v in rec.get("shape") or objects[0].mask.shape)
            except (ValueError, OSError, IndexError) as exc:
                yield iid, exc
                continue
            yield CurationItem(iid, (shape[0], shape[1]), objects, None)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        rec, objects = self._read(image_id)
        return load_image(rec["image"]), objects


def open_source(path: str | os.PathLike[str], weak: str | os.PathLike[str] | None = None,
                min_area: int | None = None) -> ProjectSource | PseudoSource | VocSource:
    """Open ``path`` as a project folder, a pseudo-label output folder, or a VOC tree.

    ``weak`` (the weak labels of a pseudo-label run) applies to a pseudo-label folder only;
    ``min_area`` to a VOC tree only (see :class:`VocSource`).

    Raises
    ------
    ValueError
        If ``path`` is neither (the message says what was looked for).
    """
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.voc import VocError

    folder = Path(path)
    if not folder.exists():
        raise ValueError(f"{folder} not found")
    if PseudoSource.is_pseudo(folder):
        return PseudoSource(folder, weak)
    if weak is not None:
        raise ValueError(f"weak labels apply to the output folder of samlabel pseudo-label "
                         f"(with run.json and scores/), and {folder} is not one")
    if Project.is_project(folder):
        return ProjectSource(folder)
    try:
        return VocSource(folder, min_area)
    except VocError as exc:
        raise ValueError(f"{folder} is neither a napari-samlabel project (no "
                         f"samlabel-project.json), nor a pseudo-label output (no run.json and "
                         f"scores/), nor a VOC tree: {exc}") from None


class GroundTruthFolder:
    """Ground-truth label PNGs by image id.

    ``path`` is a VOC tree (``SegmentationClass/`` and, when present, ``SegmentationObject/``
    for instances) or a plain folder of ``<id>.png`` class maps (compared with whole class
    regions then).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from napari_samlabel.io.voc import VocError, find_voc_root

        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"ground-truth folder not found: {folder}")
        self.semantic_dir = folder
        self.instance_dir: Path | None = None
        try:
            voc = find_voc_root(folder)
        except VocError:
            voc = None
        if voc is not None and (voc / "SegmentationClass").is_dir():
            self.semantic_dir = voc / "SegmentationClass"
            if (voc / "SegmentationObject").is_dir():
                self.instance_dir = voc / "SegmentationObject"
        if not any(self.semantic_dir.glob("*.png")):
            raise ValueError(f"no ground-truth PNGs in {self.semantic_dir}")

    def get(self, image_id: str, shape: tuple[int, int]) -> GroundTruth | None:
        """Ground truth of ``image_id`` (None when it has none).

        Raises
        ------
        ValueError
            If a PNG is unreadable or its size differs from ``shape`` (names the file).
        """
        from napari_samlabel.io.voc import read_label_png

        png = self.semantic_dir / f"{image_id}.png"
        if not png.is_file():
            return None
        semantic = read_label_png(png)
        instance = None
        if self.instance_dir is not None and (self.instance_dir / png.name).is_file():
            instance = read_label_png(self.instance_dir / png.name)
        for p, arr in ((png, semantic), (self.instance_dir and self.instance_dir / png.name,
                                         instance)):
            if arr is not None and arr.shape != tuple(shape):
                raise ValueError(f"ground truth {p} is {arr.shape[0]}x{arr.shape[1]} but the "
                                 f"image is {shape[0]}x{shape[1]} (HxW)")
        return GroundTruth(semantic, instance)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
@dataclass
class CurationResult:
    """What :func:`curate` did."""

    ranked: list[ImageAssessment]
    paths: dict[str, Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unannotated: int = 0
    without_gt: int = 0

    def summary(self) -> str:
        """A few lines for the terminal."""
        flagged = len(failures(self.ranked))
        lines = [f"{len(self.ranked)} images assessed, {flagged} flagged "
                 f"(failures: {self.paths['failures']})",
                 f"report: {self.paths['report']}"]
        if self.ranked:
            worst = ", ".join(f"{a.image_id} ({a.score:.2f})" for a in self.ranked[:5])
            lines.insert(1, f"worst: {worst}")
        if self.unannotated:
            lines.append(f"{self.unannotated} images not annotated yet (status new) were left "
                         "out")
        if self.without_gt:
            lines.append(f"{self.without_gt} images have no ground truth")
        for iid, msg in self.skipped:
            lines.append(f"skipped {iid}: {msg}")
        return "\n".join(lines)


def curate(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    gt: str | os.PathLike[str] | None = None,
    weak: str | os.PathLike[str] | None = None,
    top: int = 50,
    thresholds: Thresholds | None = None,
    max_side: int = 320,
    min_area: int | None = None,
    progress: ProgressCallback = no_progress,
    report_progress: ProgressCallback = no_progress,
) -> CurationResult:
    """Assess every image of a project or VOC tree, rank them, write the queue and report.

    Parameters
    ----------
    source : path
        A project folder, a pseudo-label output folder or a VOC tree (see
        :func:`open_source`).
    out_dir : path
        Output folder (created if needed); only the queue files, ``report.html`` and
        ``thumbnails/`` in it are replaced.
    gt : path, optional
        Ground truth (see :class:`GroundTruthFolder`).
    weak : path, optional
        The weak labels of a pseudo-label run (see :class:`PseudoSource`).
    top : int
        Number of images in the HTML report.
    thresholds : Thresholds, optional
        Flag thresholds (default: the documented defaults).
    max_side : int
        Longest thumbnail side.
    min_area : int, optional
        VOC trees without ``SegmentationObject``: class regions smaller than this many pixels
        are not objects (default: that of ``samlabel import-voc``, see :class:`VocSource`).
    progress, report_progress : callable
        ``progress(done, total, image_id)`` while assessing and while rendering thumbnails.

    Raises
    ------
    ValueError
        If the source or the ground-truth folder cannot be opened. A broken image (unreadable
        mask, bad ground truth) is skipped and listed in ``CurationResult.skipped`` and in
        ``queue.json`` instead.
    """
    from napari_samlabel.curate.report import write_report

    thresholds = thresholds or Thresholds()
    src = open_source(source, weak, min_area)
    truth = GroundTruthFolder(gt) if gt is not None else None
    total = len(src)
    assessed: list[ImageAssessment] = []
    skipped: list[tuple[str, str]] = []
    unannotated = without_gt = 0
    for n, item in enumerate(src.items(), 1):
        if isinstance(item, tuple):
            skipped.append((item[0], str(item[1])))
            progress(n, total, item[0])
            continue
        if src.kind == "project" and item.status is None:
            unannotated += 1
            progress(n, total, item.image_id)
            continue
        try:
            truth_item = truth.get(item.image_id, item.shape) if truth is not None else None
            if truth is not None and truth_item is None:
                without_gt += 1
            parts = [o.object_id for o in item.objects if src.classes.is_part(o.class_id)]
            assessed.append(assess_image(item.image_id, item.shape, item.objects,
                                         gt=truth_item, status=item.status,
                                         thresholds=thresholds, parts=parts))
        except ValueError as exc:
            skipped.append((item.image_id, str(exc)))
        progress(n, total, item.image_id)
    ranked = rank_images(assessed)
    meta = {"source": str(src.folder), "source_kind": src.kind,
            "ground_truth": None if truth is None else str(truth.semantic_dir),
            "skipped": [{"image_id": i, "error": m} for i, m in skipped],
            "unannotated": unannotated, "without_gt": without_gt}
    paths = write_queue(out_dir, ranked, src.classes, thresholds, meta)
    shapes = {a.image_id: a.shape for a in ranked}

    def load_gt(image_id: str) -> GroundTruth | None:
        return truth.get(image_id, shapes[image_id]) if truth is not None else None

    paths["report"] = write_report(out_dir, ranked, src.load, src.classes, top=top,
                                   max_side=max_side, progress=report_progress,
                                   title=f"Curation report: {src.folder.name}",
                                   load_gt=load_gt if truth is not None else None)
    return CurationResult(ranked, paths, skipped, unannotated, without_gt)


__all__ = [
    "CSV_COLUMNS", "FAILURES_TXT", "IMAGE_SCORE_RULE", "QUEUE_CSV", "QUEUE_FORMAT",
    "QUEUE_JSON", "SCHEMA_VERSION", "CurationItem", "CurationResult", "GroundTruthFolder",
    "ProjectSource", "PseudoSource", "VocSource", "class_name", "csv_text", "curate", "failures",
    "import_voc_min_area", "open_source", "queue_records", "read_queue", "reason_key",
    "summary", "write_queue",
]

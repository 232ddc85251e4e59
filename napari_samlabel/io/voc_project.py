"""Project <-> PASCAL VOC: export a project as a VOC dataset, import a VOC dataset as a project.

Which images an export contains (by status, see :class:`napari_samlabel.core.document.
ImageStatus`):

- ``done``: written and put into train or val: the split stored in the project
  (:meth:`Project.split`, e.g. from an imported VOC set) when there is one, otherwise the
  seeded split (``fresh_split`` ignores the stored splits).
- ``flagged`` (a failure the annotator or the curation queue marked): written, but listed only
  in ``ImageSets/Segmentation/excluded.txt``, never in train or val, unless
  ``include_flagged``.
- ``in_progress``: left out (its label map is incomplete: unlabelled objects would be
  taught as background) unless ``include_unfinished``.
- ``new``: never written (nothing annotated).

Review decisions (:meth:`Project.set_review`) and an exclude list narrow this down: an image
whose decision is ``rejected`` or whose id is in ``exclude`` is written but listed only in
``excluded.txt``, whatever the other options; ``needs_work`` is treated like ``flagged``.

An import builds the project in a temporary folder beside the target and renames it into
place at the end, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable
from napari_samlabel.core.document import AnnotatedObject, AnnotationDocument, ImageStatus
from napari_samlabel.core.fsutil import WriteError, make_temp_dir
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.project import Project, ProjectError
from napari_samlabel.io.voc import (
    EXCLUDED,
    ObjectInfo,
    SpeckReport,
    VocError,
    VocWriter,
    read_voc,
)

#: Why an exported image is kept out of train and val (keys of ``ExportReport.excluded``).
EXCLUDE_REASONS = ("rejected", "exclude list", "flagged", "needs_work")

IMPORT_MODEL_ID = "voc-import"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass
class ExportReport:
    """What an export wrote."""

    root: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dropped_objects: list[tuple[str, int]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    #: ``{reason: [image ids]}`` of the images listed in ``excluded.txt`` (project ids).
    excluded: dict[str, list[str]] = field(default_factory=dict)
    #: Ids of the exclude list that are not images of the project.
    unknown_excluded: list[str] = field(default_factory=list)
    #: Images whose split came from the project rather than the seeded split.
    stored_splits: int = 0

    def summary(self) -> str:
        """One human-readable line."""
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.splits.items())
        out = f"wrote {self.root}: {counts}"
        why = ", ".join(f"{len(v)} {k}" for k, v in self.excluded.items() if v)
        if why:
            out += f" ({why})"
        if self.stored_splits:
            out += f"; {self.stored_splits} images kept their stored split"
        for status, ids in self.skipped.items():
            if ids:
                out += f"; skipped {len(ids)} {status}"
        if self.dropped_objects:
            out += f"; {len(self.dropped_objects)} fully hidden objects left out"
        return out


@dataclass
class ImportReport:
    """What an import made; pass one to :func:`import_voc` to have it filled."""

    folder: Path | None = None
    images: int = 0
    objects: int = 0
    classes: int = 0  # without background
    min_area: int = 0
    #: ``{image_id: SpeckReport}`` of the images that had class regions under ``min_area``.
    specks: dict[str, SpeckReport] = field(default_factory=dict)
    #: Number of images per stored split (``train``, ``val``, ``none``).
    splits: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable lines: totals, then one line per image with small regions."""
        splits = ", ".join(f"{self.splits[k]} {k}" for k in ("train", "val")
                           if self.splits.get(k))
        lines = [f"created project {self.folder}: {self.images} images, {self.objects} "
                 f"objects, {self.classes} classes"
                 + (f"; stored split: {splits}" if splits else "")]
        if self.specks:
            merged = sum(r.merged for r in self.specks.values())
            grouped = sum(r.grouped for r in self.specks.values())
            pixels = sum(r.merged_pixels + r.grouped_pixels for r in self.specks.values())
            lines.append(f"{merged + grouped} class regions under {self.min_area} px "
                         f"({pixels} px) in {len(self.specks)} images: {merged} merged into the "
                         f"nearest object of their class, {grouped} kept as one object of a "
                         "class with nothing larger (no pixel lost)")
            for iid, rep in self.specks.items():
                lines.append(f"  {iid}: {rep.describe(self.min_area)}")
        return "\n".join(lines)


def voc_id(image_id: str) -> str:
    """A VOC-safe id: characters other than letters, digits and ``_.+-`` become ``_``."""
    safe = _UNSAFE.sub("_", image_id)
    return safe if not safe.startswith(".") else "_" + safe[1:]


def export_project(
    project: Project | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_fraction: float = 0.8,
    seed: int = 0,
    border: int = 0,
    include_flagged: bool = False,
    include_unfinished: bool = False,
    overwrite: bool = False,
    fresh_split: bool = False,
    exclude: Iterable[str] = (),
    progress: ProgressCallback = no_progress,
) -> ExportReport:
    """Export the annotated images of ``project`` to ``out/VOCdevkit/VOC2012``.

    Label maps are composed from the objects with the overlap rule of
    :mod:`napari_samlabel.core.compose`. Parameters ``train_fraction``, ``seed``, ``border``
    and ``overwrite`` are :class:`napari_samlabel.io.voc.VocWriter`'s; the seeded split
    applies to the images without a stored split, or to all with ``fresh_split``. The
    objects' ``pose``, ``truncated`` and ``difficult`` attributes go into the XML.
    ``exclude`` lists image ids (project ids or their VOC form) kept out of train and val;
    see the module docstring for which images go where.

    Raises
    ------
    FileExistsError
        If ``out`` is a non-empty folder and ``overwrite`` is False.
    ProjectError, VocError
        On bad project content or images; nothing is written to ``out`` then.
    napari_samlabel.core.fsutil.WriteError
        (an ``OSError``) when writing fails (disk full, file too large...): the message
        names the file and says that nothing was changed.
    """
    if not isinstance(project, Project):
        project = Project.open(project)
    target = Path(out).absolute().resolve()
    if target == project.folder.resolve() or target in project.folder.resolve().parents:
        raise VocError(f"output folder {target} would contain the project {project.folder}; "
                       "choose a folder outside the project")
    exclude_set = set(exclude)
    known = set(project.image_ids) | {voc_id(i) for i in project.image_ids}
    chosen: list[tuple[str, str | None]] = []
    skipped: dict[str, list[str]] = {s.value: [] for s in ImageStatus}
    excluded: dict[str, list[str]] = {r: [] for r in EXCLUDE_REASONS}
    stored = 0
    for entry in project:
        status = entry.status
        if status == ImageStatus.NEW or (status == ImageStatus.IN_PROGRESS
                                         and not include_unfinished):
            skipped[status.value].append(entry.image_id)
            continue
        decision = entry.review.decision if entry.review is not None else None
        reason = None
        if decision == "rejected":
            reason = "rejected"
        elif entry.image_id in exclude_set or voc_id(entry.image_id) in exclude_set:
            reason = "exclude list"
        elif status == ImageStatus.FLAGGED and not include_flagged:
            reason = "flagged"
        elif decision == "needs_work" and not include_flagged:
            reason = "needs_work"
        if reason is not None:
            excluded[reason].append(entry.image_id)
            chosen.append((entry.image_id, EXCLUDED))
        elif entry.split is not None and not fresh_split:
            stored += 1
            chosen.append((entry.image_id, entry.split))
        else:
            chosen.append((entry.image_id, None))
    renamed: dict[str, str] = {}
    owner: dict[str, str] = {}
    for iid, _ in chosen:
        safe = voc_id(iid)
        if safe in owner:
            raise VocError(f"images {owner[safe]!r} and {iid!r} both become {safe!r} in VOC "
                           "(VOC ids cannot hold spaces or other special characters); "
                           "rename one of the files")
        owner[safe] = iid
        if safe != iid:
            renamed[iid] = safe
    if overwrite and target.exists():
        for iid, _ in chosen:
            if target in project.image_path(iid).parents:
                raise VocError(f"image {project.image_path(iid)} of the project lies inside "
                               f"{target}, which overwriting would delete; export to another "
                               "folder (or import with --copy-images)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped objects are in the report
        with VocWriter(out, project.classes, border=border, train_fraction=train_fraction,
                       seed=seed, overwrite=overwrite, progress=progress,
                       total=len(chosen)) as writer:
            for iid, split in chosen:
                doc = project.load_document(iid)
                semantic, instance = doc.label_maps()
                objects = [_object_info(o) for o in doc.objects]
                writer.add(voc_id(iid), project.image_path(iid), semantic, instance, objects,
                           split)
    final = writer.splits
    splits = {s: sorted(i for i, v in final.items() if v == s) for s in ("train", "val",
                                                                           EXCLUDED)}
    return ExportReport(writer.out / "VOCdevkit" / "VOC2012", splits,
                        {k: v for k, v in skipped.items() if v}, writer.dropped_objects,
                        renamed, {k: v for k, v in excluded.items() if v},
                        sorted(exclude_set - known), stored)


def _object_info(obj: AnnotatedObject) -> ObjectInfo:
    """XML metadata of an object: its VOC attributes, defaults for the others."""
    attrs = obj.attributes
    return ObjectInfo(obj.object_id, obj.class_id, pose=str(attrs.get("pose", "Unspecified")),
                      truncated=attrs.get("truncated"),
                      difficult=bool(attrs.get("difficult", False)))


def _fill_void(instance: np.ndarray, distance: int) -> np.ndarray:
    """Give void pixels within ``distance`` px of a label to the nearest label.

    Background counts as a label, so a void band straddling an object's edge is split between
    the object and the background as the edge runs through it.
    """
    from skimage.segmentation import expand_labels

    if distance <= 0 or not (instance == VOID).any():
        return instance
    lab = instance.astype(np.int32)
    bg = VOID + 1
    lab[instance == 0] = bg  # background is a label too, so it is not grown into
    lab[instance == VOID] = 0
    grown = expand_labels(lab, distance)
    grown[grown == 0] = VOID  # void farther than ``distance`` stays void
    grown[grown == bg] = 0
    return grown.astype(np.uint8)


def import_voc(
    voc_root: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    classes: ClassTable | None = None,
    copy_images: bool = False,
    fill_void: int = 0,
    min_area: int = 10,
    status: ImageStatus | str = ImageStatus.DONE,
    progress: ProgressCallback = no_progress,
    report: ImportReport | None = None,
) -> Project:
    """Turn a VOC dataset into a new project in ``folder``.

    Each instance of ``SegmentationObject`` (or, without it, each 8-connected component of a
    class, see :func:`napari_samlabel.io.voc.read_voc`) becomes one accepted object with no
    prompts and ``model_id = "voc-import"``; its class is the majority class of its pixels in
    ``SegmentationClass`` (the ``Annotations`` class only for an instance that is all void).
    The ``pose``, ``truncated`` and ``difficult`` flags of its ``Annotations`` object become
    its attributes, and the image keeps its ``ImageSets/Segmentation`` split
    (:meth:`Project.split`), so exporting again reproduces train and val.
    Void (255) pixels belong to no object (they become background in the project) unless
    ``fill_void`` gives those within that many pixels of a label to the nearest label, object
    or background (VOC's 4 px border band: ``fill_void=3`` leaves 1.8 % of the sample's
    void, its "difficult" regions).

    Parameters
    ----------
    voc_root : path
        See :func:`napari_samlabel.io.voc.find_voc_root`.
    folder : path
        New project folder; must not exist or be empty.
    classes : ClassTable, optional
        Default: the dataset's ``labelmap.txt``, else the 21 VOC classes.
    copy_images : bool
        Copy the images into ``folder/images`` instead of referring to them where they are.
    min_area : int
        Without ``SegmentationObject``, class regions smaller than this many pixels are not
        made objects of their own (VOC's ground truth has specks of 1-5 pixels between its
        void bands): they join the nearest larger object of their class, or, when the class
        has nothing larger in the image, they form one object together; no class pixel
        becomes background. Instances of ``SegmentationObject`` are always kept.
    report : ImportReport, optional
        Filled with counts: images, objects, splits and the small regions per image.

    Raises
    ------
    FileExistsError
        If ``folder`` exists and is not empty.
    VocError, ProjectError
        On bad dataset content; nothing is left in ``folder`` then.
    napari_samlabel.core.fsutil.WriteError
        (an ``OSError``) when writing fails (disk full...), naming the file; nothing is left
        in ``folder`` then.
    """
    from napari_samlabel.io.voc import find_voc_root, read_voc_classes

    target = Path(folder).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"project folder {target} exists and is not empty")
    voc = find_voc_root(voc_root)
    classes = classes or read_voc_classes(voc)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.", ".import-tmp")
    try:
        project = Project.create(tmp, [], classes)
        with project.batch():  # one write of the project file, not two per image
            for rec in read_voc(voc, classes, progress=progress, min_area=min_area):
                image = rec.image_path
                if copy_images:
                    (tmp / "images").mkdir(exist_ok=True)
                    image = tmp / "images" / rec.image_path.name
                    shutil.copyfile(rec.image_path, image)
                [iid] = project.add_images([image])
                if rec.split is not None:
                    project.set_split(iid, rec.split)
                instance = _fill_void(rec.instance, fill_void)
                objects = objects_from_maps(rec.semantic, instance, rec.objects, classes,
                                            rec.image_id)
                project.save_document(AnnotationDocument(iid, rec.semantic.shape, objects,
                                                         status=status))
                if report is not None:
                    report.images += 1
                    report.objects += len(objects)
                    key = rec.split or "none"
                    report.splits[key] = report.splits.get(key, 0) + 1
                    if rec.specks.regions:
                        report.specks[iid] = rec.specks
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            # Files were written in the temporary folder, which is gone: name them in PROJECT.
            message = str(exc).replace(str(tmp), str(target))
            raise WriteError(f"import stopped: {message}; nothing was created at {target}",
                             exc.errno) from exc
        raise
    if report is not None:
        report.folder, report.min_area = target, min_area
        report.classes = len(classes) - 1
    return Project.open(target)


def objects_from_maps(semantic: np.ndarray, instance: np.ndarray, infos: list[ObjectInfo],
                classes: ClassTable, image_id: str) -> list[AnnotatedObject]:
    """One object per instance; its class is the majority class of its pixels.

    ``SegmentationClass`` is what trainers read, so its pixels decide; the ``Annotations``
    class is used only for an instance with no class pixels (all void). The ``Annotations``
    object's pose, truncated and difficult flags become the object's attributes.
    """
    by_id = {o.instance_id: o for o in infos}
    objects = []
    for k in np.unique(instance):
        k = int(k)
        if k in (0, VOID):
            continue
        mask = instance == k
        vals = semantic[mask]
        vals = vals[(vals != 0) & (vals != VOID)]
        if vals.size:
            cls = int(np.bincount(vals).argmax())
        elif k in by_id and by_id[k].class_id:
            cls = int(by_id[k].class_id)  # type: ignore[arg-type]
        else:
            raise VocError(f"image {image_id}: instance {k} of SegmentationObject covers no "
                           "class pixels in SegmentationClass")
        if not 0 < cls < len(classes):
            raise ProjectError(f"image {image_id}: instance {k} has class index {cls}, outside "
                               f"the class list (1..{len(classes) - 1})")
        attributes: dict[str, object] = {}
        info = by_id.get(k)
        if info is not None:
            attributes = {"pose": info.pose, "difficult": bool(info.difficult)}
            if info.truncated is not None:
                attributes["truncated"] = bool(info.truncated)
        objects.append(AnnotatedObject(k, cls, mask, (), None, IMPORT_MODEL_ID,
                                       attributes=attributes))
    return objects

"""Project <-> PASCAL VOC: export a project as a VOC dataset, import a VOC dataset as a project.

Which images an export writes, and which of them go into train and val, is decided by
:func:`napari_samlabel.io.selection.select_images`, the same for every format; images it
keeps out of train and val are listed only in ``ImageSets/Segmentation/excluded.txt``.

Parts (objects whose class is a part class, ``dog/head``) are exported apart from the
objects: ``SegmentationClass`` / ``SegmentationObject`` hold the whole objects only, the
parts go to ``SegmentationPart`` / ``SegmentationPartObject`` and, when they have a parent,
into its ``<object>`` as ``<part>`` elements (see :mod:`napari_samlabel.io.voc`). An import
reads them back and links each part to the object the XML puts it in, else to the object
containing most of it.

An import builds the project in a temporary folder beside the target and renames it into
place at the end, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable
from napari_samlabel.core.compose import containing_object
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.fsutil import WriteError, make_temp_dir, remove_leftovers
from napari_samlabel.core.objects import MAX_OBJECTS, AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import ProjectError
from napari_samlabel.io.selection import select_images, selection_notes
from napari_samlabel.io.voc import EXCLUDED, VocError, voc_id
from napari_samlabel.io.voc.annotations import ObjectInfo
from napari_samlabel.io.voc.components import SpeckReport
from napari_samlabel.io.voc.reader import read_voc
from napari_samlabel.io.voc.writer import VocWriter

IMPORT_MODEL_ID = "voc-import"


@dataclass
class ExportReport:
    """What an export wrote."""

    root: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dropped_objects: list[tuple[str, int]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    #: ``{reason: [image ids]}`` of the images listed in ``excluded.txt`` (project ids;
    #: reasons: :data:`napari_samlabel.io.selection.EXCLUDE_REASONS`).
    excluded: dict[str, list[str]] = field(default_factory=dict)
    #: Ids of the exclude list that are not images of the project.
    unknown_excluded: list[str] = field(default_factory=list)
    #: Images whose split came from the project rather than the seeded split.
    stored_splits: int = 0
    #: Number of parts written (in ``SegmentationPart``).
    parts: int = 0
    #: ``(image_id, object_id)`` of parts without a parent object: written in the part
    #: maps only, not in ``Annotations``.
    orphan_parts: list[tuple[str, int]] = field(default_factory=list)
    #: ``(image_id, object_id)`` of parts fully hidden by other parts (left out).
    dropped_parts: list[tuple[str, int]] = field(default_factory=list)

    def summary(self) -> str:
        """One human-readable line."""
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.splits.items())
        out = f"wrote {self.root}: {counts}"
        why = ", ".join(f"{len(v)} {k}" for k, v in self.excluded.items() if v)
        if why:
            out += f" ({why})"
        out += selection_notes(self.stored_splits, self.skipped, self.dropped_objects)
        if self.parts:
            out += f"; {self.parts} parts in SegmentationPart"
            if self.orphan_parts:
                out += (f" ({len(self.orphan_parts)} without a parent object: in the part "
                        "maps only, not in Annotations)")
        if self.dropped_parts:
            out += f"; {len(self.dropped_parts)} fully hidden parts left out"
        return out


@dataclass
class ImportReport:
    """What an import made; pass one to :func:`import_voc` to have it filled."""

    folder: Path | None = None
    images: int = 0
    objects: int = 0  # parts included
    parts: int = 0
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
        parts = f" ({self.parts} of them parts)" if self.parts else ""
        lines = [f"created project {self.folder}: {self.images} images, {self.objects} "
                 f"objects{parts}, {self.classes} classes"
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


def export_project(
    project: Project | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_fraction: float = 0.8,
    seed: int = 0,
    border: int = 0,
    include_flagged: bool = False,
    only_done: bool = False,
    overwrite: bool = False,
    fresh_split: bool = False,
    exclude: Iterable[str] = (),
    progress: ProgressCallback = no_progress,
) -> ExportReport:
    """Export the annotated images of ``project`` to ``out/VOCdevkit/VOC2012``.

    Label maps are composed from the objects with the overlap rule of
    :mod:`napari_samlabel.core.compose`. Parameters ``train_fraction``, ``seed``, ``border``
    and ``overwrite`` are :class:`napari_samlabel.io.voc.writer.VocWriter`'s; the seeded split
    applies to the images without a stored split, or to all with ``fresh_split``. The
    objects' ``pose``, ``truncated`` and ``difficult`` attributes go into the XML. Parts
    go into the part maps and into their parent's ``<object>`` (see the module docstring).
    ``exclude`` lists image ids (project ids or their VOC form) kept out of train and val;
    :func:`napari_samlabel.io.selection.select_images` decides which images go where.

    Raises
    ------
    napari_samlabel.io.selection.NothingToExport
        (a ``ProjectError``) when no image would go into train or val, saying why; nothing
        is written then.
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
    selection = select_images(project, include_flagged=include_flagged, only_done=only_done,
                              fresh_split=fresh_split, exclude=exclude, alias=voc_id)
    selection.check_not_empty(project)
    chosen = [(iid, EXCLUDED if selection.is_excluded(iid) else selection.splits[iid])
              for iid in selection.written]
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
                objects = [_object_info(o) for o in doc.wholes]
                parts = [ObjectInfo(o.object_id, o.class_id, parent=o.parent_id)
                         for o in doc.parts]
                part_semantic, part_instance = doc.part_maps() if parts else (None, None)
                writer.add(voc_id(iid), project.image_path(iid), semantic, instance, objects,
                           split, part_semantic, part_instance, parts)
    final = writer.splits
    splits = {s: sorted(i for i, v in final.items() if v == s) for s in ("train", "val",
                                                                           EXCLUDED)}
    project_id = {voc_id(i): i for i, _ in chosen}
    return ExportReport(writer.out / "VOCdevkit" / "VOC2012", splits,
                        {k: v for k, v in selection.skipped.items() if v},
                        writer.dropped_objects, renamed,
                        {k: v for k, v in selection.excluded.items() if v},
                        selection.unknown_excluded, selection.stored_splits, writer.n_parts,
                        [(project_id[i], k) for i, k in writer.orphan_parts],
                        [(project_id[i], k) for i, k in writer.dropped_parts])


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
    class, see :func:`napari_samlabel.io.voc.reader.read_voc`) becomes one accepted object with no
    prompts and ``model_id = "voc-import"``; its class is the majority class of its pixels in
    ``SegmentationClass`` (the ``Annotations`` class only for an instance that is all void).
    The ``pose``, ``truncated`` and ``difficult`` flags of its ``Annotations`` object become
    its attributes, and the image keeps its ``ImageSets/Segmentation`` split
    (:meth:`Project.split`), so exporting again reproduces train and val.
    Void (255) pixels belong to no object (they become background in the project) unless
    ``fill_void`` gives those within that many pixels of a label to the nearest label, object
    or background (VOC's 4 px border band: ``fill_void=3`` leaves 1.8 % of the sample's
    void, its "difficult" regions).
    ``SegmentationPart`` / ``SegmentationPartObject``, when present, give the parts: each
    part instance becomes an object (ids after the objects'), linked to the object whose
    ``<object>`` lists a ``<part>`` of its class and box (best box overlap); a link the
    pixels do not confirm (another object contains more of the part) is kept as an
    explicit one (``parent_fixed``); without an XML part, the part goes to the object of
    its parent class containing most of it.

    Parameters
    ----------
    voc_root : path
        See :func:`napari_samlabel.io.voc.reader.find_voc_root`.
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
    from napari_samlabel.io.voc.reader import find_voc_root, read_voc_classes

    target = Path(folder).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"project folder {target} exists and is not empty")
    voc = find_voc_root(voc_root)
    classes = classes or read_voc_classes(voc)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent, f".{target.name}.", (".import-tmp",))  # killed imports
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
                parts: list[AnnotatedObject] = []
                if rec.part_semantic is not None and rec.part_instance is not None:
                    parts = parts_from_maps(rec.part_semantic,
                                            _fill_void(rec.part_instance, fill_void),
                                            objects, rec.objects, classes, rec.image_id)
                    objects += parts
                project.save_document(AnnotationDocument(iid, rec.semantic.shape, objects,
                                                         status=status))
                if report is not None:
                    report.images += 1
                    report.objects += len(objects)
                    report.parts += len(parts)
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


def parts_from_maps(part_semantic: np.ndarray, part_instance: np.ndarray,
                    wholes: list[AnnotatedObject], infos: list[ObjectInfo],
                    classes: ClassTable, image_id: str) -> list[AnnotatedObject]:
    """One part object per part instance, linked to its whole; ids follow the wholes'.

    The class is the majority part class of the instance's pixels. The parent is the whole
    whose ``<object>`` holds the ``<part>`` of that class whose box overlaps the part's box
    most (box IoU at least 0.5, each XML part used once); without one, the whole of the
    parent class containing most of the part (left to the project to resolve). An XML link
    that differs from that pixel choice is kept as explicit (``parent_fixed``).
    """
    from napari_samlabel.io.voc.components import mask_bbox

    by_id = {o.object_id: o for o in wholes}
    xml_parts = [(info.instance_id, p) for info in infos for p in info.parts
                 if p.class_id is not None and p.bbox is not None]
    used: set[int] = set()
    next_id = max(by_id, default=0) + 1
    out = []
    for k in np.unique(part_instance):
        k = int(k)
        if k in (0, VOID):
            continue
        if next_id > MAX_OBJECTS:
            raise VocError(f"image {image_id}: {len(wholes)} objects and the parts of "
                           f"SegmentationPartObject do not fit {MAX_OBJECTS} object ids")
        mask = part_instance == k
        vals = part_semantic[mask]
        vals = vals[(vals != 0) & (vals != VOID)]
        if not vals.size:
            raise VocError(f"image {image_id}: part instance {k} of SegmentationPartObject "
                           "covers no part class pixels in SegmentationPart")
        cls = int(np.bincount(vals).argmax())
        if not 0 < cls < len(classes) or not classes.is_part(cls):
            name = classes.names[cls] if cls < len(classes) else str(cls)
            raise ProjectError(f"image {image_id}: part instance {k} has class {name!r}, "
                               "which is not a part class of the class list")
        parent_class = classes.parent(cls)
        box = mask_bbox(mask)
        best, best_iou = None, 0.5
        for n, (owner, part) in enumerate(xml_parts):
            whole = by_id.get(owner)
            if n in used or part.class_id != cls or whole is None \
                    or whole.class_id != parent_class:
                continue
            iou = _box_iou(box, part.bbox)  # type: ignore[arg-type]
            if iou >= best_iou:
                best, best_iou = n, iou
        parent, fixed = None, False
        if best is not None:
            used.add(best)
            parent = xml_parts[best][0]
            auto = containing_object(mask, [(o.object_id, o.mask) for o in wholes
                                            if o.class_id == parent_class])
            fixed = parent != auto
        out.append(AnnotatedObject(next_id, cls, mask, (), None, IMPORT_MODEL_ID,
                                   parent_id=parent, parent_fixed=fixed))
        next_id += 1
    return out


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two VOC boxes (1-based, inclusive pixel coordinates)."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area_a + area_b - inter)

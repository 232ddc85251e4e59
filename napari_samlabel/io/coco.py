"""Export a project as a COCO instance-segmentation dataset.

Layout of ``out`` (what COCO users and detectron2 / mmdetection loaders expect)::

    out/
      annotations/instances_train.json   one file per split: train, val, and excluded
      annotations/instances_val.json     (the images kept out of train and val, only when
      annotations/instances_excluded.json there are some)
      images/<id>.<ext>                  the project images (copied unchanged when stored
                                         upright as JPEG/PNG, else written as PNG)

The images written and their split are chosen by
:func:`napari_samlabel.io.selection.select_images`, the same rules and the same seeded
split (:func:`napari_samlabel.io.voc.writer.split_ids` over the VOC-safe ids) as the VOC
export, so both formats of one project agree image for image.

Each file holds ``images``, ``annotations`` and ``categories``:

- **images**: ``id`` is 1 + the image's position in the project (images are only ever
  appended), so an image keeps its id across exports whatever else is selected, added or
  split; ``file_name`` (relative to ``images/``), ``height``, ``width`` and ``samlabel_id``
  (the project's image id).
- **categories**: one per class of the class list except background, ``id`` = the class
  index (as in the VOC label maps). A part class (``dog/head``) is a category of its own,
  named by its full name, with the whole it belongs to in ``supercategory`` (``dog``) and
  ``part_of`` (the whole's category id); a whole class is its own ``supercategory`` and has
  ``part_of: null``.
- **annotations**: one per visible accepted object, wholes and parts alike. The mask is the
  object's pixels in the exported label maps (the overlap rule of
  :mod:`napari_samlabel.core.compose`: what the VOC export's ``SegmentationObject`` /
  ``SegmentationPartObject`` hold), as compressed RLE (pycocotools' ``encode``; ``iscrowd``
  is 0; not polygons, which cannot hold holes and move edge pixels), with ``bbox``
  ``[x, y, w, h]`` and ``area`` in pixels. ``id`` = image id * 1000 + the object's id in
  its image (object ids are at most 254), stable across exports; a part
  names its whole's annotation in ``parent_id`` (None without one). Objects hidden entirely
  by others are left out and reported.

The dataset is built in a temporary folder beside ``out`` and renamed into place at the end.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.fsutil import make_temp_dir, write_error
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.project import Project
from napari_samlabel.io.selection import select_images, selection_notes
from napari_samlabel.io.voc import EXCLUDED
from napari_samlabel.io.voc.writer import split_ids
from napari_samlabel.io.voc_project import voc_id

ANNOTATIONS = "annotations"
IMAGES = "images"
#: Annotation ids are ``image id * ANN_ID_STRIDE + object id`` (object ids are 1..254).
ANN_ID_STRIDE = 1000


class CocoError(ValueError):
    """The project cannot be exported as COCO (the message says why); nothing is written."""


@dataclass
class CocoReport:
    """What a COCO export wrote."""

    root: Path
    #: ``{split: [project image ids]}`` for train, val and excluded.
    splits: dict[str, list[str]] = field(default_factory=dict)
    annotations: int = 0
    parts: int = 0
    #: ``{status: [image ids]}`` of the images not written (see :class:`Selection`).
    skipped: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    unknown_excluded: list[str] = field(default_factory=list)
    stored_splits: int = 0
    #: ``(image_id, object_id)`` of objects hidden entirely by others (left out).
    dropped_objects: list[tuple[str, int]] = field(default_factory=list)

    def summary(self) -> str:
        """One human-readable line."""
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.splits.items()
                           if v or k != EXCLUDED)
        out = f"wrote {self.root}: {counts}; {self.annotations} annotations"
        if self.parts:
            out += f" ({self.parts} parts)"
        why = ", ".join(f"{len(v)} {k}" for k, v in self.excluded.items() if v)
        if why:
            out += f" (excluded: {why})"
        out += selection_notes(self.stored_splits, self.skipped, self.dropped_objects)
        return out


def coco_categories(classes: ClassTable) -> list[dict[str, Any]]:
    """The ``categories`` of a class table (module docstring): parts name their whole."""
    cats = []
    for index in range(1, len(classes)):
        parent = classes.parent(index)
        cats.append({"id": index, "name": classes.names[index],
                     "supercategory": classes.names[parent if parent is not None else index],
                     "part_of": parent})
    return cats


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of a boolean mask, JSON-ready (``counts`` as text)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return dict(rle)


def _bbox(mask: np.ndarray) -> list[float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


def export_coco(
    project: Project | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    train_fraction: float = 0.8,
    seed: int = 0,
    include_flagged: bool = False,
    only_done: bool = False,
    overwrite: bool = False,
    fresh_split: bool = False,
    exclude: Iterable[str] = (),
    progress: ProgressCallback = no_progress,
) -> CocoReport:
    """Export the annotated images of ``project`` to ``out`` as COCO (module docstring).

    The options mean what they mean for
    :func:`napari_samlabel.io.voc_project.export_project`.

    Raises
    ------
    napari_samlabel.io.selection.NothingToExport
        When no image would go into train or val; nothing is written.
    FileExistsError
        If ``out`` is a non-empty folder and ``overwrite`` is False, or holds anything but
        a previous COCO export.
    CocoError, ProjectError
        On bad project content or an unreadable image (named); nothing is written to
        ``out`` then.
    """
    if not isinstance(project, Project):
        project = Project.open(project)
    if not 0.0 <= train_fraction <= 1.0:
        raise CocoError(f"train fraction {train_fraction} is outside 0..1")
    target = Path(out).absolute()
    if target.resolve() == project.folder.resolve() or \
            target.resolve() in project.folder.resolve().parents:
        raise CocoError(f"output folder {target} would contain the project {project.folder}; "
                        "choose a folder outside the project")
    selection = select_images(project, include_flagged=include_flagged, only_done=only_done,
                              fresh_split=fresh_split, exclude=exclude, alias=voc_id)
    selection.check_not_empty(project)
    _check_out(target, overwrite)
    owner: dict[str, str] = {}
    for iid in selection.written:
        stem = voc_id(iid)
        if stem in owner:
            raise CocoError(f"images {owner[stem]!r} and {iid!r} both become {stem!r} (file "
                            "names cannot hold spaces or other special characters); rename one")
        owner[stem] = iid
        if overwrite and target.resolve() in project.image_path(iid).resolve().parents:
            raise CocoError(f"image {project.image_path(iid)} of the project lies inside "
                            f"{target}, which overwriting would delete; export elsewhere")
    seeded = split_ids([voc_id(i) for i, s in selection.splits.items() if s is None],
                       train_fraction, seed)
    split_of = {iid: (EXCLUDED if selection.is_excluded(iid) else
                      selection.splits[iid] or seeded[voc_id(iid)])
                for iid in selection.written}
    position = {iid: k for k, iid in enumerate(project.image_ids, start=1)}
    categories = coco_categories(project.classes)
    files: dict[str, dict[str, list]] = {s: {"images": [], "annotations": []}
                                         for s in ("train", "val", EXCLUDED)}
    report = CocoReport(target, {}, skipped={k: v for k, v in selection.skipped.items() if v},
                        excluded={k: v for k, v in selection.excluded.items() if v},
                        unknown_excluded=selection.unknown_excluded,
                        stored_splits=selection.stored_splits)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = make_temp_dir(target.parent, f".{target.name}.", ".coco-tmp")
    except OSError as exc:
        raise write_error(target, exc, "nothing was changed") from exc
    try:
        (tmp / ANNOTATIONS).mkdir()
        (tmp / IMAGES).mkdir()
        for k, iid in enumerate(selection.written, start=1):
            image_id = position[iid]
            doc = project.load_document(iid)
            h, w = doc.shape
            file_name = _write_image(project.image_path(iid), tmp / IMAGES, voc_id(iid),
                                     doc.shape)
            part = files[split_of[iid]]
            part["images"].append({"id": image_id, "file_name": file_name, "height": h,
                                   "width": w, "samlabel_id": iid})
            _, instance = doc.label_maps()
            _, part_instance = doc.part_maps()
            visible = {o.object_id for o in doc.wholes if (instance == o.object_id).any()}
            for obj in (*doc.wholes, *doc.parts):
                is_part = doc.is_part(obj.object_id)
                mask = (part_instance if is_part else instance) == obj.object_id
                if not mask.any():
                    report.dropped_objects.append((iid, obj.object_id))
                    continue
                parent = doc.parent_of(obj.object_id) if is_part else None
                part["annotations"].append({
                    "id": image_id * ANN_ID_STRIDE + obj.object_id,
                    "image_id": image_id, "category_id": int(obj.class_id),
                    "segmentation": encode_mask(mask), "area": int(mask.sum()),
                    "bbox": _bbox(mask), "iscrowd": 0,
                    "parent_id": (image_id * ANN_ID_STRIDE + parent
                                  if parent is not None and parent in visible else None),
                })
                report.annotations += 1
                report.parts += is_part
            progress(k, len(selection.written), iid)
        info = {"description": f"exported from {project.folder.name} by napari-samlabel",
                "version": __version__,
                "date_created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        for split, content in files.items():
            if split == EXCLUDED and not content["images"]:
                continue
            doc_json = {"info": info, "licenses": [], "images": content["images"],
                        "annotations": content["annotations"], "categories": categories}
            (tmp / ANNOTATIONS / f"instances_{split}.json").write_text(
                json.dumps(doc_json), encoding="utf-8")
        _move_into_place(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise write_error(target, exc, "nothing was changed") from exc
        raise
    report.splits = {s: sorted(i for i, v in split_of.items() if v == s)
                     for s in ("train", "val", EXCLUDED)}
    return report


def _write_image(src: Path, folder: Path, stem: str, shape: tuple[int, int]) -> str:
    """Put the image ``src`` into ``folder`` as COCO loaders will read it; its file name.

    The file is decoded completely first (a truncated or corrupt image is an error naming it,
    as in the VOC export). A JPEG or PNG stored upright (no EXIF rotation, the size the masks
    have) is copied byte for byte; anything else (EXIF-rotated photos, TIFF, 16-bit...) is
    written as the annotator saw it (:func:`napari_samlabel.io.images.load_image`) to a
    lossless PNG, so that pixels and masks line up in every loader.
    """
    from PIL import Image

    from napari_samlabel.io.images import ImageReadError, load_image

    try:
        image = load_image(src)
    except ImageReadError as exc:  # the message names the file
        raise CocoError(str(exc)) from None
    if image.shape[:2] != tuple(shape):
        raise CocoError(f"image {src} is {image.shape[0]}x{image.shape[1]} but its "
                        f"annotation is {shape[0]}x{shape[1]} (H x W)")
    suffix = src.suffix.lower()
    upright = False
    if suffix in (".jpg", ".jpeg", ".png"):
        try:
            with Image.open(src) as raw:
                orientation = raw.getexif().get(0x0112, 1)
                upright = orientation == 1 and raw.size == (shape[1], shape[0]) and \
                    raw.mode in ("RGB", "L")
        except OSError as exc:
            raise CocoError(f"cannot read image {src}: {exc}") from exc
    if upright:
        name = stem + (".jpg" if suffix == ".jpeg" else suffix)
        shutil.copyfile(src, folder / name)
    else:
        name = stem + ".png"
        Image.fromarray(image).save(folder / name)
    return name


def _check_out(target: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``target`` unless ``overwrite`` and it holds only a COCO export."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"output {target} exists and is not a folder")
    content = [p.name for p in target.iterdir() if not p.name.startswith(".")]
    if not content:
        return
    if not overwrite:
        raise FileExistsError(f"output folder {target} is not empty; choose another folder "
                              "or allow overwriting (--overwrite)")
    foreign = sorted(set(content) - {ANNOTATIONS, IMAGES})
    if foreign:
        raise FileExistsError(f"output folder {target} holds files that are not a COCO export "
                              f"({', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); "
                              "overwriting only replaces a folder that contains nothing but "
                              "annotations/ and images/. Choose another folder")


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, replacing a previous export only once ``tmp`` is whole."""
    aside = None
    if target.exists():
        aside = make_temp_dir(target.parent, f".{target.name}.", ".old")
        aside.rmdir()
        os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        if aside is not None:
            os.replace(aside, target)  # put the old output back
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)

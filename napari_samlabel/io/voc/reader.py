"""The VOC dataset reader: :func:`read_voc` yields one :class:`VocRecord` per image.

It finds the ``VOC20xx`` folder (:func:`find_voc_root`), reads the label PNGs, makes
instances from connected components when ``SegmentationObject`` is missing, and reads the
``Annotations`` XML, the part maps and the ``ImageSets`` splits.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import BACKGROUND, VOID, ClassTable
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.images import ImageReadError, image_size
from napari_samlabel.io.voc import DEVKIT, SPLITS, VocError
from napari_samlabel.io.voc.annotations import (
    ObjectInfo,
    parse_annotation,
    parse_labelmap,
    read_set_if_present,
)
from napari_samlabel.io.voc.components import SpeckReport, components_with_specks
from napari_samlabel.io.voc.labelpng import read_label_png


@dataclass
class VocRecord:
    """One image of a VOC dataset, as :func:`read_voc` yields it."""

    image_id: str
    image_path: Path
    semantic: np.ndarray
    instance: np.ndarray
    objects: list[ObjectInfo] = field(default_factory=list)
    split: str | None = None
    instances_from: str = "SegmentationObject"
    specks: SpeckReport = field(default_factory=lambda: SpeckReport())
    #: ``SegmentationPart`` / ``SegmentationPartObject`` (or the components of the part
    #: classes without the latter); None when the dataset has no part map for the image.
    part_semantic: np.ndarray | None = None
    part_instance: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
def find_voc_root(root: str | os.PathLike[str]) -> Path:
    """Locate the ``VOC20xx`` folder from ``root``.

    ``root`` may be that folder itself (it has ``SegmentationClass`` or ``JPEGImages``), the
    folder containing ``VOCdevkit`` (torchvision's root), ``VOCdevkit`` itself, or a folder
    containing one ``VOC20xx`` folder.

    Raises
    ------
    VocError
        If no VOC folder is found, or several candidates are.
    """
    root = Path(root)
    if not root.is_dir():
        from napari_samlabel.core.fsutil import why_missing

        reason = why_missing(root)
        raise VocError(f"VOC folder not found: {root}" if reason.endswith("not found")
                       else f"VOC folder {reason}")

    def is_voc(p: Path) -> bool:
        return (p / "SegmentationClass").is_dir() or (p / "JPEGImages").is_dir()

    if is_voc(root):
        return root
    for base in (root / DEVKIT, root):
        if base.is_dir():
            found = sorted(p for p in base.iterdir() if p.is_dir() and is_voc(p))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise VocError(f"{base} holds several VOC folders "
                               f"({', '.join(p.name for p in found)}); give one of them")
    raise VocError(f"{root} is not a VOC dataset: no SegmentationClass or JPEGImages folder "
                   f"in it, in {root / DEVKIT}/VOC20xx or in {root}/VOC20xx")


def read_voc_classes(voc: Path) -> ClassTable:
    """Class table of a VOC folder: its ``labelmap.txt`` when present, else the 21 VOC classes."""
    for candidate in (voc / "labelmap.txt", voc.parent.parent / "labelmap.txt"):
        if candidate.is_file():
            return parse_labelmap(candidate)
    return ClassTable.voc()


def read_voc(root: str | os.PathLike[str], classes: ClassTable | None = None,
             progress: ProgressCallback = no_progress,
             min_area: int = 0) -> Iterator[VocRecord]:
    """Yield the images of a VOC dataset that have a ``SegmentationClass`` PNG, sorted by id.

    Instances come from ``SegmentationObject/<id>.png`` when it exists; otherwise they are
    the 8-connected components of each class of the semantic map (``instances_from`` says
    which); components smaller than ``min_area`` pixels then join the nearest larger
    component of their class (VOC's ground truth has specks of a few pixels between its
    void bands, which are not objects of their own), reported in ``specks``.
    Objects come from ``Annotations/<id>.xml`` when it exists. The split is ``train`` /
    ``val`` from ``ImageSets/Segmentation`` (None when listed in neither).

    Parameters
    ----------
    root : path
        See :func:`find_voc_root`.
    classes : ClassTable, optional
        Default: ``labelmap.txt`` of the dataset, else the 21 VOC classes.

    Raises
    ------
    VocError
        On a missing image, unreadable PNG, size mismatch or class index outside the class
        list; the message names the file.
    """
    voc = find_voc_root(root)
    classes = classes or read_voc_classes(voc)
    seg_dir = voc / "SegmentationClass"
    if not seg_dir.is_dir():
        raise VocError(f"{voc} has no SegmentationClass folder")
    pngs = sorted(p for p in seg_dir.iterdir()
                  if p.suffix.lower() == ".png" and not p.name.startswith("."))
    split_of: dict[str, str] = {}
    for s in SPLITS:
        for i in read_set_if_present(voc / "ImageSets" / "Segmentation" / f"{s}.txt"):
            split_of.setdefault(i, s)
    for n, png in enumerate(pngs, 1):
        iid = png.stem
        image = find_image(voc / "JPEGImages", iid)
        semantic = read_label_png(png)
        bad = np.setdiff1d(np.unique(semantic), [VOID])
        bad = bad[bad >= len(classes)]
        if bad.size:
            raise VocError(f"{png}: class indices {bad.tolist()} are outside the class list "
                           f"(0..{len(classes) - 1})")
        try:
            size = image_size(image)
        except ImageReadError as exc:
            raise VocError(str(exc)) from exc
        if size != semantic.shape:
            raise VocError(f"{png} is {semantic.shape[0]}x{semantic.shape[1]} but its image "
                           f"{image} is {size[0]}x{size[1]} (HxW)")
        obj_png = voc / "SegmentationObject" / f"{iid}.png"
        specks = SpeckReport()
        if obj_png.is_file():
            instance = read_label_png(obj_png)
            if instance.shape != semantic.shape:
                raise VocError(f"{obj_png} is {instance.shape} but {png} is {semantic.shape}")
            source = "SegmentationObject"
        else:
            instance, specks = components_with_specks(semantic, min_area)
            source = "components"
        xml = voc / "Annotations" / f"{iid}.xml"
        objects: list[ObjectInfo] = []
        if xml.is_file():
            _, objects = parse_annotation(xml, classes)
            if source == "components":
                objects = []  # XML order does not match component numbering
        part_semantic, part_instance = _read_part_maps(voc, iid, classes, semantic.shape,
                                                       min_area)
        progress(n, len(pngs), iid)
        yield VocRecord(iid, image, semantic, instance, objects, split_of.get(iid), source,
                        specks, part_semantic, part_instance)


def _read_part_maps(voc: Path, iid: str, classes: ClassTable, shape: tuple[int, int],
                    min_area: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``SegmentationPart`` and ``SegmentationPartObject`` of ``iid``, or ``(None, None)``.

    Without ``SegmentationPartObject`` the part instances are the connected components of
    each part class (small ones joined to their neighbours, as for objects).
    """
    png = voc / "SegmentationPart" / f"{iid}.png"
    if not png.is_file():
        return None, None
    psem = read_label_png(png)
    if psem.shape != shape:
        raise VocError(f"{png} is {psem.shape[0]}x{psem.shape[1]} but SegmentationClass/"
                       f"{iid}.png is {shape[0]}x{shape[1]} (HxW)")
    present = np.setdiff1d(np.unique(psem), [BACKGROUND, VOID])
    bad = [int(c) for c in present if c >= len(classes) or not classes.is_part(int(c))]
    if bad:
        raise VocError(f"{png}: class indices {bad} are not part classes of the class list "
                       "(a part class is 'object/part' with 'object' listed)")
    obj_png = voc / "SegmentationPartObject" / f"{iid}.png"
    if not obj_png.is_file():
        return psem, components_with_specks(psem, min_area)[0]
    pinst = read_label_png(obj_png)
    if pinst.shape != shape:
        raise VocError(f"{obj_png} is {pinst.shape} but {png} is {psem.shape}")
    return psem, pinst


def find_image(folder: Path, iid: str) -> Path:
    """The image of ``iid`` in ``folder``: ``<iid>.jpg``, else ``<iid>.*`` (VocError if none)."""
    jpg = folder / f"{iid}.jpg"
    if jpg.is_file():
        return jpg
    if folder.is_dir():
        for p in sorted(folder.glob(f"{glob_escape(iid)}.*")):
            if p.stem == iid:
                return p
    raise VocError(f"image of {iid!r} not found: expected {jpg}")


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a file name."""
    return glob.escape(text)

"""What a prompter learns from: weak boxes and points of a project folder or a VOC tree.

:func:`read_weak_dataset` opens SOURCE as

- a project folder (:mod:`napari_samlabel.io.project`): each accepted object gives its box
  (the bounding box of its mask) and its point (its first positive click, else the mask's
  innermost pixel); an image counts when it has objects or is marked done (a done image
  without objects teaches "nothing here"); other images are not annotated yet;
- a VOC tree: every ``Annotations/<id>.xml`` with an image in ``JPEGImages``; each
  ``<object>`` gives its ``bndbox`` (point: the box centre), each ``<part>`` whose name the
  class table lists under the object's class (``dog/head``) gives a part box.

Boxes are ``[x0, y0, x1, y1]`` in 0-based pixels (VOC's 1-based inclusive corners minus 1, as
:mod:`napari_samlabel.io.weak.boxes` reads them). Prompter class ``k`` is the class table's
index ``k + 1`` (background has no query class; "no object" plays its part).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import ClassTable

LEVELS = ("all", "objects", "parts")


@dataclass(frozen=True, eq=False)
class WeakImage:
    """One training image and its weak objects.

    Attributes
    ----------
    image_id : str
    path : Path
    boxes : ndarray (N, 4) float32
        ``[x0, y0, x1, y1]`` pixels.
    points : ndarray (N, 2) float32
        One positive ``(x, y)`` point per object.
    labels : ndarray (N,) int64
        Class table indices (1..).
    """

    image_id: str
    path: Path
    boxes: np.ndarray
    points: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "points", np.asarray(self.points, np.float32).reshape(-1, 2))
        object.__setattr__(self, "labels", np.asarray(self.labels, np.int64).reshape(-1))
        if not len(self.boxes) == len(self.points) == len(self.labels):
            raise ValueError(f"{self.image_id}: boxes, points and labels differ in length")


@dataclass
class WeakDataset:
    """The images of a training source, their class table, and what was left out."""

    source: Path
    kind: str
    classes: ClassTable
    images: list[WeakImage]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        """Weak objects over all images."""
        return sum(len(i.labels) for i in self.images)


def split_of(image_id: str, val_fraction: float, seed: int = 0) -> str:
    """``"val"`` or ``"train"``, decided by a hash of the id: stable across runs and resumes."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def mask_box(mask: np.ndarray) -> np.ndarray:
    """``[x0, y0, x1, y1]`` of the pixels of ``mask`` (inclusive, 0-based)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def inner_point(mask: np.ndarray) -> np.ndarray:
    """``(x, y)`` of the mask pixel farthest from its border (a click an annotator would make)."""
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([c, r], dtype=np.float32)


def _keep(classes: ClassTable, class_id: int, level: str) -> bool:
    if not 0 < class_id < len(classes):
        return False
    if level == "all":
        return True
    return classes.is_part(class_id) == (level == "parts")


def read_weak_dataset(source: str | os.PathLike[str], classes: ClassTable | None = None,
                      level: str = "all") -> WeakDataset:
    """Read a project folder or a VOC tree (see the module docstring).

    Parameters
    ----------
    classes : ClassTable, optional
        For a VOC tree: the class table (default: its ``labelmap.txt``, else VOC's 21
        classes; list part classes such as ``dog/head`` to learn parts). A project has its
        own.
    level : str
        ``"all"``, ``"objects"`` (whole objects only) or ``"parts"`` (part classes only).

    Raises
    ------
    ValueError
        If SOURCE is neither, or holds no weak object (the message names it).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    from napari_samlabel.io.project import Project

    folder = Path(source)
    if not folder.exists():
        raise ValueError(f"training source not found: {folder}")
    if Project.is_project(folder):
        data = _read_project(folder, level)
    else:
        data = _read_voc(folder, classes, level)
    if not data.objects:
        raise ValueError(f"{folder}: no weak object to learn from (of level {level!r}) among "
                         f"{len(data.images) + len(data.skipped)} images")
    return data


def _read_project(folder: Path, level: str) -> WeakDataset:
    from napari_samlabel.core.document import ImageStatus
    from napari_samlabel.core.prompts import Point
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.project_schema import ProjectError

    project = Project.open(folder)
    table = project.classes
    images: list[WeakImage] = []
    skipped: dict[str, str] = {}
    for entry in project:
        try:
            objects = project.read_objects(entry.image_id)
        except (ProjectError, OSError, ValueError) as exc:
            skipped[entry.image_id] = str(exc)
            continue
        if not objects and entry.status != ImageStatus.DONE:
            continue  # not annotated yet: neither positives nor negatives
        boxes, points, labels = [], [], []
        for obj in objects:
            if not _keep(table, obj.class_id, level) or not obj.mask.any():
                continue
            boxes.append(mask_box(obj.mask))
            click = next((p for p in obj.prompts if isinstance(p, Point) and p.positive), None)
            points.append(np.array([click.rc[1], click.rc[0]], np.float32) if click
                          else inner_point(obj.mask))
            labels.append(obj.class_id)
        images.append(WeakImage(entry.image_id, project.image_path(entry.image_id),
                                np.array(boxes), np.array(points), np.array(labels)))
    return WeakDataset(folder, "project", table, images, skipped)


def _read_voc(folder: Path, classes: ClassTable | None, level: str) -> WeakDataset:
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.annotations import parse_annotation
    from napari_samlabel.io.voc.reader import find_image, find_voc_root, read_voc_classes

    try:
        voc = find_voc_root(folder)
        table = classes or read_voc_classes(voc)
    except VocError as exc:
        raise ValueError(f"{folder} is neither a napari-samlabel project nor a VOC tree: "
                         f"{exc}") from None
    xml_dir = voc / "Annotations"
    if not xml_dir.is_dir():
        raise ValueError(f"{voc} has no Annotations folder: the prompter learns from its boxes")
    images: list[WeakImage] = []
    skipped: dict[str, str] = {}
    for xml in sorted(p for p in xml_dir.glob("*.xml") if not p.name.startswith(".")):
        iid = xml.stem
        try:
            path = find_image(voc / "JPEGImages", iid)
            _, infos = parse_annotation(xml, table)
        except VocError as exc:
            skipped[iid] = str(exc)
            continue
        boxes, labels = [], []
        for info in infos:
            entries = [(info.class_id, info.bbox)]
            entries += [(part.class_id, part.bbox) for part in info.parts]
            for cid, bbox in entries:
                if cid is None or bbox is None or not _keep(table, cid, level):
                    continue
                x0, y0, x1, y1 = bbox
                boxes.append(np.array([x0 - 1, y0 - 1, x1 - 1, y1 - 1], np.float32))
                labels.append(cid)
        arr = np.array(boxes, np.float32).reshape(-1, 4)
        centres = np.stack([(arr[:, 0] + arr[:, 2]) / 2, (arr[:, 1] + arr[:, 3]) / 2], axis=1)
        images.append(WeakImage(iid, path, arr, centres, np.array(labels)))
    return WeakDataset(folder, "voc", table, images, skipped)


__all__ = ["LEVELS", "WeakDataset", "WeakImage", "inner_point", "mask_box",
           "read_weak_dataset", "split_of"]

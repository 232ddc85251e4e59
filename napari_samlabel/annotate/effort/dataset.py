"""Labelled images for the simulated annotator: a VOC tree or a project with annotations.

A dataset is listed once (image ids and paths, cheap) and each image's ground truth is read
where it is simulated (on a dask worker for cluster runs), by :func:`load_ground_truth`.

- **VOC** (as ``samlabel export`` writes it, or any VOC tree :func:`~napari_samlabel.io.voc.
  reader.find_voc_root` finds): the images with a ``SegmentationClass`` PNG; objects are the
  instances of ``SegmentationObject`` (else the 8-connected components of each class);
  255 is void.
- **Project** (a ``samlabel`` project folder): the images with at least one accepted
  object; its accepted objects are the ground truth (the project is only read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class GroundTruthObject:
    """One object to annotate: its id in the instance map, class and mask."""

    object_id: int
    class_id: int
    mask: np.ndarray


@dataclass(frozen=True)
class GroundTruth:
    """One image's ground truth: objects in instance order and the void pixels."""

    image_id: str
    shape: tuple[int, int]
    objects: tuple[GroundTruthObject, ...]
    void: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset: ``kind`` (``"voc"`` or ``"project"``), its root and images."""

    kind: str
    root: Path
    classes: ClassTable
    images: tuple[tuple[str, Path], ...]

    @property
    def ids(self) -> list[str]:
        """Image ids in order."""
        return [i for i, _ in self.images]


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """List a VOC tree or a project (see the module docstring).

    Raises
    ------
    DatasetError
        When ``path`` is neither, or holds no labelled image.
    """
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.reader import find_image, find_voc_root, read_voc_classes

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if Project.is_project(path):
        project = Project.open(path)
        images = tuple((i, project.image_path(i)) for i in project.image_ids
                       if project.read_objects(i))
        if not images:
            raise DatasetError(f"project {path} has no image with accepted objects")
        return Dataset("project", path, project.classes, images)
    try:
        voc = find_voc_root(path)
        seg = voc / "SegmentationClass"
        if not seg.is_dir():
            raise DatasetError(f"{voc} has no SegmentationClass folder (no ground truth)")
        ids = sorted(p.stem for p in seg.iterdir()
                     if p.suffix.lower() == ".png" and not p.name.startswith("."))
        images = tuple((i, find_image(voc / "JPEGImages", i)) for i in ids)
        classes = read_voc_classes(voc)
    except VocError as exc:
        raise DatasetError(str(exc)) from None
    if not images:
        raise DatasetError(f"{seg} holds no label PNG")
    return Dataset("voc", voc, classes, images)


def load_ground_truth(dataset: Dataset, image_id: str) -> GroundTruth:
    """Read one image's objects and void pixels.

    Raises
    ------
    DatasetError
        On an unreadable or inconsistent label file (named).
    """
    if dataset.kind == "project":
        from napari_samlabel.io.project import Project

        doc = Project.open(dataset.root).load_document(image_id)
        semantic, instance = doc.label_maps()
    else:
        semantic, instance = _voc_maps(dataset.root, image_id)
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    void = (semantic == VOID) | (instance == VOID)
    objects = []
    for k in np.unique(instance):
        if k in (0, VOID):
            continue
        mask = (instance == k) & ~void
        if not mask.any():
            continue
        classes, counts = np.unique(semantic[mask], return_counts=True)
        cls = int(classes[int(np.argmax(counts))])
        if cls in (0, VOID):
            continue
        if cls >= len(dataset.classes):
            raise DatasetError(f"{image_id}: class index {cls} is outside the class list "
                               f"of {dataset.root} (0..{len(dataset.classes) - 1})")
        objects.append(GroundTruthObject(int(k), cls, mask))
    shape = (int(semantic.shape[0]), int(semantic.shape[1]))
    return GroundTruth(image_id, shape, tuple(objects), void)


def _voc_maps(voc: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    from napari_samlabel.io.voc.components import components_with_specks
    from napari_samlabel.io.voc.labelpng import read_label_png

    png = voc / "SegmentationClass" / f"{image_id}.png"
    try:
        semantic = read_label_png(png)
        obj = voc / "SegmentationObject" / f"{image_id}.png"
        if obj.is_file():
            instance = read_label_png(obj)
            if instance.shape != semantic.shape:
                raise DatasetError(f"{obj} is {instance.shape} but {png} is {semantic.shape}")
        else:
            instance, _ = components_with_specks(semantic, 0)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read the ground truth of {image_id}: {exc}") from None
    return semantic, instance

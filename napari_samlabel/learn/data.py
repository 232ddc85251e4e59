"""Training data for the segmenter: (image, label map) pairs from a VOC tree or a project.

:func:`load_samples` reads a source into :class:`Sample` records (the image path and its label
map, kept in memory: self-training replaces the labels each round). :class:`SegmentationDataset`
is the :class:`torch.utils.data.Dataset` over them: images resized to ``size x size`` and
normalised, labels resized with nearest neighbour, the per-pixel loss weights of
:mod:`napari_samlabel.learn.losses`, and a random horizontal flip when training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io.images import ImageReadError, load_image
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import ProjectError
from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.io.voc.reader import find_image, find_voc_root, read_voc_classes
from napari_samlabel.learn.losses import IGNORE_INDEX, pixel_weights


class DataError(ValueError):
    """A training source that cannot be read (the message names the file)."""


@dataclass
class Sample:
    """One training image and its current label map (``uint8``, 255 void)."""

    image_id: str
    image_path: Path
    labels: np.ndarray


def load_samples(source: str | os.PathLike[str], classes: ClassTable | None = None,
                 ) -> tuple[list[Sample], ClassTable]:
    """Read a VOC tree (``SegmentationClass`` + ``JPEGImages``) or a napari-samlabel project.

    A project gives its images with at least one accepted object (status not ``new``), each
    labelled by the composed semantic map of its objects.

    Raises
    ------
    DataError
        When the source is neither, an image or label is unreadable, sizes differ, a label
        is outside the class table, or no labelled image is found.
    """
    src = Path(source)
    samples: list[Sample] = []
    try:
        if Project.is_project(src):
            project = Project.open(src)
            table = classes or project.classes
            for iid in project.image_ids:
                if project.status(iid) == ImageStatus.NEW:
                    continue
                doc = project.load_document(iid)
                if not doc.objects:
                    continue
                samples.append(Sample(iid, project.image_path(iid),
                                      np.array(doc.label_maps()[0], dtype=np.uint8)))
        else:
            voc = find_voc_root(src)
            table = classes or read_voc_classes(voc)
            seg = voc / "SegmentationClass"
            if not seg.is_dir():
                raise DataError(f"{voc} has no SegmentationClass folder (no labels to train on)")
            for png in sorted(seg.glob("*.png")):
                if png.name.startswith("."):
                    continue
                samples.append(Sample(png.stem, find_image(voc / "JPEGImages", png.stem),
                                      read_label_png(png)))
    except (VocError, ProjectError) as exc:
        raise DataError(str(exc)) from exc
    if not samples:
        raise DataError(f"{src}: no labelled images to train on")
    for s in samples:
        bad = np.setdiff1d(np.unique(s.labels), [IGNORE_INDEX])
        bad = bad[bad >= len(table)]
        if bad.size:
            raise DataError(f"{s.image_id}: label values {bad.tolist()} outside the "
                            f"{len(table)} classes")
    return samples, table


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 image; :class:`DataError` naming the file when unreadable."""
    try:
        return load_image(path)
    except (ImageReadError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the image: {exc}") from exc


class SegmentationDataset:
    """A map-style torch dataset of ``(image, target, weight)`` tensors.

    Parameters
    ----------
    samples : sequence of Sample
        The images and their current labels (read at each access, so replacing a sample's
        ``labels`` between rounds needs no new dataset).
    size : int
        Side of the square network input.
    weighting : {"distance", "boundary", "none"}
        Loss weights (see :mod:`napari_samlabel.learn.losses`).
    train : bool
        Random horizontal flips.
    seed : int
        Seed of the flips.
    """

    def __init__(self, samples: Sequence[Sample], size: int, weighting: str = "distance",
                 train: bool = True, seed: int = 0) -> None:
        self.samples = list(samples)
        self.size = int(size)
        self.weighting = weighting
        self.train = train
        self._rng = np.random.default_rng(seed)
        self._images: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def image_tensor(self, index: int) -> Any:
        """The normalised input tensor of sample ``index`` (cached: images do not change)."""
        from napari_samlabel.learn.segmenter import to_tensor

        s = self.samples[index]
        if s.image_id not in self._images:
            image = read_image(s.image_path)
            if image.shape[:2] != s.labels.shape:
                raise DataError(f"{s.image_path} is {image.shape[0]}x{image.shape[1]} but its "
                                f"labels are {s.labels.shape[0]}x{s.labels.shape[1]}")
            self._images[s.image_id] = to_tensor(image, self.size)
        return self._images[s.image_id]

    def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
        import torch
        from PIL import Image

        s = self.samples[index]
        x = self.image_tensor(index)
        lab = s.labels
        if lab.shape != (self.size, self.size):
            lab = np.asarray(Image.fromarray(lab).resize((self.size, self.size),
                                                         Image.Resampling.NEAREST))
        w = pixel_weights(lab, self.weighting)
        if self.train and self._rng.random() < 0.5:
            x = torch.flip(x, dims=[2])
            lab, w = lab[:, ::-1], w[:, ::-1]
        return (x, torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64)),
                torch.from_numpy(np.ascontiguousarray(w)))

"""A ground-truth oracle engine for a labelled dataset (development runs, not for users).

:class:`napari_samlabel.testing.fakes.OracleEngine` answers every prompt with the
ground-truth object under it. Running the pseudo-label pipeline with it on a dataset whose
ground truth is known isolates everything *around* SAM — weak-label reading, coordinate
conventions, class assignment, composition of overlapping masks, writing — from SAM's own
mask quality: with a correct pipeline the pseudo labels score close to 1.0 mIoU (less only
where the weak labels miss objects).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.evaluate.metrics import EvaluationError
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.testing.fakes import OracleEngine


def oracle_from_voc(voc: str | os.PathLike[str], ids: Sequence[str] | None = None,
                    overlap: int = 0, classes: ClassTable | Sequence[str] | None = None,
                    concept_score: float = 1.0) -> OracleEngine:
    """Build an oracle from a VOC folder.

    The folder holds ``JPEGImages/``, ``SegmentationClass/`` and optionally
    ``SegmentationObject/`` (objects are then instances, else connected components). Images
    are loaded with :func:`napari_samlabel.io.images.load_image`, the loader the pipeline
    uses, so the oracle recognises them by content.

    Parameters
    ----------
    voc : path
        The ``VOC2012`` folder.
    ids : sequence of str, optional
        Only these images (default: every ``SegmentationClass`` PNG).
    overlap : int
        See :class:`~napari_samlabel.testing.fakes.OracleEngine`.
    classes : ClassTable or list of str, optional
        Class names for concept prompts (:meth:`OracleEngine.find_all`); VOC by default.
    concept_score : float
        Score of the instances concept prompts find.

    Raises
    ------
    EvaluationError
        When an image or label file is missing.
    """
    from napari_samlabel.io.images import load_image

    voc = Path(voc)
    seg = voc / "SegmentationClass"
    if not seg.is_dir():
        raise EvaluationError(f"no SegmentationClass folder in {voc}")
    wanted = list(ids) if ids is not None else sorted(p.stem for p in seg.glob("*.png"))
    items = []
    for image_id in wanted:
        jpg = voc / "JPEGImages" / f"{image_id}.jpg"
        if not jpg.is_file():
            raise EvaluationError(f"image {jpg} not found")
        inst_path = voc / "SegmentationObject" / f"{image_id}.png"
        inst = read_label_png(inst_path) if inst_path.is_file() else None
        items.append((load_image(jpg), read_label_png(seg / f"{image_id}.png"), inst))
    return OracleEngine.from_pairs(items, overlap=overlap, classes=as_class_table(classes),
                                   concept_score=concept_score)

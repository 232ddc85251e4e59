"""Objects of a label map: which instance map goes with a class map.

VOC's ``SegmentationObject`` (and the annotation document) number objects 1..254 in an
8-bit map. The objects of a class map are the 8-connected components of each class, unless
a fragmented map (a refined or superpixel-snapped one) has more components than that; then
each class is one object, so the map can still be written instead of the image failing.
:func:`objects_from_labels` makes the annotation document's objects of such a map.
"""

from __future__ import annotations

import numpy as np

from napari_samlabel.core.classes import VOID
from napari_samlabel.core.objects import AnnotatedObject

MAX_INSTANCES = VOID - 1


def component_count(semantic: np.ndarray) -> int:
    """Number of 8-connected components over all classes (0 and 255 excluded)."""
    from skimage.measure import label

    return sum(int(label(semantic == c, connectivity=2, return_num=True)[1])
               for c in np.unique(semantic) if c not in (0, VOID))


def class_units(semantic: np.ndarray) -> np.ndarray:
    """Instance map with one instance per class present (in class order), void kept."""
    out = np.zeros(semantic.shape, dtype=np.uint8)
    classes = [int(c) for c in np.unique(semantic) if c not in (0, VOID)]
    for k, c in enumerate(classes, start=1):
        out[semantic == c] = k
    out[semantic == VOID] = VOID
    return out


def instances_for(semantic: np.ndarray, units: np.ndarray | None = None) -> np.ndarray | None:
    """The instance map to write with ``semantic``, or None for its connected components.

    When the components do not fit an 8-bit map (more than 254), ``units`` (the objects
    that were segmented, for a pseudo-label run by class) or else :func:`class_units`.
    """
    if component_count(semantic) <= MAX_INSTANCES:
        return None
    return units if units is not None else class_units(semantic)


def instance_map(semantic: np.ndarray) -> np.ndarray:
    """The objects of ``semantic`` as an instance map: components, or one per class."""
    from napari_samlabel.io.voc.components import instances_from_components

    units = instances_for(semantic)
    return instances_from_components(semantic) if units is None else units


def objects_from_labels(labels: np.ndarray, model_id: str | None = None
                        ) -> list[AnnotatedObject]:
    """The objects of a refined class map.

    The 8-connected components of each class, or one object per class when there are more
    than 254 (:func:`instance_map`). Void and background pixels belong to no object;
    objects carry no prompts and no predicted IoU (they come from a label map, not from one
    SAM decode).
    """
    sem = np.asarray(labels, dtype=np.uint8)
    inst = instance_map(sem)
    out = []
    for oid in (int(v) for v in np.unique(inst) if v not in (0, VOID)):
        mask = inst == oid
        cls = int(np.bincount(sem[mask], minlength=256).argmax())
        out.append(AnnotatedObject(oid, cls, mask, model_id=model_id))
    return out

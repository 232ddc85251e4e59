"""Objects of a label map: which instance map goes with a class map.

VOC's ``SegmentationObject`` (and the annotation document) number objects 1..254 in an
8-bit map. The objects of a class map are the 8-connected components of each class, unless
a fragmented map (a refined or superpixel-snapped one) has more components than that; then
each class is one object, so the map can still be written instead of the image failing.
"""

from __future__ import annotations

import numpy as np

from napari_samlabel.core.classes import VOID

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

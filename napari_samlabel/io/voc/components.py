"""Pixel analysis of VOC label maps: boxes, the void band, instances from components.

:func:`components_with_specks` turns a class map into instances (one per 8-connected
component of a class), joining the specks VOC's ground truth has between its void bands to
their neighbours; :func:`void_band` and :func:`draw_band` draw VOC's band of void pixels
along label edges (see the conventions in :mod:`napari_samlabel.io.voc`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.classes import BACKGROUND, VOID
from napari_samlabel.io.voc import VocError


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """VOC ``(xmin, ymin, xmax, ymax)`` (1-based, inclusive) of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no bounding box")
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def void_band(labels: np.ndarray, width: int) -> np.ndarray:
    """Boolean mask of the void band of exactly ``width`` pixels along edges between labels.

    Across a straight edge the band is ``width`` pixels wide: the ``ceil(width / 2)``
    pixels of the side with the higher label nearest the edge and the ``floor(width / 2)``
    of the lower side (for an object on background the odd pixel is the object's). A pixel
    lies within ``r`` pixels of the edge when its centre is less than ``r + 1/2`` from the
    centre of the nearest pixel of the other label: exact on horizontal and vertical edges,
    and on slanted ones the band keeps its width measured across the edge (a 45 degree
    edge gets about ``N * sqrt(2)`` pixels per row). The image border is not an edge. See
    the conventions in :mod:`napari_samlabel.io.voc`.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    band = np.zeros(labels.shape, dtype=bool)
    if width <= 0 or labels.size == 0:
        return band
    high, low = (width + 1) // 2, width // 2  # reach on the higher / lower side of an edge
    values, dense = np.unique(labels, return_inverse=True)
    dense = dense.reshape(labels.shape)
    if len(values) < 2:
        return band
    margin = high + 1
    for k, box in enumerate(ndi.find_objects(dense + 1)):
        if box is None:
            continue
        # Only pixels within ``margin`` of label k matter for its band: work in that window.
        window = tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n))
                       for b, n in zip(box, labels.shape, strict=True))
        sub = dense[window]
        own = sub == k
        for reach, other in ((high, sub < k), (low, sub > k)):
            if reach and other.any():
                near = ndi.binary_dilation(other, _disk(reach))
                band[window] |= own & near
    return band


def _disk(reach: int) -> np.ndarray:
    """Footprint of the offsets shorter than ``reach + 1/2``.

    Dilating a set by it marks the pixels within ``reach`` of the set, as a distance
    transform would, several times faster.
    """
    r = np.arange(-reach, reach + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) < (reach + 0.5) ** 2


def draw_band(sem: np.ndarray, inst: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of a class and an instance map with the void band drawn.

    See the conventions in :mod:`napari_samlabel.io.voc` and :func:`void_band`.

    The band never erases an instance: one thinner than the band keeps its pixels.
    """
    sem, inst = sem.copy(), inst.copy()
    if border:
        band = void_band(sem.astype(np.int32) * 256 + inst, border)
        before = np.bincount(inst.ravel(), minlength=256)
        after = np.bincount(inst[~band], minlength=256)
        erased = np.flatnonzero((before > 0) & (after == 0))
        erased = erased[(erased != 0) & (erased != VOID)]
        if erased.size:
            band &= ~np.isin(inst, erased)
        sem[band] = VOID
        inst[band] = VOID
    return sem, inst


@dataclass(frozen=True)
class SpeckReport:
    """What :func:`components_with_specks` did with the class regions under ``min_area``.

    Attributes
    ----------
    merged, merged_pixels : int
        Small regions (and their pixels) given to the nearest larger region of their class.
    grouped, grouped_pixels : int
        Small regions of a class that has no larger region in the image: kept, all of them
        together as one instance, so their pixels keep their class.
    """

    merged: int = 0
    merged_pixels: int = 0
    grouped: int = 0
    grouped_pixels: int = 0

    @property
    def regions(self) -> int:
        """Number of small regions handled."""
        return self.merged + self.grouped

    def describe(self, min_area: int) -> str:
        """A short phrase for the import summary."""
        parts = []
        if self.merged:
            parts.append(f"{self.merged} regions under {min_area} px ({self.merged_pixels} px) "
                         "merged into the nearest object of their class")
        if self.grouped:
            parts.append(f"{self.grouped} regions under {min_area} px "
                         f"({self.grouped_pixels} px) kept as one object of their class")
        return "; ".join(parts)


def components_with_specks(semantic: np.ndarray,
                           min_area: int = 0) -> tuple[np.ndarray, SpeckReport]:
    """Instance map from the 8-connected components of each class (void and 0 excluded).

    Components smaller than ``min_area`` pixels (specks: VOC's ground truth has many of 1-5
    pixels between its void bands) do not become instances of their own, and their pixels
    are not lost either: each speck pixel joins the nearest larger component of the same
    class; when a class has only specks in the image, they form one instance together.
    Returns the ``uint8`` instance map (255 where ``semantic`` is void) and what happened to
    the specks. Raises ``VocError`` when more than 254 instances remain.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label

    out = np.zeros(semantic.shape, dtype=np.int32)
    n = 0
    report = {"merged": 0, "merged_pixels": 0, "grouped": 0, "grouped_pixels": 0}
    for c in np.unique(semantic):
        if c in (BACKGROUND, VOID):
            continue
        comp, k = label(semantic == c, connectivity=2, return_num=True)
        if min_area > 1 and k:
            sizes = np.bincount(comp.ravel(), minlength=k + 1)
            small = sizes < min_area
            small[0] = False
            keep = ~small
            keep[0] = False
            if small.any() and keep.any():
                # Renumber the kept components 1..m in label order, then give every speck
                # pixel the label of the nearest kept pixel.
                new_ids = np.zeros(k + 1, dtype=np.int32)
                new_ids[keep] = np.arange(1, int(keep.sum()) + 1)
                big = new_ids[comp]
                specks = small[comp]
                _, (rows, cols) = ndi.distance_transform_edt(big == 0, return_indices=True)
                big[specks] = big[rows[specks], cols[specks]]
                comp, k = big, int(keep.sum())
                report["merged"] += int(small.sum())
                report["merged_pixels"] += int(sizes[small].sum())
            elif small.any():
                comp, k = (comp > 0).astype(np.int32), 1
                report["grouped"] += int(small.sum())
                report["grouped_pixels"] += int(sizes[small].sum())
        out[comp > 0] = comp[comp > 0] + n
        n += k
    if n >= VOID:
        raise VocError(f"{n} connected components do not fit an 8-bit instance map "
                       f"(at most {VOID - 1})")
    out[semantic == VOID] = VOID
    return out.astype(np.uint8), SpeckReport(**report)


def instances_from_components(semantic: np.ndarray, min_area: int = 0) -> np.ndarray:
    """Instance map from the 8-connected components of each class (void and 0 excluded).

    Components smaller than ``min_area`` pixels join the nearest larger component of their
    class (see :func:`components_with_specks`). Raises ``VocError`` when more than 254
    components remain.
    """
    return components_with_specks(semantic, min_area)[0]


def consistent_instances(image_id: str, semantic: np.ndarray,
                          instance: np.ndarray) -> np.ndarray:
    """Make an instance map agree with the semantic map, which is authoritative.

    Instance pixels where the semantic map says background or void take that value; class
    pixels no instance covers become extra instances, one per 8-connected component of each
    class (VOC expects every object pixel in ``SegmentationObject``).
    """
    inst = instance.copy()
    inst[semantic == BACKGROUND] = 0
    inst[semantic == VOID] = VOID
    leftover = (inst == 0) & (semantic != BACKGROUND) & (semantic != VOID)
    if leftover.any():
        extra = instances_from_components(np.where(leftover, semantic, 0).astype(np.uint8))
        used = int(inst[inst != VOID].max(initial=0))
        n_extra = int(extra[extra != VOID].max(initial=0))
        if used + n_extra >= VOID:
            raise VocError(f"image {image_id}: {used} instances and {n_extra} uncovered class "
                           f"regions do not fit an 8-bit instance map (at most {VOID - 1})")
        inst[leftover] = extra[leftover] + used
    return inst


def majority_class(semantic: np.ndarray, mask: np.ndarray) -> int | None:
    """The most frequent class of ``semantic`` under ``mask`` (None if only 0 or void)."""
    vals = semantic[mask]
    vals = vals[(vals != BACKGROUND) & (vals != VOID)]
    if vals.size == 0:
        return None
    return int(np.bincount(vals, minlength=256).argmax())

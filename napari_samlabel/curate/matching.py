"""Ground-truth matching: how the masks of one image compare with its ground truth.

:class:`GroundTruth` holds the ground truth of one image (its class map and, when known, its
instance map) and matches the image's masks against it: one to one for instances (greedily by
IoU, as COCO's evaluation does), by class region otherwise. The :class:`GtResult` gives each
mask a :class:`GtMatch` (``gt_iou``, the matched class, ``gt_merge``: the share of a second
ground-truth object inside the mask, and whether it duplicates another mask's match) and
counts the ground-truth objects that no mask found (``gt_missed``: missed objects; merged
objects show as ``gt_merge``). :mod:`napari_samlabel.curate.assessment` turns these into
signals and flags; :class:`napari_samlabel.curate.sources.GroundTruthFolder` reads ground
truth from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.classes import BACKGROUND, VOID
from napari_samlabel.engine.quality import mask_iou


@dataclass(frozen=True)
class GtMatch:
    """How one mask compares with the ground truth of its image.

    Attributes
    ----------
    iou : float
        ``gt_iou``: IoU with the ground-truth object matched to the mask (0 when none is).
    class_id : int or None
        Class of that object (None when none is matched).
    merge : float
        ``gt_merge``: the share of a second ground-truth object inside the mask (see
        :class:`GroundTruth`).
    duplicate : bool
        The mask would match an object (IoU above ``match``) that another mask took.
    """

    iou: float
    class_id: int | None
    merge: float = 0.0
    duplicate: bool = False


@dataclass(frozen=True)
class GtResult:
    """The masks of one image against its ground truth (see :meth:`GroundTruth.compare`)."""

    matches: list[GtMatch]
    objects: int
    missed: int


class GroundTruth:
    """Ground truth of one image, and how the masks of the image are matched against it.

    Two modes, after what the ground truth holds:

    - **Instances** (``instance`` given, e.g. VOC ``SegmentationObject``): masks and
      ground-truth instances are matched one to one, greedily by IoU (highest pair first,
      as COCO's evaluation does). A mask's ``gt_iou`` is its IoU with the instance matched
      to it (0 when none is: a second mask on an already matched instance is a duplicate);
      the class of that instance is the matched class. An instance of at least
      ``min_area`` of the image is *found* when its mask's IoU is above ``match`` (PASCAL:
      0.5), else *missed*. A mask's ``gt_merge`` is the largest share of any *other* such
      instance (not its matched one) that lies inside it: a mask that grabs the neighbour
      covers most of two instances and scores high.
    - **Class regions** (``instance`` None): several objects of a class share one region,
      so a mask is compared with the part of a class region it belongs to. The matched class
      is the majority ground-truth class under the mask (background and void aside), and the
      region is the union of that class's 8-connected components the mask overlaps
      (``gt_iou`` 0 for a mask on background only). Two touching objects of one class form
      one component, so a mask that covers only one of them scores low. The ground-truth
      objects are the connected components of at least ``min_area`` of the image; one is
      *missed* when all masks together cover no more than ``match`` of it. Separate
      components of one class may be one occluded object, so ``gt_merge`` counts only
      components of other classes than the matched one.

    Void (255) pixels count in neither intersection nor union nor object size.

    Parameters
    ----------
    semantic : numpy.ndarray
        ``H x W`` class indices, 0 background, 255 void.
    instance : numpy.ndarray, optional
        ``H x W`` instance indices, 0 none, 255 void.
    """

    def __init__(self, semantic: np.ndarray, instance: np.ndarray | None = None) -> None:
        self.semantic = np.asarray(semantic)
        self.instance = None if instance is None else np.asarray(instance)
        if self.semantic.ndim != 2:
            raise ValueError(f"ground truth must be an H x W label map, got shape "
                             f"{self.semantic.shape}")
        if self.instance is not None and self.instance.shape != self.semantic.shape:
            raise ValueError(f"ground-truth instances {self.instance.shape} and classes "
                             f"{self.semantic.shape} differ in size")
        self.valid = self.semantic != VOID
        self._instances: tuple[list[int], list[int]] | None = None
        self._components: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.semantic.shape[0]), int(self.semantic.shape[1]))

    def _majority_class(self, mask: np.ndarray) -> int | None:
        vals = self.semantic[mask]
        vals = vals[(vals != BACKGROUND) & (vals != VOID)]
        return int(np.bincount(vals).argmax()) if vals.size else None

    def instances(self) -> list[tuple[int, np.ndarray]]:
        """``(class_id, mask)`` of every ground-truth instance (empty in class-region mode)."""
        if self.instance is None:
            return []
        return [(c, self.instance == k) for k, c in zip(*self._instance_table(), strict=True)]

    def _instance_table(self) -> tuple[list[int], list[int]]:
        """Instance labels (with valid pixels) and their majority classes."""
        if self._instances is None:
            assert self.instance is not None
            labels, classes = [], []
            for k in np.unique(self.instance[self.valid]):
                if k in (0, VOID):
                    continue
                labels.append(int(k))
                classes.append(self._majority_class(self.instance == k) or BACKGROUND)
            self._instances = (labels, classes)
        return self._instances

    def components(self, class_id: int) -> np.ndarray:
        """8-connected component labels of ``class_id``'s ground-truth pixels (0 elsewhere)."""
        if class_id not in self._components:
            from skimage.measure import label

            self._components[class_id] = label(self.semantic == class_id, connectivity=2)
        return self._components[class_id]

    def _regions(self, min_area: float) -> tuple[np.ndarray, list[int]]:
        """Label map ``1..R`` of the class regions of at least ``min_area``, and their classes.

        The regions are the 8-connected components of each class; 0 elsewhere.
        """
        min_pixels = min_area * self.semantic.size
        labels = np.zeros(self.shape, dtype=np.int32)
        classes: list[int] = []
        for c in np.unique(self.semantic):
            if c in (BACKGROUND, VOID):
                continue
            comp = self.components(int(c))
            sizes = np.bincount(comp.ravel())
            keep = np.flatnonzero(sizes >= max(min_pixels, 1))
            keep = keep[keep > 0]
            lut = np.zeros(len(sizes), dtype=np.int32)
            lut[keep] = np.arange(len(classes) + 1, len(classes) + 1 + len(keep))
            labels = np.where(lut[comp] > 0, lut[comp], labels)
            classes.extend([int(c)] * len(keep))
        return labels, classes

    def miou(self, predicted: np.ndarray) -> float:
        """The image's mIoU of a predicted class map, as VOC computes it.

        One confusion matrix of this image alone (:class:`~napari_samlabel.evaluate.metrics.
        ConfusionMatrix`): void ground truth is ignored, and the mean is over the classes
        present in the ground truth or the prediction, background included. 1.0 when both are
        background only.
        """
        from napari_samlabel.evaluate.metrics import ConfusionMatrix

        predicted = np.asarray(predicted)
        if predicted.shape != self.semantic.shape:
            raise ValueError(f"predicted class map {predicted.shape} and ground truth "
                             f"{self.semantic.shape} differ in size")
        top = max(int(self.semantic[self.valid].max(initial=0)),
                  int(predicted[predicted != VOID].max(initial=0)))
        cm = ConfusionMatrix(top + 1)
        cm.update(predicted, self.semantic)
        value = cm.scores().miou
        return 1.0 if np.isnan(value) else float(value)

    def compare(self, masks: Sequence[np.ndarray], match: float = 0.5,
                min_area: float = 0.0) -> GtResult:
        """Match the masks of one image with the ground truth (see the class doc).

        Parameters
        ----------
        masks : sequence of numpy.ndarray
            The image's object masks.
        match : float
            An object is found when its IoU (instances) or coverage (class regions) is above
            this.
        min_area : float
            Ground-truth objects smaller than this fraction of the image count neither as
            found nor as missed, nor as the second object of a merge (VOC's class maps, and
            instance maps made from them, have specks of a few pixels). Instances of any
            size are still matched.
        """
        masks = [np.asarray(m, dtype=bool) & self.valid for m in masks]
        if self.instance is not None:
            return self._compare_instances(masks, match, min_area)
        return self._compare_regions(masks, match, min_area)

    @staticmethod
    def _counts(label_map: np.ndarray, where: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Pixels of each label of ``ids`` inside ``where``."""
        top = max(ids, default=0)
        counts = np.bincount(label_map[where].ravel().astype(np.int64), minlength=top + 1)
        return counts[np.asarray(ids, dtype=np.int64)].astype(np.float64)

    def _compare_instances(self, masks: list[np.ndarray], match: float,
                           min_area: float) -> GtResult:
        assert self.instance is not None
        labels, classes = self._instance_table()
        n, m = len(masks), len(labels)
        sizes = self._counts(self.instance, self.valid, labels)
        counted = sizes >= min_area * self.semantic.size
        inter = np.array([self._counts(self.instance, mk, labels) for mk in masks]
                         ).reshape(n, m)
        areas = np.array([np.count_nonzero(mk) for mk in masks], dtype=np.float64)
        union = areas[:, None] + sizes[None, :] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        cover = np.divide(inter, sizes[None, :], out=np.zeros_like(inter),
                          where=sizes[None, :] > 0)
        # Greedy one-to-one assignment, best pair first (ties: lower mask, then instance).
        assigned: dict[int, int] = {}
        pairs = sorted((-iou[i, j], i, j) for i in range(n) for j in range(m) if iou[i, j] > 0)
        for _, i, j in pairs:
            if i not in assigned and j not in assigned.values():
                assigned[i] = j
        matches = []
        for i in range(n):
            got = assigned.get(i)
            # A duplicate's own object is the one it fits best, though another mask took it.
            own = got if got is not None else (int(np.argmax(iou[i])) if m else None)
            others = cover[i][counted & (np.arange(m) != own)]
            merge = float(others.max()) if others.size else 0.0
            if got is None:
                matches.append(GtMatch(0.0, None, merge, bool(m and iou[i].max() > match)))
            else:
                matches.append(GtMatch(float(iou[i, got]), classes[got], merge))
        found = sum(1 for i, j in assigned.items() if iou[i, j] > match and counted[j])
        return GtResult(matches, int(counted.sum()), int(counted.sum()) - found)

    def _compare_regions(self, masks: list[np.ndarray], match: float,
                         min_area: float) -> GtResult:
        labels, classes = self._regions(min_area)
        ids = list(range(1, len(classes) + 1))
        sizes = self._counts(labels, labels > 0, ids)
        region_class = np.asarray(classes)
        matches = []
        for mask in masks:
            cls = self._majority_class(mask)
            cover = self._counts(labels, mask, ids) / np.maximum(sizes, 1.0)
            others = cover[region_class != cls] if cls is not None else cover
            merge = float(others.max()) if others.size else 0.0
            if cls is None:
                matches.append(GtMatch(0.0, None, merge))
                continue
            comp = self.components(cls)
            touched = np.unique(comp[mask])
            touched = touched[touched > 0]
            matches.append(GtMatch(mask_iou(mask, np.isin(comp, touched), self.valid), cls,
                                   merge))
        covered = np.zeros(self.shape, dtype=bool)
        for mask in masks:
            covered |= mask
        cover_all = self._counts(labels, covered, ids) / np.maximum(sizes, 1.0)
        return GtResult(matches, len(ids), int(np.count_nonzero(cover_all <= match)))


__all__ = ["GroundTruth", "GtMatch", "GtResult"]

"""Deterministic fake engines for logic tests and composition checks.

FOR TESTS AND DEVELOPMENT RUNS ONLY. They implement the engine protocol
(:mod:`napari_samlabel.engine.protocol`) with exactly SAM's output shapes — three masks
(sub-part, part, whole) at image resolution, ``(3,)`` predicted IoUs and ``(3, 256, 256)``
low-res logits laid out as SAM lays them out (the image, resized so its long side is 1024,
sits in the top-left corner of a 1024 x 1024 frame seen at 1/4 resolution) — or one of each
with ``multimask_output=False``. They validate their inputs as the real engines do
(:meth:`SamInputs.checked <napari_samlabel.engine.protocol.SamInputs.checked>`) and record
every call (``engine.calls``), so tests can spy on what a policy sends. They implement
:class:`~napari_samlabel.engine.protocol.Engine`.

- :class:`DiskEngine`: the whole mask is the union of disks around the positive points,
  the box, and the ``mask_input`` (when given, upsampled from its logits), minus disks around
  the negative points. Since ``mask_input`` shows in the output, a lost logits hand-over is
  visible.
- :class:`OracleEngine`: returns the ground-truth object under the prompts (the instance, or
  the connected component of the class, under each positive point; for a box, the object with
  most pixels inside it, clipped to the box), optionally grown into neighbouring objects so
  that touching objects' masks overlap; its predicted IoU is the true IoU of that mask to the
  ground-truth object.
  ``mask_input`` is ignored. It knows images by content (see :func:`image_fingerprint`).
  Given the class names, it also answers concept prompts
  (:class:`~napari_samlabel.engine.protocol.ConceptEngine`): ``find_all("potted plant")``
  is every ground-truth instance (or connected component) of the class whose name or
  phrase that is, each with ``concept_score``; ``find_all(exemplars=[box])`` every instance
  of the class of the object under the box; instances under a negative box are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.coords import xy_to_rc
from napari_samlabel.core.prompts import Box
from napari_samlabel.engine.protocol import Prediction, SamInputs

LOW_RES_SIZE = 256
_LOGIT = 8.0


def image_fingerprint(image: np.ndarray) -> str:
    """SHA-1 of an image's shape, dtype and bytes (how the oracle recognises images)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _lowres_region(shape: tuple[int, int]) -> tuple[int, int, float]:
    """``(rows, cols, scale)`` of the image inside SAM's 256 x 256 low-res frame."""
    h, w = shape
    scale = 1024.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)  # ResizeLongestSide
    return -(-newh // 4), -(-neww // 4), scale / 4.0


def mask_to_lowres_logits(mask: np.ndarray) -> np.ndarray:
    """``(256, 256)`` logits (+8 inside, -8 outside and in the padding) of an ``H x W`` mask."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols, s = _lowres_region(mask.shape)
    out = np.full((LOW_RES_SIZE, LOW_RES_SIZE), -_LOGIT, dtype=np.float32)
    ri = np.minimum(((np.arange(rows) + 0.5) / s).astype(int), mask.shape[0] - 1)
    ci = np.minimum(((np.arange(cols) + 0.5) / s).astype(int), mask.shape[1] - 1)
    out[:rows, :cols] = np.where(mask[np.ix_(ri, ci)], _LOGIT, -_LOGIT)
    return out


def lowres_logits_to_mask(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``H x W`` bool mask of low-res logits (nearest upsampling of the image region, > 0)."""
    lg = np.asarray(logits, dtype=np.float32).reshape(LOW_RES_SIZE, LOW_RES_SIZE)
    _, _, s = _lowres_region(shape)
    ri = np.minimum(((np.arange(shape[0]) + 0.5) * s).astype(int), LOW_RES_SIZE - 1)
    ci = np.minimum(((np.arange(shape[1]) + 0.5) * s).astype(int), LOW_RES_SIZE - 1)
    return lg[np.ix_(ri, ci)] > 0


class FakeEngine:
    """Base of the fakes: image bookkeeping, validation, call log, SAM-shaped output.

    Subclasses implement :meth:`whole_mask` (and may override :meth:`predicted_ious`).

    Attributes
    ----------
    model_id : str
    logits_frame : str
        ``"pad"``: the low-res logits are laid out as SAM's.
    calls : list of SamInputs
        Every ``predict`` input, in order, as checked (private copies of the arrays).
    images_set : int
        Number of ``set_image`` calls.
    """

    model_id = "fake"
    logits_frame = "pad"

    def __init__(self, ious: Iterable[float] = (0.6, 0.7, 0.8)) -> None:
        self.ious = np.asarray(list(ious), dtype=np.float32)
        if self.ious.shape != (3,):
            raise ValueError(f"ious must be three numbers, got {self.ious}")
        self.calls: list[SamInputs] = []
        self.images_set = 0
        self.shape: tuple[int, int] | None = None
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Remember the image (``H x W x 3`` ``uint8``)."""
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image must be uint8 RGB (H x W x 3), got {arr.dtype} {arr.shape}")
        self.image = arr
        self.shape = (int(arr.shape[0]), int(arr.shape[1]))
        self.images_set += 1

    def whole_mask(self, xy: np.ndarray, labels: np.ndarray, box: np.ndarray | None,
                   mask_input: np.ndarray | None) -> np.ndarray:
        """The "whole" level mask for these prompts (``H x W`` bool)."""
        raise NotImplementedError

    def predicted_ious(self, whole: np.ndarray) -> np.ndarray:
        """``(3,)`` predicted IoUs of (sub-part, part, whole)."""
        return self.ious.copy()

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode like SAM: three masks (or one), their IoUs and low-res logits."""
        if self.shape is None:
            raise RuntimeError("no image set: call set_image() before predict()")
        checked = inputs.checked()
        self.calls.append(checked)
        xy = (np.zeros((0, 2), np.float32) if checked.point_coords is None
              else checked.point_coords)
        labels = np.zeros(0, np.int32) if checked.point_labels is None else checked.point_labels
        if len(xy) == 0:
            labels = np.zeros(0, np.int32)
        whole = self.whole_mask(xy, labels, checked.box, checked.mask_input)
        masks = np.stack([_shrink(whole, 2), _shrink(whole, 1), whole])
        ious = self.predicted_ious(whole).astype(np.float32)
        if not inputs.multimask_output:
            masks, ious = masks[2:], ious[2:]
        logits = np.stack([mask_to_lowres_logits(m) for m in masks])
        return Prediction(masks=masks, iou_predictions=ious, low_res_logits=logits)

    @property
    def last(self) -> SamInputs:
        """The last ``predict`` input."""
        return self.calls[-1]


def _shrink(mask: np.ndarray, level: int) -> np.ndarray:
    """A smaller "part" of ``mask``: its top rows cut by 1/4 of its height per level."""
    rows = np.flatnonzero(mask.any(axis=1))
    out = mask.copy()
    if rows.size:
        cut = rows[0] + (rows[-1] - rows[0] + 1) * level // 4
        out[:cut] = False
    return out


def _disks(shape: tuple[int, int], xy: np.ndarray, radius: float) -> np.ndarray:
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    out = np.zeros(shape, dtype=bool)
    for r, c in xy_to_rc(xy).reshape(-1, 2):
        out |= (rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2
    return out


def _box_mask(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = np.zeros(shape, dtype=bool)
    r0, r1 = int(np.floor(max(y0, 0))), int(np.ceil(min(y1, shape[0] - 1)))
    c0, c1 = int(np.floor(max(x0, 0))), int(np.ceil(min(x1, shape[1] - 1)))
    out[r0:r1 + 1, c0:c1 + 1] = True
    return out


class DiskEngine(FakeEngine):
    """Whole mask = disks around positives + box + ``mask_input``, minus disks around negatives.

    Parameters
    ----------
    radius : float
        Disk radius in pixels.
    ious : three floats
        Predicted IoUs returned for (sub-part, part, whole).
    """

    model_id = "fake-disk"

    def __init__(self, radius: float = 6.0, ious: Iterable[float] = (0.6, 0.7, 0.8)) -> None:
        super().__init__(ious)
        self.radius = float(radius)

    def whole_mask(self, xy: np.ndarray, labels: np.ndarray, box: np.ndarray | None,
                   mask_input: np.ndarray | None) -> np.ndarray:
        """Disks around positives, box and ``mask_input``, minus disks around negatives."""
        assert self.shape is not None
        out = _disks(self.shape, xy[labels == 1], self.radius)
        if box is not None:
            out |= _box_mask(self.shape, box)
        if mask_input is not None:
            out |= lowres_logits_to_mask(mask_input[0], self.shape)
        out &= ~_disks(self.shape, xy[labels == 0], self.radius)
        return out


def _components(semantic: np.ndarray) -> np.ndarray:
    """Instance map from the 8-connected components of each class (0 and 255 excluded)."""
    from skimage.measure import label

    out = np.zeros(semantic.shape, dtype=np.int32)
    n = 0
    for c in np.unique(semantic):
        if c in (0, 255):
            continue
        comp, k = label(semantic == c, connectivity=2, return_num=True)
        out[comp > 0] = comp[comp > 0] + n
        n += k
    return out


class OracleEngine(FakeEngine):
    """Returns the ground-truth object under the prompts (see the module docstring).

    Parameters
    ----------
    ground_truth : mapping
        ``{image_fingerprint(image): (semantic, instance_or_None)}``; build it with
        :meth:`from_pairs`. Without an instance map, objects are the connected components
        of each class.
    overlap : int
        Grow the returned mask by this many pixels into neighbouring ground-truth objects
        (not into background): touching objects' masks then overlap, as SAM's do, and the
        composition's overlap rule decides who keeps the contested pixels.
    classes : ClassTable, mapping or sequence of str, optional
        Class names by label index (a :class:`ClassTable`, ``{name: index}`` or a list
        whose position is the index), for concept prompts by name (:meth:`find_all`).
    concept_score : float
        The score of every instance :meth:`find_all` returns.
    """

    model_id = "fake-oracle"

    def __init__(self, ground_truth: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
                 overlap: int = 0,
                 classes: ClassTable | Mapping[str, int] | Sequence[str] | None = None,
                 concept_score: float = 1.0) -> None:
        super().__init__()
        self.ground_truth = dict(ground_truth)
        self.overlap = int(overlap)
        self._instances: np.ndarray | None = None
        self._semantic: np.ndarray | None = None
        self.concept_score = float(concept_score)
        self.concept_calls: list[tuple[str | None, int, int, float]] = []
        if classes is None:
            names: dict[str, int] = {}
        elif isinstance(classes, ClassTable):
            names = {n: i for i, n in enumerate(classes.names)}
        elif isinstance(classes, Mapping):
            names = {str(n): int(i) for n, i in classes.items()}
        else:
            names = {str(n): i for i, n in enumerate(classes)}
        self.class_names = names

    @classmethod
    def from_pairs(cls, items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                   overlap: int = 0,
                   classes: ClassTable | Mapping[str, int] | Sequence[str] | None = None,
                   concept_score: float = 1.0) -> OracleEngine:
        """Build from ``(image, semantic, instance_or_None)`` triples."""
        return cls({image_fingerprint(img): (np.asarray(sem), inst)
                    for img, sem, inst in items}, overlap=overlap, classes=classes,
                   concept_score=concept_score)

    def set_image(self, image: np.ndarray) -> None:
        """Look the image up by content; raises ``KeyError`` for an unknown image."""
        key = image_fingerprint(np.asarray(image))
        if key not in self.ground_truth:
            raise KeyError("the oracle has no ground truth for this image "
                           f"({np.asarray(image).shape})")
        super().set_image(image)
        sem, inst = self.ground_truth[key]
        if sem.shape != self.shape:
            raise ValueError(f"ground truth {sem.shape} does not match the image {self.shape}")
        objects = _components(sem) if inst is None else np.asarray(inst, dtype=np.int32).copy()
        objects[(sem == 0) | (sem == 255)] = 0
        objects[objects == 255] = 0
        self._instances = objects
        self._semantic = np.asarray(sem)
        self._gt_mask: np.ndarray | None = None

    # -- concept prompts -------------------------------------------------------------------

    def class_of_phrase(self, text: str) -> int | None:
        """The class index whose name or phrase ``text`` is (case, spaces ignored), or None."""
        from napari_samlabel.core.classes import name_phrase
        from napari_samlabel.io.weak.tags import phrase_key

        if not self.class_names:
            raise ValueError("the oracle needs the class names (classes=...) to answer "
                             "concept prompts by name")
        key = phrase_key(text)
        for name, index in self.class_names.items():
            if index > 0 and key in (phrase_key(name), phrase_key(name_phrase(name))):
                return index
        return None

    def _majority(self, box: Box) -> int:
        assert self._instances is not None
        inside = self._instances[box.pixel_region(self._instances.shape)]
        inside = inside[inside > 0]
        return int(np.bincount(inside).argmax()) if inside.size else 0

    def find_all(self, text: str | None = None, exemplars: Sequence[Box] = (),
                 negatives: Sequence[Box] = (), threshold: float = 0.5) -> list[Candidate]:
        """Every ground-truth instance of the concept (see the module docstring).

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If neither ``text`` nor ``exemplars`` is given, or the class names are unknown.
        """
        phrase = (text or "").strip() or None
        if phrase is None and not exemplars:
            raise ValueError("find_all needs a phrase (text) or at least one exemplar box")
        if self._instances is None or self._semantic is None:
            raise RuntimeError("no image set: call set_image() first")
        inst, sem = self._instances, self._semantic
        wanted: set[int] = set()
        if phrase is not None:
            cid = self.class_of_phrase(phrase)
            if cid is not None:
                wanted.add(cid)
        for box in exemplars:
            obj = self._majority(box)
            if obj:
                wanted.add(int(np.bincount(sem[inst == obj]).argmax()))
        excluded = {self._majority(b) for b in negatives} - {0}
        self.concept_calls.append((phrase, len(exemplars), len(negatives), float(threshold)))
        if self.concept_score < threshold:
            return []
        source = f"text:{phrase}" if phrase is not None else "exemplar"
        found = []
        for obj in np.unique(inst[np.isin(sem, list(wanted))]) if wanted else ():
            if obj == 0 or int(obj) in excluded:
                continue
            mask = inst == obj
            cid = int(np.bincount(sem[mask]).argmax())
            rows, cols = np.nonzero(mask)
            box = Box((float(rows.min()), float(cols.min())),
                      (float(rows.max()), float(cols.max())))
            found.append(Candidate(mask=mask, score=self.concept_score, source=source,
                                   class_id=cid, box=box,
                                   low_res_logits=mask_to_lowres_logits(mask),
                                   logits_frame=self.logits_frame, prompts=(box,)))
        return found

    def _object_ids_at(self, xy: np.ndarray) -> set[int]:
        assert self._instances is not None
        h, w = self._instances.shape
        ids = set()
        for r, c in np.rint(xy_to_rc(xy)).astype(int).reshape(-1, 2):
            if 0 <= r < h and 0 <= c < w and self._instances[r, c] > 0:
                ids.add(int(self._instances[r, c]))
        return ids

    def whole_mask(self, xy: np.ndarray, labels: np.ndarray, box: np.ndarray | None,
                   mask_input: np.ndarray | None) -> np.ndarray:
        """The ground-truth objects under the positive points and the box (grown)."""
        assert self._instances is not None and self.shape is not None
        inst = self._instances
        ids = self._object_ids_at(xy[labels == 1])
        # A negative click on an object no positive click chose removes nothing; one on a
        # chosen object is an annotation conflict: the positive wins.
        region = np.ones(self.shape, dtype=bool)
        if box is not None:
            region = _box_mask(self.shape, box)
            inside = inst[region]
            counts = np.bincount(inside[inside > 0]) if (inside > 0).any() else np.zeros(1)
            if counts.max() > 0:
                ids.add(int(np.argmax(counts)))
        gt = np.isin(inst, list(ids)) if ids else np.zeros(self.shape, dtype=bool)
        self._gt_mask = gt & region
        out = self._gt_mask
        if self.overlap > 0 and out.any():
            from scipy.ndimage import binary_dilation

            grown = binary_dilation(out, iterations=self.overlap)
            out = out | (grown & (inst > 0))
        return out

    def predicted_ious(self, whole: np.ndarray) -> np.ndarray:
        """True IoU of the whole mask to the ground-truth object (parts scaled down)."""
        gt = self._gt_mask if self._gt_mask is not None else whole
        union = np.logical_or(gt, whole).sum()
        iou = float(np.logical_and(gt, whole).sum() / union) if union else 0.0
        return np.array([0.5 * iou, 0.8 * iou, iou], dtype=np.float32)


def engine_from_name(name: str, **kwargs: Any) -> FakeEngine:
    """Build a fake by name; used by picklable engine specs (dask workers).

    ``"disk"``: :class:`DiskEngine`; ``"oracle-voc"``: the oracle of a VOC folder
    (:func:`napari_samlabel.testing.oracle.oracle_from_voc`, ``voc=PATH``, ...).
    """
    if name == "disk":
        return DiskEngine(**kwargs)
    if name == "oracle-voc":
        from napari_samlabel.testing.oracle import oracle_from_voc

        return oracle_from_voc(**kwargs)
    raise KeyError(f"unknown fake engine {name!r} (known: disk, oracle-voc)")

"""The engine protocol: the one small interface every mask engine implements.

An engine has an expensive per-image step and a cheap per-prompt step, as SAM does::

    engine.set_image(image)              # encode once (RGB uint8, H x W x 3)
    pred = engine.predict(SamInputs(...))  # decode on every prompt change

Coordinates in :class:`SamInputs` are already in SAM's convention (``x, y`` points, XYXY
box, in pixels of the image given to ``set_image``); build them from core prompts with
:func:`napari_samlabel.engine.prompt_plan.to_sam_inputs`, never by hand.

Anything with these methods and attributes is an engine: the SAM-family engine
(:class:`napari_samlabel.engine.families.sam.SamEngine`: SAM, MobileSAM, SAM-HQ), the SAM 2
engine (:class:`napari_samlabel.engine.families.sam2.Sam2Engine`), and the test fakes of
:mod:`napari_samlabel.testing.fakes`. The batch pipelines and the GUI accept any of them;
:func:`napari_samlabel.engine.loader.load_engine` builds the right one for a model type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box

#: Shape of one object's low-resolution logits (``mask_input``, ``low_res_logits[k:k+1]``).
LOW_RES_SHAPE = (1, 256, 256)


@dataclass(frozen=True)
class SamInputs:
    """Decoder inputs for one prediction, in SAM's coordinate convention.

    Attributes
    ----------
    point_coords : numpy.ndarray or None
        ``(N, 2)`` ``float32`` points as ``(x, y)`` pixels.
    point_labels : numpy.ndarray or None
        ``(N,)`` ``int32``; 1 = positive, 0 = negative.
    box : numpy.ndarray or None
        ``(4,)`` ``float32`` box ``[x0, y0, x1, y1]``.
    mask_input : numpy.ndarray or None
        ``(1, 256, 256)`` ``float32`` low-resolution logits of the previous prediction of
        the same object (iterative refinement), or None.
    multimask_output : bool
        Ask for SAM's three masks (sub-part, part, whole) instead of one.
    """

    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None
    multimask_output: bool = True

    @property
    def is_empty(self) -> bool:
        """True when there is neither a point nor a box (SAM needs one of them)."""
        no_points = self.point_coords is None or len(self.point_coords) == 0
        return no_points and self.box is None

    def checked(self) -> SamInputs:
        """A validated copy with private, writable arrays of the decoder's dtypes and shapes.

        Points become ``(N, 2)`` ``float32`` and labels ``(N,)`` ``int32`` (an empty point
        array stays empty), the box ``(4,)`` ``float32``, ``mask_input`` ``(1, 256, 256)``
        ``float32`` (``(256, 256)`` is accepted). Every engine validates its inputs with
        this, the real ones and the test fakes alike, so they all refuse the same inputs.

        Raises
        ------
        ValueError
            Neither points nor a box, points without labels or of another count, labels
            other than 0/1, non-finite points or box, a box of other than 4 numbers, or a
            ``mask_input`` of another shape.
        """
        if self.is_empty:
            raise ValueError("SAM needs at least one point or a box; got neither")
        coords, labels = self.point_coords, self.point_labels
        if coords is not None and len(coords) == 0:
            coords = np.zeros((0, 2), np.float32)
            labels = None if labels is None else np.zeros(0, np.int32)
        elif coords is not None:
            coords = np.array(coords, dtype=np.float32, copy=True)
            if coords.ndim != 2 or coords.shape[1] != 2:
                raise ValueError(
                    f"point_coords must have shape (N, 2) as (x, y), got {coords.shape}")
            if labels is None:
                raise ValueError("point_labels are required with point_coords")
            labels = np.asarray(labels).astype(np.int32).ravel()
            if labels.shape[0] != coords.shape[0]:
                raise ValueError(
                    f"got {coords.shape[0]} points but {labels.shape[0]} point labels")
            if not np.isin(labels, (0, 1)).all():
                raise ValueError(
                    f"point labels must be 0 (negative) or 1 (positive), got {labels}")
            if not np.isfinite(coords).all():
                raise ValueError("point_coords contain NaN or infinite values")
        box = None
        if self.box is not None:
            box = np.array(self.box, dtype=np.float32, copy=True).ravel()
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(
                    f"box must be 4 finite numbers [x0, y0, x1, y1], got {self.box}")
        mask = None
        if self.mask_input is not None:
            # A private, writable copy: callers may hand in read-only arrays (torch warns
            # on them) and a predictor must never write into a caller's logits.
            mask = np.array(self.mask_input, dtype=np.float32, copy=True)
            if mask.shape == LOW_RES_SHAPE[1:]:
                mask = mask[None]
            if mask.shape != LOW_RES_SHAPE:
                raise ValueError(
                    f"mask_input must be (1, 256, 256) low-res logits, got {mask.shape}")
        return SamInputs(point_coords=coords, point_labels=labels, box=box, mask_input=mask,
                         multimask_output=bool(self.multimask_output))

    def predictor_kwargs(self) -> dict[str, Any]:
        """The :meth:`checked` inputs as keyword arguments of ``SamPredictor.predict``.

        SAM 2's ``SAM2ImagePredictor.predict`` takes the same names. Absent (or empty)
        prompts are left out.

        Raises
        ------
        ValueError
            As :meth:`checked`.
        """
        ok = self.checked()
        kwargs: dict[str, Any] = {"multimask_output": ok.multimask_output}
        if ok.point_coords is not None and len(ok.point_coords) > 0:
            kwargs["point_coords"] = ok.point_coords
            kwargs["point_labels"] = ok.point_labels
        if ok.box is not None:
            kwargs["box"] = ok.box
        if ok.mask_input is not None:
            kwargs["mask_input"] = ok.mask_input
        return kwargs


@dataclass(frozen=True)
class Prediction:
    """What one decode returns.

    Attributes
    ----------
    masks : numpy.ndarray
        ``(K, H, W)`` ``bool`` masks at image resolution (K = 3 with multimask output,
        otherwise 1), in SAM's order: sub-part, part, whole. Engines whose model refines
        one mask (SAM-HQ) return K = 1 whatever ``multimask_output`` says.
    iou_predictions : numpy.ndarray
        ``(K,)`` ``float32`` predicted IoU of each mask.
    low_res_logits : numpy.ndarray
        ``(K, 256, 256)`` ``float32`` logits; one of them, as ``(1, 256, 256)``, is the
        ``mask_input`` of the next call for the same object.
    logits_threshold : float
        The logit value at which ``masks`` were thresholded (SAM: 0.0).
    logits_frame : str
        How the low-resolution logits map onto the image: ``"pad"`` (SAM, MobileSAM,
        SAM-HQ: the image resized to long side 1024 in the top-left corner of the padded
        square) or ``"stretch"`` (SAM 2: the whole image stretched to the square). See
        :func:`napari_samlabel.engine.quality.logits_to_image`.
    """

    masks: np.ndarray
    iou_predictions: np.ndarray
    low_res_logits: np.ndarray
    logits_threshold: float = 0.0
    logits_frame: str = "pad"


@runtime_checkable
class Engine(Protocol):
    """A promptable mask engine.

    Attributes
    ----------
    model_id : str
        Identity of the weights (model type plus checkpoint SHA-256 or another stable
        fingerprint). Embedding caches and stored provenance are keyed by it.
    logits_frame : str
        How the low-resolution logits map onto the image: ``"pad"`` or ``"stretch"`` (see
        :class:`Prediction`).

    Engines that can also encode ahead (``encode``, ``is_cached``) are
    :class:`EncodingEngine` s. Every engine validates its inputs with
    :meth:`SamInputs.checked`.
    """

    model_id: str
    logits_frame: str

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` (``H x W x 3`` ``uint8`` RGB); later predictions refer to it."""
        ...

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image.

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If ``inputs`` has neither points nor a box.
        """
        ...


@runtime_checkable
class EncodingEngine(Engine, Protocol):
    """An :class:`Engine` that can also encode ahead and say what it has cached.

    The GUI prefetches the next image's embedding on another thread with :meth:`encode`
    (which must not change the current image) and skips that work when :meth:`is_cached`.
    """

    def encode(self, image: np.ndarray, key: str | None = None) -> tuple[Any, bool]:
        """Return ``(embedding, from_cache)`` for ``image`` without making it current."""
        ...

    def is_cached(self, image: np.ndarray) -> bool:
        """Whether ``image``'s embedding is already cached (a :meth:`set_image` is cheap)."""
        ...


@runtime_checkable
class ConceptEngine(Engine, Protocol):
    """An :class:`Engine` that also finds every instance of a concept (SAM 3).

    A concept is a noun phrase (``text``), example boxes of it on the current image
    (``exemplars``), or both; ``negatives`` are boxes of things that are *not* the concept.
    The answer is every instance found on the current image scoring at least
    ``threshold``, best first, as :class:`~napari_samlabel.core.candidates.Candidate`
    records (``source`` says ``"text:<phrase>"`` or ``"exemplar"``), which the annotator
    accepts, rejects or refines with the ordinary prompts of :meth:`predict`.
    """

    def find_all(self, text: str | None = None, exemplars: Sequence[Box] = (),
                 negatives: Sequence[Box] = (), threshold: float = 0.5) -> list[Candidate]:
        """Every instance of the concept on the current image (see the class docstring).

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If neither ``text`` nor ``exemplars`` is given.
        """
        ...


@runtime_checkable
class ProposalSource(Protocol):
    """Something that proposes objects on an image without clicks.

    A learned prompter, a trained segmenter, or a concept prompt wrapped around a
    :class:`ConceptEngine`: the annotator's candidate list, the batch ``propose`` commands
    and the simulated annotator call any of them the same way.

    Attributes
    ----------
    name : str
        What the GUI and reports call it (``"prompter (prompter.pt)"``).
    """

    name: str

    def propose(self, engine: Engine | None, image: np.ndarray, classes: ClassTable,
                progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Candidates for ``image`` (``H x W x 3`` uint8), best first.

        ``engine`` is the session's engine with ``image`` already set (so a SAM-based source
        decodes on the cached embedding), or None for sources that need no SAM.
        """
        ...

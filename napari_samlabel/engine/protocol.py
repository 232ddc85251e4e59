"""The engine protocol: the one small interface every mask engine implements.

An engine has an expensive per-image step and a cheap per-prompt step, as SAM does::

    engine.set_image(image)              # encode once (RGB uint8, H x W x 3)
    pred = engine.predict(SamInputs(...))  # decode on every prompt change

Coordinates in :class:`SamInputs` are already in SAM's convention (``x, y`` points, XYXY
box, in pixels of the image given to ``set_image``); build them from core prompts with
:func:`napari_samlabel.engine.policies.to_sam_inputs`, never by hand.

Anything with these methods and attributes is an engine: the SAM-family engine
(:class:`napari_samlabel.engine.sam.SamEngine`: SAM, MobileSAM, SAM-HQ), the SAM 2 engine
(:class:`napari_samlabel.engine.sam2.Sam2Engine`), and test fakes. The batch pipelines and
the GUI accept any of them; :func:`napari_samlabel.engine.sam.load_engine` builds the right
one for a model type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


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

    Engines may also have ``logits_frame`` (``"pad"`` when absent, see
    :class:`Prediction`), ``encode(image)`` (encode without changing the current image, so
    the GUI can prefetch on another thread) and ``is_cached(image)``.
    """

    model_id: str

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

"""The object being prompted: :class:`CurrentObject`, SAM's latest answer to its prompts.

It is part of every :class:`~napari_samlabel.core.document.DocumentState`: its class, its
prompts in the order given, and the mask, score and low-resolution logits of the last
prediction. The logits belong to this object only (the next decode of it starts from them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Prompt


@dataclass(frozen=True, eq=False)
class CurrentObject:
    """The object being prompted, and SAM's latest answer to its prompts.

    ``mask_prompts`` are the prompts the mask was computed for: after a prompt edit the old
    mask stays (its logits feed the next decode) until the answer to the new prompts
    arrives. ``ious`` are the predicted IoUs of all of SAM's candidates in that answer.
    ``candidate``: the proposal this object was taken from for refinement (its source and
    score go with the object when it is accepted); None for an object prompted from scratch.
    """

    class_id: int
    prompts: tuple[Prompt, ...] = ()
    mask: np.ndarray | None = None
    score: float | None = None
    logits: np.ndarray | None = None
    model_id: str | None = None
    original: AnnotatedObject | None = None  # the accepted object this one reopens
    mask_prompts: tuple[Prompt, ...] | None = None
    ious: np.ndarray | None = None
    candidate: Candidate | None = None

    @property
    def prediction_is_current(self) -> bool:
        """True when the mask was computed for exactly the current prompts."""
        return self.mask is not None and self.mask_prompts == self.prompts

    @property
    def object_id(self) -> int | None:
        """Id of the reopened accepted object, None for a new object."""
        return None if self.original is None else self.original.object_id

    @property
    def has_mask(self) -> bool:
        """True when a prediction for the current prompts is present and not empty."""
        return self.mask is not None and bool(self.mask.any())

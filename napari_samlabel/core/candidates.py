"""Proposals: objects a model suggests and the annotator accepts, rejects or refines.

A :class:`Candidate` is a mask that nobody has accepted yet, with where it came from (its
*source*: a concept prompt's text, an exemplar box, a learned prompter, a trained segmenter)
and how sure that source is. Candidates never enter an :class:`~napari_samlabel.core.document.
AnnotationDocument` by themselves: accepting one turns it into an ordinary object (undo,
autosave, export and curation treat it like a clicked one); refining one makes it the current
object, its low-resolution logits going back to SAM as ``mask_input`` with the next prompt.

:class:`CandidateSet` holds one image's candidates with their decisions and a score threshold
that filters them live; it emits events (psygnal, no Qt) so a view can follow it.

Every source of proposals yields the same :class:`Candidate` records, so the annotator, the
batch commands and the simulated annotator treat them alike whatever made them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.core.prompts import Box, Prompt


class Decision(StrEnum):
    """What the annotator did with a candidate."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REFINING = "refining"  # taken into the current object; leaves the list when accepted


@dataclass(frozen=True, eq=False)
class Candidate:
    """One proposed object.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        The proposed object at image resolution.
    score : float
        The source's confidence in ``[0, 1]`` (SAM 3's presence x detection score, a
        prompter's class probability, a segmenter's mean probability inside the mask).
    source : str
        Where it came from, as ``kind`` or ``kind:detail`` (``"text:dog"``,
        ``"exemplar"``, ``"prompter"``, ``"model:deeplabv3"``); shown to the annotator and
        stored with the accepted object.
    class_id : int or None
        The class the source proposes (a concept prompt's class, a prompter's argmax), or
        None when the annotator must choose.
    box : Box or None
        The object's box in image ``(row, col)`` coordinates (the core convention, see
        :mod:`napari_samlabel.core.coords`), when the source gives one.
    low_res_logits : ndarray of float32, shape (256, 256), or None
        The decoder's low-resolution logits of this mask, fed back as ``mask_input`` when
        the candidate is refined (None: refinement starts from the prompts alone).
    logits_frame : str
        Geometry of ``low_res_logits`` (see :class:`napari_samlabel.engine.protocol.
        Prediction`).
    prompts : tuple of Prompt
        Prompts that reproduce the candidate with a promptable engine (e.g. its box), so
        refinement can add points to them; empty when the source has none.
    """

    mask: np.ndarray
    score: float
    source: str
    class_id: int | None = None
    box: Box | None = None
    low_res_logits: np.ndarray | None = None
    logits_frame: str = "pad"
    prompts: tuple[Prompt, ...] = ()

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise ValueError(f"a candidate's mask must be 2-D (H, W), got shape {mask.shape}")
        if not np.isfinite(self.score):
            raise ValueError(f"a candidate's score must be finite, got {self.score!r}")
        object.__setattr__(self, "mask", mask.astype(bool, copy=False))

    @property
    def area(self) -> int:
        """Pixels in the mask."""
        return int(self.mask.sum())


class CandidateEvents(SignalGroup):
    """What a :class:`CandidateSet` tells its views."""

    changed = Signal()          # candidates replaced, cleared or the threshold moved
    decided = Signal(int, str)  # (index, Decision value) of one candidate


class CandidateSet:
    """One image's candidates, their decisions and the live score threshold.

    Parameters
    ----------
    candidates : iterable of Candidate
        The proposals, kept in the order given (sources sort them by score).
    threshold : float
        Candidates scoring below it are hidden (:meth:`visible`) and left out by
        :meth:`pending`; they are kept, so moving the threshold back shows them again.
    """

    def __init__(self, candidates: Iterable[Candidate] = (), threshold: float = 0.5) -> None:
        self.events = CandidateEvents()
        self._items: list[Candidate] = list(candidates)
        self._decisions: list[Decision] = [Decision.PENDING] * len(self._items)
        self._threshold = float(threshold)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Candidate:
        return self._items[index]

    @property
    def threshold(self) -> float:
        """The score below which candidates are hidden."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the score threshold must be in [0, 1], got {value}")
        if value != self._threshold:
            self._threshold = value
            self.events.changed.emit()

    def replace(self, candidates: Iterable[Candidate]) -> None:
        """Put new proposals in place of the current ones (all pending)."""
        self._items = list(candidates)
        self._decisions = [Decision.PENDING] * len(self._items)
        self.events.changed.emit()

    def clear(self) -> None:
        """Forget every candidate."""
        self.replace(())

    def decision(self, index: int) -> Decision:
        """The decision about candidate ``index``."""
        return self._decisions[index]

    def visible(self) -> list[int]:
        """Indices of the pending candidates at or above the threshold (the ones shown)."""
        return [i for i, c in enumerate(self._items)
                if self._decisions[i] == Decision.PENDING and c.score >= self._threshold]

    def pending(self) -> list[int]:
        """Same as :meth:`visible`: what "accept all" takes."""
        return self.visible()

    def decide(self, index: int, decision: Decision | str) -> None:
        """Record the annotator's decision about candidate ``index``.

        Raises
        ------
        IndexError
            If there is no such candidate.
        ValueError
            If ``decision`` is not a :class:`Decision`.
        """
        if not 0 <= index < len(self._items):
            raise IndexError(f"no candidate {index} (there are {len(self._items)})")
        decision = Decision(decision)
        self._decisions[index] = decision
        self.events.decided.emit(index, decision.value)

    def undecide(self, index: int) -> None:
        """Make candidate ``index`` pending again (undo of an accept or reject)."""
        self.decide(index, Decision.PENDING)

    def counts(self) -> dict[str, int]:
        """How many candidates have each decision (and how many pending ones are hidden)."""
        out = {d.value: 0 for d in Decision}
        for d in self._decisions:
            out[d.value] += 1
        out["hidden"] = out[Decision.PENDING.value] - len(self.visible())
        return out


def sort_by_score(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates best first (ties keep their order)."""
    return sorted(candidates, key=lambda c: -c.score)


__all__ = ["Candidate", "CandidateEvents", "CandidateSet", "Decision", "sort_by_score"]

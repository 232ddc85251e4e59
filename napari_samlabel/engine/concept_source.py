"""Concept prompts as a proposal source, and the phrases of class names.

:class:`ConceptSource` wraps a :class:`~napari_samlabel.engine.protocol.ConceptEngine`'s
``find_all`` (a phrase, exemplar boxes, negative boxes) as a
:class:`~napari_samlabel.engine.protocol.ProposalSource`, so the annotator's candidate list,
batch proposing and the simulated annotator treat concept prompts like any other source.
:func:`class_phrase` turns a class name into the noun phrase a concept model reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from napari_samlabel.core.candidates import Candidate, sort_by_score
from napari_samlabel.core.classes import ClassTable, name_phrase
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box
from napari_samlabel.engine.protocol import ConceptEngine, Engine

#: Lowest score a concept search asks for by default (a view filters above it).
FIND_THRESHOLD = 0.05

def class_phrase(classes: ClassTable, class_id: int) -> str:
    """The noun phrase of a class for a concept prompt.

    The rule of :func:`napari_samlabel.core.classes.name_phrase` (``pottedplant`` ->
    ``"potted plant"``, ``dog/head`` -> ``"dog head"``), which the batch tags kind uses too.
    """
    return name_phrase(classes.names[int(class_id)])


def class_of_phrase(classes: ClassTable, text: str) -> int | None:
    """The class whose name or phrase is ``text`` (case-insensitive), else None."""
    want = " ".join(text.lower().split())
    for i, name in enumerate(classes.names):
        if i and want in (name.lower(), class_phrase(classes, i).lower()):
            return i
    return None


class ConceptUnavailable(RuntimeError):
    """The engine cannot answer concept prompts (it is not a SAM 3 / ConceptEngine)."""


def call_find_all(engine: ConceptEngine, text: str | None, exemplars: Sequence[Box],
                  negatives: Sequence[Box], threshold: float,
                  progress: ProgressCallback = no_progress) -> list[Candidate]:
    """``engine.find_all``, with ``progress`` when the engine's ``find_all`` takes one."""
    kwargs: dict[str, Any] = {}
    try:
        params = inspect.signature(engine.find_all).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "progress" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs["progress"] = progress
    return list(engine.find_all(text=text, exemplars=tuple(exemplars),
                                negatives=tuple(negatives), threshold=threshold, **kwargs))


class ConceptSource:
    """A concept prompt (phrase and/or exemplar boxes) as a :class:`ProposalSource`.

    Parameters
    ----------
    text : str, optional
        The noun phrase.
    exemplars, negatives : sequence of Box
        Boxes of instances of the concept, and of things that are not.
    class_id : int, optional
        The class its candidates propose (a candidate's own class wins).
    threshold : float
        Lowest score asked of the engine.
    """

    def __init__(self, text: str | None = None, exemplars: Sequence[Box] = (),
                 negatives: Sequence[Box] = (), class_id: int | None = None,
                 threshold: float = FIND_THRESHOLD) -> None:
        text = (text or "").strip() or None
        if text is None and not exemplars:
            raise ValueError("a concept needs a phrase or an exemplar box")
        self.text = text
        self.exemplars = tuple(exemplars)
        self.negatives = tuple(negatives)
        self.class_id = class_id
        self.threshold = float(threshold)
        what = f'"{text}"' if text else ""
        if self.exemplars:
            n = len(self.exemplars)
            what = (what + " + " if what else "") + f"{n} exemplar{'s' * (n > 1)}"
        self.name = f"concept {what}"

    def propose(self, engine: Engine | None, image: np.ndarray, classes: ClassTable,
                progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Every instance of the concept on ``image`` (already set in ``engine``), best first.

        Raises
        ------
        ConceptUnavailable
            If ``engine`` does not answer concept prompts.
        """
        if not isinstance(engine, ConceptEngine):
            model = "no model" if engine is None else getattr(engine, "model_id", "this model")
            raise ConceptUnavailable(
                f"{self.name} needs a concept model (SAM 3); {model} only takes points, "
                "boxes and scribbles: pick a sam3 model in the Model tab")
        progress(0, None, f"finding {self.name}")
        found = call_find_all(engine, self.text, self.exemplars, self.negatives,
                              self.threshold, progress)
        if self.class_id is not None:
            found = [c if c.class_id is not None else replace(c, class_id=self.class_id)
                     for c in found]
        return sort_by_score(found)


__all__ = ["FIND_THRESHOLD", "ConceptSource", "ConceptUnavailable",
           "call_find_all", "class_of_phrase", "class_phrase"]

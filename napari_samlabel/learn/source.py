"""A trained segmenter as a source of proposals in the annotator.

:class:`SegmenterSource` implements :class:`napari_samlabel.engine.protocol.ProposalSource`:
the candidates of an image are the connected components of each predicted class (background
left out), each scored by the mean probability of its class inside it, best first. So a model
trained on what has been annotated pre-labels the rest; the annotator accepts, rejects or
refines each candidate like any other proposal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box
from napari_samlabel.learn.segmenter import SegmenterMeta, load_model, predict_probs

if TYPE_CHECKING:
    from napari_samlabel.engine.protocol import Engine

#: Components smaller than this many pixels are not proposed (specks of a noisy prediction).
MIN_AREA = 16


def candidates_from_probs(probs: np.ndarray, source: str, min_area: int = MIN_AREA,
                          class_map: dict[int, int] | None = None) -> list[Candidate]:
    """Candidates from ``C x H x W`` class probabilities (see the module notes).

    ``class_map`` maps the model's class index to the annotator's (classes matched by
    name); classes missing from it are left out. Default: the same indices.
    """
    from skimage.measure import label, regionprops

    probs = np.asarray(probs)
    pred = probs.argmax(axis=0)
    out = []
    for cls in np.unique(pred):
        if cls == 0 or (class_map is not None and int(cls) not in class_map):
            continue
        comps = label(pred == cls, connectivity=2)
        for region in regionprops(comps):
            if region.area < min_area:
                continue
            mask = comps == region.label
            r0, c0, r1, c1 = region.bbox
            out.append(Candidate(
                mask=mask, score=float(probs[cls][mask].mean()), source=source,
                class_id=int(class_map[int(cls)] if class_map is not None else cls),
                box=Box((float(r0), float(c0)), (float(r1 - 1), float(c1 - 1)))))
    out.sort(key=lambda c: -c.score)
    return out


class SegmenterSource:
    """Proposals from a model folder written by ``samlabel train``.

    Parameters
    ----------
    model_dir : path
        The trained model (``model.pt`` + ``model.json``).
    device : str
        Torch device.
    min_area : int
        Smallest component proposed, in pixels.
    """

    def __init__(self, model_dir: str | os.PathLike[str], device: str = "cpu",
                 min_area: int = MIN_AREA) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.min_area = int(min_area)
        self._model: Any = None
        self._meta: SegmenterMeta | None = None
        self.name = f"segmenter ({self.model_dir.name})"

    def _load(self) -> tuple[Any, SegmenterMeta]:
        if self._model is None or self._meta is None:
            self._model, self._meta = load_model(self.model_dir, self.device)
        return self._model, self._meta

    def propose(self, engine: Engine | None, image: np.ndarray, classes: ClassTable,
                progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Candidates for ``image``; the model's classes are matched to ``classes`` by name."""
        model, meta = self._load()
        progress(0, 1, "segmenting")
        probs = predict_probs(model, [np.asarray(image)], meta, self.device)[0]
        index = {n.lower(): i for i, n in enumerate(classes.names)}
        class_map = {k: index[n.lower()] for k, n in enumerate(meta.classes)
                     if n.lower() in index}
        out = candidates_from_probs(probs, f"model:{meta.arch}", self.min_area, class_map)
        progress(1, 1, f"{len(out)} candidates")
        return out

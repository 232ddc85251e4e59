"""A deterministic fake concept engine: "find all" answers with connected components of a colour.

FOR TESTS AND DEVELOPMENT RUNS ONLY. :class:`ColourConceptEngine` is a
:class:`~napari_samlabel.testing.fakes.DiskEngine` (so points, boxes and ``mask_input``
decode as there) that also implements
:class:`~napari_samlabel.engine.protocol.ConceptEngine`:

- a text prompt names a colour through ``concepts`` (``{"dog": (200, 40, 40)}``): every
  8-connected component of the pixels of that colour (within ``tolerance``) is an instance;
- an exemplar box takes the colour most common inside the box; negatives drop the
  components they overlap;
- each instance's score grows with its area (``0.3 + 0.65 * area / largest area``), so a
  test image with blobs of different sizes has candidates on both sides of a threshold;
- each candidate carries its box (as its prompt) and low-resolution logits laid out as
  SAM's (:func:`~napari_samlabel.testing.fakes.mask_to_lowres_logits`), so refining it hands
  them to the next decode, where :class:`DiskEngine` shows them.

``delay`` seconds of sleep per instance, with a progress report after each (a progress
callback that raises stops the search), make a long search to cancel. Every call is
recorded in ``find_calls``, every instance looked at counted in ``steps``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_samlabel.core.candidates import Candidate, sort_by_score
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box
from napari_samlabel.testing.fakes import DiskEngine, mask_to_lowres_logits

#: Colours of the default concepts (what :func:`concept_image` paints).
CONCEPT_COLOURS: dict[str, tuple[int, int, int]] = {
    "dog": (200, 40, 40), "cat": (40, 200, 40), "potted plant": (40, 40, 200)}


class ColourConceptEngine(DiskEngine):
    """Disk engine + concept prompts answered by colour components (see the module notes).

    Parameters
    ----------
    concepts : mapping of str to RGB, optional
        Phrase -> colour (default :data:`CONCEPT_COLOURS`); phrases match case-insensitively.
    tolerance : int
        Largest per-channel difference of a pixel from the concept's colour.
    delay : float
        Seconds spent per instance found (a slow model).
    radius : float
        Disk radius of the point prompts (as :class:`DiskEngine`).
    """

    model_id = "fake-concepts"

    def __init__(self, concepts: Mapping[str, Sequence[int]] | None = None,
                 tolerance: int = 20, delay: float = 0.0, radius: float = 6.0) -> None:
        super().__init__(radius=radius)
        colours = CONCEPT_COLOURS if concepts is None else concepts
        self.concepts = {str(k).lower(): tuple(int(v) for v in c) for k, c in colours.items()}
        self.tolerance = int(tolerance)
        self.delay = float(delay)
        self.find_calls: list[dict[str, Any]] = []
        self.steps = 0  # instances looked at, over all searches (a cancelled one stops early)
        self.started = threading.Event()  # set when a search starts (tests of cancelling)

    def _colour_of(self, text: str | None, exemplars: Sequence[Box]) -> tuple[int, ...] | None:
        assert self.image is not None
        if exemplars:
            region = exemplars[0].pixel_region(self.image.shape[:2])
            pixels = self.image[region].reshape(-1, 3)
            if not len(pixels):
                return None
            values, counts = np.unique(pixels, axis=0, return_counts=True)
            return tuple(int(v) for v in values[np.argmax(counts)])
        return self.concepts.get((text or "").strip().lower())

    def find_all(self, text: str | None = None, exemplars: Sequence[Box] = (),
                 negatives: Sequence[Box] = (), threshold: float = 0.5,
                 progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Every component of the concept's colour scoring at least ``threshold``."""
        from skimage.measure import label, regionprops

        if self.image is None or self.shape is None:
            raise RuntimeError("no image set: call set_image() before find_all()")
        if not text and not exemplars:
            raise ValueError("find_all needs a text prompt or an exemplar box")
        self.find_calls.append({"text": text, "exemplars": tuple(exemplars),
                                "negatives": tuple(negatives), "threshold": threshold})
        self.started.set()
        colour = self._colour_of(text, tuple(exemplars))
        if colour is None:
            return []
        diff = np.abs(self.image.astype(np.int16) - np.asarray(colour, np.int16)).max(axis=2)
        comps = label(diff <= self.tolerance, connectivity=2)
        regions = [r for r in regionprops(comps) if r.area >= 4]
        largest = max((r.area for r in regions), default=1)
        source = "exemplar" if exemplars else f"text:{text}"
        out = []
        for k, r in enumerate(regions):
            mask = comps == r.label
            if any(mask[b.pixel_region(self.shape)].any() for b in negatives):
                continue
            score = round(0.3 + 0.65 * r.area / largest, 4)
            if self.delay:
                time.sleep(self.delay)
            self.steps += 1
            progress(k + 1, len(regions), f"instance {k + 1} of {len(regions)}")
            if score < threshold:
                continue
            r0, c0, r1, c1 = r.bbox
            box = Box((r0, c0), (r1 - 1, c1 - 1))
            out.append(Candidate(mask, score, source, box=box,
                                 low_res_logits=mask_to_lowres_logits(mask),
                                 logits_frame=self.logits_frame, prompts=(box,)))
        return sort_by_score(out)


def concept_image(shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    """A grey RGB test image with two "dog" blobs (one large, one small) and one "cat".

    Large dog: rows 8-27, cols 8-31 (480 px, score 0.95); small dog: rows 40-47, cols
    50-59 (80 px, score ~0.41); cat: rows 36-55, cols 8-23.
    """
    img = np.full((*shape, 3), 128, np.uint8)
    img[8:28, 8:32] = CONCEPT_COLOURS["dog"]
    img[40:48, 50:60] = CONCEPT_COLOURS["dog"]
    img[36:56, 8:24] = CONCEPT_COLOURS["cat"]
    return img


__all__ = ["CONCEPT_COLOURS", "ColourConceptEngine", "concept_image"]

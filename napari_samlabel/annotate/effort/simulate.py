"""The simulated annotator on one image: proposals first, then clicks, through the session.

Every prompt goes through :class:`~napari_samlabel.annotate.session.AnnotationSession`
(headless, :class:`~napari_samlabel.annotate.lane.SyncRunner`): ``set_prompts`` with all the
object's prompts so far, decoded by the session's policy (``refine_object``) from the
previous logits (``mask_input``), with the session's multimask choice — the path the GUI
takes, so the count measures the product. Where the next prompt goes is
:mod:`~napari_samlabel.annotate.effort.clicker`'s.

Per object the annotator prompts until the mask reaches the *stop* IoU (the highest
target, 0.90 by default) or ``max_clicks`` interactions were spent; IoU after later
interactions is the last one carried forward (the annotator has accepted). Then it accepts
the object (or discards an empty mask).

With a proposal source, before any click: proposals are taken best first; one whose IoU
with a ground-truth object not yet matched reaches the stop IoU is accepted (that object is
done with 0 clicks), every other one is rejected; each is one decision. Accepted proposals
are not put into the session's document (nothing in the decode of later objects depends on
accepted objects).

Class choices: the first object clicked on an image costs one, and so does every later one
whose class differs from the previous clicked object's; an accepted proposal costs one when
its class is missing or wrong.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.annotate.effort.clicker import PROMPT_KINDS, first_prompts, iou, next_prompt
from napari_samlabel.annotate.effort.dataset import GroundTruth, GroundTruthObject
from napari_samlabel.core.candidates import Candidate, sort_by_score
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble
from napari_samlabel.engine.concept_source import ConceptSource, class_phrase
from napari_samlabel.engine.protocol import ConceptEngine, Engine, ProposalSource

TARGETS = (0.85, 0.90)


class SimulationError(RuntimeError):
    """The session could not answer a prompt (the engine failed); the message says why."""


@dataclass(frozen=True)
class Settings:
    """What a simulated run does (with the model identity, the key of its results).

    Attributes
    ----------
    model_id : str
        Identity of the engine's weights (``engine.model_id``).
    prompt : str
        ``points``, ``box``, ``box+points`` or ``scribble`` (see the clicker).
    max_clicks : int
        Interactions per object at most.
    proposals : str
        ``none``, or the name of the proposal source (``concept``, ``prompter``).
    policy : str or None
        Prompt policy preset of the session (None: the session's default, ``interactive``).
    targets : tuple of float
        IoU targets of NoC; the highest is where the annotator stops.
    dataset : str
        The dataset's folder (set by :func:`~napari_samlabel.annotate.effort.run.
        simulate_annotation`): results of other images never mix into a run.
    """

    model_id: str
    prompt: str = "points"
    max_clicks: int = 20
    proposals: str = "none"
    policy: str | None = None
    targets: tuple[float, ...] = TARGETS
    dataset: str = ""

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"unknown prompt kind {self.prompt!r}; expected one of "
                             f"{', '.join(PROMPT_KINDS)}")
        if int(self.max_clicks) < 1:
            raise ValueError(f"max_clicks must be >= 1, got {self.max_clicks}")
        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise ValueError(f"IoU targets must be in (0, 1], got {self.targets}")
        object.__setattr__(self, "targets", tuple(sorted(float(t) for t in self.targets)))

    @property
    def stop(self) -> float:
        """The IoU at which the annotator accepts an object."""
        return self.targets[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {**asdict(self), "targets": list(self.targets)}


@dataclass
class ObjectEffort:
    """What one ground-truth object cost.

    ``ious[k]`` is the IoU after ``k`` interactions (``ious[0]``: before any, 0 for a
    clicked object, the proposal's IoU for an accepted proposal). ``noc[t]`` is the first
    ``k`` reaching target ``t``, None when it never does (a failure at ``t``).
    """

    object_id: int
    class_id: int
    area: int
    source: str
    ious: list[float]
    noc: dict[str, int | None]
    points: int = 0
    boxes: int = 0
    scribbles: int = 0
    class_choices: int = 0
    prompts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def interactions(self) -> int:
        """Prompts given (points, boxes and scribbles)."""
        return self.points + self.boxes + self.scribbles

    @property
    def final_iou(self) -> float:
        """IoU of the accepted mask."""
        return self.ious[-1]


@dataclass
class ImageEffort:
    """What one image cost: its objects, the proposal decisions and the time spent."""

    image_id: str
    objects: list[ObjectEffort]
    accepted: int = 0
    rejected: int = 0
    decodes: int = 0
    decode_ms: float = 0.0
    session_ms: float = 0.0
    clicker_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (the per-image result file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageEffort:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` on bad input)."""
        objects = [ObjectEffort(**o) for o in data["objects"]]
        return cls(**{**data, "objects": objects})


@dataclass
class ConceptProposals:
    """A :class:`~napari_samlabel.engine.protocol.ProposalSource` over a concept engine.

    Asks the engine (SAM 3) for every instance of each class name of the class table
    (background excluded), as an annotator who typed the dataset's class names once would;
    candidates without a class get the class of their phrase.
    """

    threshold: float = 0.5
    name: str = "concept"

    def propose(self, engine: Engine | None, image: np.ndarray, classes: ClassTable,
                progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Candidates of every class, best first.

        Each class is asked by its phrase through
        :class:`~napari_samlabel.engine.concept_source.ConceptSource`, as the Proposals tab
        asks.
        """
        if not isinstance(engine, ConceptEngine):
            raise SimulationError(f"model {getattr(engine, 'model_id', engine)!r} cannot "
                                  "find concepts (concept proposals need a SAM 3 model)")
        out: list[Candidate] = []
        count = len(classes.names) - 1
        for cid in range(1, count + 1):
            progress(cid, count, classes.names[cid])
            source = ConceptSource(class_phrase(classes, cid), class_id=cid,
                                   threshold=self.threshold)
            out += source.propose(engine, image, classes)
        return sort_by_score(out)


def _prompt_record(p: Prompt) -> dict[str, Any]:
    if isinstance(p, Point):
        return {"type": "point", "rc": [p.rc[0], p.rc[1]], "positive": p.positive}
    if isinstance(p, Box):
        return {"type": "box", "top_left": list(p.top_left),
                "bottom_right": list(p.bottom_right)}
    assert isinstance(p, Scribble)
    return {"type": "scribble", "path": p.path.tolist(), "positive": p.positive}


def _noc(ious: Sequence[float], targets: Sequence[float]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for t in targets:
        out[f"{t:.2f}"] = next((k for k, v in enumerate(ious) if v >= t), None)
    return out


class _Annotator:
    """Drives one headless session over one image."""

    def __init__(self, engine: Engine, image: np.ndarray, gt: GroundTruth,
                 classes: ClassTable, settings: Settings) -> None:
        from napari_samlabel.annotate.lane import SyncRunner
        from napari_samlabel.annotate.session import AnnotationSession

        self.gt, self.settings = gt, settings
        self.messages: list[str] = []
        self.session = AnnotationSession(
            [Path(f"{gt.image_id}.png")], engine=engine, classes=classes,
            runner=SyncRunner(), policy=settings.policy, prefetch=False,
            image_loader=lambda _path: image)
        self.session.events.message.connect(self._message)
        self.session.open_image(0)
        if self.messages and self.messages[-1]:
            raise SimulationError(f"{gt.image_id}: {self.messages[-1]}")
        self.result = ImageEffort(gt.image_id, [])
        self._last_class: int | None = None

    def _message(self, text: str) -> None:
        self.messages.append(text)

    def _prompt(self, prompt: Prompt) -> np.ndarray | None:
        session = self.session
        doc = session.doc
        assert doc is not None
        self.messages.clear()
        t0 = time.perf_counter()
        session.set_prompts(doc.current.prompts + (prompt,))
        self.result.session_ms += (time.perf_counter() - t0) * 1e3
        cur = doc.current
        if not cur.prediction_is_current:
            why = next((m for m in reversed(self.messages) if m), "no answer")
            raise SimulationError(f"{self.gt.image_id}: the session did not decode the "
                                  f"prompts: {why}")
        self.result.decodes += 1
        self.result.decode_ms += session.last_decode_ms or 0.0
        return cur.mask

    def click_object(self, obj: GroundTruthObject) -> ObjectEffort:
        """Prompt ``obj`` until the stop IoU or the click cap; accept it."""
        s = self.settings
        session = self.session
        session.select_class(obj.class_id)
        eff = ObjectEffort(obj.object_id, obj.class_id, int(obj.mask.sum()), "clicks",
                           [0.0], {}, class_choices=int(obj.class_id != self._last_class))
        self._last_class = obj.class_id
        t0 = time.perf_counter()
        queue = list(first_prompts(obj.mask, s.prompt))
        mask: np.ndarray | None = None
        while eff.interactions < s.max_clicks:
            prompt = queue.pop(0) if queue else next_prompt(mask, obj.mask, s.prompt,
                                                            self.gt.void)
            if prompt is None:
                break
            self.result.clicker_ms += (time.perf_counter() - t0) * 1e3
            mask = self._prompt(prompt)
            t0 = time.perf_counter()
            if isinstance(prompt, Point):
                eff.points += 1
            elif isinstance(prompt, Box):
                eff.boxes += 1
            else:
                eff.scribbles += 1
            eff.prompts.append(_prompt_record(prompt))
            eff.ious.append(iou(mask, obj.mask, self.gt.void))
            if eff.ious[-1] >= s.stop and not queue:
                break
        self.result.clicker_ms += (time.perf_counter() - t0) * 1e3
        eff.noc = _noc(eff.ious, s.targets)
        if session.doc is not None and session.doc.current.has_mask:
            session.accept()
        else:
            session.discard()
        return eff

    def decide(self, source: ProposalSource) -> set[int]:
        """Accept the proposals matching an object, reject the rest; the matched ids."""
        s, gt = self.settings, self.gt
        candidates = source.propose(self.session.engine, np.asarray(self.session.image),
                                    self.session.classes)
        left = {o.object_id: o for o in gt.objects}
        for cand in candidates:
            scores = [(iou(cand.mask, o.mask, gt.void), oid) for oid, o in left.items()]
            best, oid = max(scores, default=(0.0, -1))
            if best < s.stop:
                self.result.rejected += 1
                continue
            self.result.accepted += 1
            obj = left.pop(oid)
            ious = [best]
            self.result.objects.append(ObjectEffort(
                obj.object_id, obj.class_id, int(obj.mask.sum()), f"proposal:{cand.source}",
                ious, _noc(ious, s.targets), class_choices=int(cand.class_id != obj.class_id)))
        return {o.object_id for o in gt.objects} - set(left)


def simulate_image(engine: Engine, image: np.ndarray, gt: GroundTruth, settings: Settings,
                   classes: ClassTable, source: ProposalSource | None = None) -> ImageEffort:
    """Simulate the annotation of one image (see the module docstring).

    Parameters
    ----------
    engine : Engine
        Any engine (the protocol); its image is set here.
    image : numpy.ndarray
        ``H x W x 3`` uint8 RGB.
    gt : GroundTruth
        The image's objects (:func:`~napari_samlabel.annotate.effort.dataset.
        load_ground_truth`).
    settings : Settings
        Prompt kind, click cap, targets, policy.
    classes : ClassTable
        The dataset's classes (every object's class must be in it).
    source : ProposalSource, optional
        Proposals to decide on before clicking.

    Raises
    ------
    SimulationError
        When the engine fails on this image.
    """
    if tuple(image.shape[:2]) != gt.shape:
        raise SimulationError(f"{gt.image_id}: the image is {image.shape[0]}x{image.shape[1]}"
                              f" but its ground truth {gt.shape[0]}x{gt.shape[1]}")
    annotator = _Annotator(engine, image, gt, classes, settings)
    done = annotator.decide(source) if source is not None else set()
    for obj in gt.objects:
        if obj.object_id not in done:
            annotator.result.objects.append(annotator.click_object(obj))
    annotator.result.objects.sort(key=lambda o: o.object_id)
    return annotator.result

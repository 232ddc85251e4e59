"""Proposals in the annotator: find candidates, show them, accept, reject or refine (Qt-free).

The napari plugin's Proposals tab (:mod:`napari_samlabel._napari.proposals_panel`) is a view
over :class:`ProposalController`; everything it does is here, so it runs and is tested
headless.

- **Sources.** Any :class:`~napari_samlabel.engine.protocol.ProposalSource` (a learned
  prompter, a trained segmenter) proposes with :meth:`ProposalController.propose`. Concept
  prompts are one more source, :class:`~napari_samlabel.engine.concept_source.ConceptSource`,
  around the session's
  :class:`~napari_samlabel.engine.protocol.ConceptEngine` (SAM 3): :meth:`~ProposalController.
  find_all` takes a phrase or a class (its name as a phrase, :func:`class_phrase`),
  :meth:`~ProposalController.find_similar` an exemplar box (and optional negative boxes).
  A trained prompter or segmenter is opened from a path with
  :meth:`~ProposalController.load_source` (:mod:`~napari_samlabel.annotate.proposal_sources`)
  and remembered: :meth:`~ProposalController.propose_again` runs it on the next images.
- **Never blocking.** A search is one job of kind ``"propose"`` on the session's engine
  lane (after encoding and decoding, so it never overlaps them on the engine), with a
  progress callback. :meth:`~ProposalController.cancel` drops a waiting search at once and
  ends a running one at its next progress report (an engine whose ``find_all`` takes a
  ``progress`` keyword reports per step); its answer, if it still comes, is dropped.
- **Per image.** Each image keeps its own :class:`~napari_samlabel.core.candidates.
  CandidateSet` (the last few images' are kept in memory), so going back shows them again; a
  search still running when the annotator moves on fills its own image's list. The score
  threshold is one for all images and filters live.
- **Decisions follow the document.** Accepting a candidate adds it to the document as an
  ordinary object (one undo step, autosaved like any accept) with its score as the object's
  score, ``signals["candidate_score"]`` and ``attributes["source"]`` (curation and the
  project file keep them); accept-all adds every visible candidate in one step. Undo takes
  the objects out and the candidates back into the list; redo accepts them again.
  Refining a candidate makes it the current object (its mask shown, its prompts kept, its
  low-resolution logits the ``mask_input`` of the next decode), so ± points and scribbles
  refine it and the ordinary accept takes it in with its source.
- Candidates that repeat an accepted object (IoU >= :data:`DUPLICATE_IOU`) are left out of
  a new search's list.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.core.candidates import Candidate, CandidateSet, Decision
from napari_samlabel.core.current import CurrentObject
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box, Prompt
from napari_samlabel.engine.concept_source import ConceptSource, class_of_phrase, class_phrase
from napari_samlabel.engine.protocol import ConceptEngine, ProposalSource

if TYPE_CHECKING:
    from napari_samlabel.annotate.session import AnnotationSession

#: Threshold shown at start.
DEFAULT_THRESHOLD = 0.5
#: A new candidate overlapping an accepted object this much is left out as a repeat.
DUPLICATE_IOU = 0.7
#: Candidate lists kept in memory (the open image's and the last ones visited).
KEEP_IMAGES = 16


class ProposalCancelled(Exception):
    """Raised by the progress callback of a cancelled search, to stop it."""

@dataclass
class ImageProposals:
    """One image's candidates, and the objects the accepted ones became."""

    candidates: CandidateSet
    #: candidate index -> (object id, created) of the object it became
    objects: dict[int, tuple[int, float]] = field(default_factory=dict)
    #: objects present when a candidate was taken for refinement (to find its accept)
    before_refine: frozenset[tuple[int, float]] = frozenset()
    model_id: str | None = None
    source: str = ""


@dataclass
class _Search:
    """One search: cancelled flag, for the callback of its job."""

    name: str
    cancelled: bool = False


@dataclass(frozen=True)
class _Found:
    index: int
    image_id: str
    candidates: list[Candidate]
    seconds: float
    model_id: str | None
    shape: tuple[int, int]


@dataclass(frozen=True)
class _Failed:
    error: BaseException | None  # None: cancelled


class ProposalEvents(SignalGroup):
    """What the controller tells its views (on the thread that drives the session)."""

    running = Signal(bool)            # a search was queued (True) or has ended (False)
    changed = Signal()                # the open image's candidates or decisions changed
    selection_changed = Signal(int)   # the highlighted candidate (-1: none)
    message = Signal(str)             # results, refusals and errors, for the user


def _key(obj: AnnotatedObject) -> tuple[int, float]:
    return obj.object_id, obj.created


class ProposalController:
    """The candidate lists of a session's images, and what the annotator does with them.

    Parameters
    ----------
    session : AnnotationSession
        Searches run on its engine lane; accepted candidates go into its open document.
    """

    def __init__(self, session: AnnotationSession) -> None:
        self.session = session
        self.events = ProposalEvents()
        self._images: OrderedDict[str, ImageProposals] = OrderedDict()
        self._threshold = DEFAULT_THRESHOLD
        self.selected: int | None = None
        self.running = False
        self._search: _Search | None = None
        #: The trained source loaded with :meth:`load_source` (re-run by :meth:`propose_again`).
        self.source: ProposalSource | None = None
        self.source_path: str | None = None
        ev = session.events
        ev.image_changed.connect(self._on_image_changed)
        ev.objects_changed.connect(self._sync)
        ev.current_changed.connect(self._sync)

    # -- the open image's list ---------------------------------------------------------------
    def _record(self, image_id: str) -> ImageProposals:
        rec = self._images.get(image_id)
        if rec is None:
            cands = CandidateSet(threshold=self._threshold)
            rec = self._images[image_id] = ImageProposals(cands)
            cands.events.changed.connect(lambda: self._relay(rec))
            cands.events.decided.connect(lambda *_: self._relay(rec))
            while len(self._images) > KEEP_IMAGES:
                self._images.popitem(last=False)
        self._images.move_to_end(image_id)
        return rec

    def _open_record(self) -> ImageProposals | None:
        s = self.session
        return None if s.doc is None else self._record(s.image_id())

    def _relay(self, rec: ImageProposals) -> None:
        if rec is self._open_record():
            self.events.changed.emit()

    @property
    def candidates(self) -> CandidateSet:
        """The open image's candidates (empty while no image is open)."""
        rec = self._open_record()
        return CandidateSet(threshold=self._threshold) if rec is None else rec.candidates

    def candidates_of(self, image_id: str) -> CandidateSet | None:
        """The candidates kept for image ``image_id``, if any."""
        rec = self._images.get(image_id)
        return None if rec is None else rec.candidates

    @property
    def threshold(self) -> float:
        """Score below which candidates are hidden (all images)."""
        return self._threshold

    def set_threshold(self, value: float) -> None:
        """Move the score threshold; the list filters at once."""
        self._threshold = float(np.clip(float(value), 0.0, 1.0))
        rec = self._open_record()
        if rec is not None:
            rec.candidates.threshold = self._threshold
        self._keep_selection()

    def visible(self) -> list[int]:
        """Indices of the candidates shown (pending and at or above the threshold)."""
        return self.candidates.visible()

    def select(self, index: int | None) -> None:
        """Highlight candidate ``index`` (None: none)."""
        if index is not None and not 0 <= index < len(self.candidates):
            raise IndexError(f"no candidate {index} (there are {len(self.candidates)})")
        if index != self.selected:
            self.selected = index
            self.events.selection_changed.emit(-1 if index is None else index)

    def select_next(self, step: int = 1) -> int | None:
        """Highlight the next (or previous, ``step=-1``) visible candidate."""
        shown = self.visible()
        if not shown:
            self.select(None)
            return None
        if self.selected in shown:
            pos = (shown.index(self.selected) + step) % len(shown)
        else:
            pos = 0 if step > 0 else len(shown) - 1
        self.select(shown[pos])
        return self.selected

    def _keep_selection(self) -> None:
        """After a change: keep the highlight on a visible candidate (the next one)."""
        shown = self.visible()
        if self.selected in shown or not shown:
            if not shown:
                self.select(None)
            return
        later = [i for i in shown if self.selected is not None and i > self.selected]
        self.select(later[0] if later else shown[0])

    # -- searching ---------------------------------------------------------------------------
    def find_all(self, text: str | None = None, class_id: int | None = None,
                 progress: ProgressCallback = no_progress) -> bool:
        """Find every instance of a phrase, or of a class (default: the selected class).

        ``text`` wins; without it the class's phrase (:func:`class_phrase`) is the prompt. A
        typed phrase that names a class proposes that class. Returns True when the search
        was queued (the candidates arrive with :attr:`ProposalEvents.changed`).
        """
        s = self.session
        text = (text or "").strip() or None
        if class_id is None:
            class_id = class_of_phrase(s.classes, text) if text else s.current_class
        if text is None:
            if not class_id:
                self.events.message.emit("pick a class (or type a phrase) to find")
                return False
            text = class_phrase(s.classes, class_id)
        if not self._concepts_ok():
            return False
        return self.propose(ConceptSource(text, class_id=class_id), progress)

    def find_similar(self, exemplars: Box | Sequence[Box], negatives: Sequence[Box] = (),
                     class_id: int | None = None, text: str | None = None,
                     progress: ProgressCallback = no_progress) -> bool:
        """Find the instances like the exemplar box(es) (negatives: boxes of what is not).

        The candidates propose ``class_id`` (default: the selected class).
        """
        boxes = (exemplars,) if isinstance(exemplars, Box) else tuple(exemplars)
        if not boxes:
            self.events.message.emit("draw a box on one instance first (r: box mode)")
            return False
        if not self._concepts_ok():
            return False
        cid = self.session.current_class if class_id is None else class_id
        return self.propose(ConceptSource(text, boxes, negatives, class_id=cid or None),
                            progress)

    def find_similar_to_current(self, progress: ProgressCallback = no_progress) -> bool:
        """Find similar with the current object's boxes (positive: exemplars, negative: not).

        The object drawn with them is discarded (undoable): its instance is among the
        candidates. False, with a message, when the current object has no positive box.
        """
        doc = self.session.doc
        prompts: tuple[Prompt, ...] = () if doc is None else doc.current.prompts
        boxes = [p for p in prompts if isinstance(p, Box)]
        exemplars = [b for b in boxes if b.positive]
        if not exemplars:
            self.events.message.emit("draw a box on one instance first (r: box mode), then "
                                     "Find similar")
            return False
        queued = self.find_similar(exemplars, [b for b in boxes if not b.positive],
                                   progress=progress)
        if queued and doc is not None and doc.current.original is None:
            self.session.discard()
        return queued

    def _concepts_ok(self) -> bool:
        engine = self.session.engine
        if engine is None:
            self.events.message.emit("the model is still loading; find again once it is ready")
            return False
        if not isinstance(engine, ConceptEngine):
            self.events.message.emit(
                f"Find all needs a concept model (SAM 3); {engine.model_id} only takes points, "
                "boxes and scribbles. Pick a sam3 model in the Model tab.")
            return False
        return True

    def load_source(self, path: str | os.PathLike[str]) -> ProposalSource | None:
        """Open a trained prompter or segmenter and remember it (None, with a message: refused).

        See :func:`~napari_samlabel.annotate.proposal_sources.open_source`.
        """
        from napari_samlabel.annotate.proposal_sources import SourceError, open_source

        if self.session.engine is None:
            self.events.message.emit("the model is still loading; propose once it is ready")
            return None
        try:
            source = open_source(path, self.session.engine)
        except SourceError as exc:
            self.events.message.emit(str(exc))
            return None
        self.source, self.source_path = source, str(path)
        return source

    def propose_with(self, path: str | os.PathLike[str] | None = None,
                     progress: ProgressCallback = no_progress) -> bool:
        """Propose with the source at ``path``, (re)loaded first (None: the one loaded)."""
        if path is not None and str(path).strip():
            if self.running:
                self.events.message.emit("a search is running: wait for it or cancel it")
                return False
            if self.load_source(path) is None:
                return False
        return self.propose_again(progress)

    def propose_again(self, progress: ProgressCallback = no_progress) -> bool:
        """Propose on the open image with the source loaded last (:meth:`load_source`)."""
        if self.source is None:
            self.events.message.emit("no trained source loaded: Proposals tab → Propose "
                                     "with… a prompter or segmenter folder")
            return False
        return self.propose(self.source, progress)

    def propose(self, source: ProposalSource, progress: ProgressCallback = no_progress) -> bool:
        """Queue ``source``'s proposals for the open image; False when one runs already.

        ``progress`` is called from the worker thread (the view marshals it); the search
        stops at the next report after :meth:`cancel`.
        """
        s = self.session
        if self.running:
            self.events.message.emit("a search is running: wait for it or cancel it")
            return False
        if s.doc is None:
            self.events.message.emit("no image is open")
            return False
        index, image_id = s.index, s.image_id()
        search = _Search(source.name)
        self._search, self.running = search, True
        self.events.running.emit(True)
        self.events.message.emit(f"finding {source.name} …")

        def report(done: int, total: int | None, message: str = "") -> None:
            if search.cancelled:
                raise ProposalCancelled
            progress(done, total, message)

        def factory() -> Callable[[], _Found | _Failed] | None:
            if search.cancelled:
                return None
            if s.index != index or s.image is None:
                self._end(search, "the image changed before the search started; find again")
                return None
            if s.engine is not None and not s.engine_ready:
                self._end(search, "the image is not encoded (see the status line); "
                                  "find again")
                return None
            engine, image, classes = s.engine, s.image, s.classes
            model_id = None if engine is None else engine.model_id

            def job() -> _Found | _Failed:
                t0 = time.perf_counter()
                try:
                    found = list(source.propose(engine, image, classes, report))
                except ProposalCancelled:
                    return _Failed(None)
                except Exception as exc:  # handed to the GUI thread as a result
                    return _Failed(exc)
                return _Found(index, image_id, found, time.perf_counter() - t0, model_id,
                              (int(image.shape[0]), int(image.shape[1])))
            return job

        s.lane.submit("propose", factory, lambda result: self._done(search, result),
                      label=f"Finding {source.name}")
        return True

    def cancel(self) -> bool:
        """Cancel the search: a waiting one at once, a running one at its next report."""
        search = self._search
        if search is None or not self.running:
            return False
        search.cancelled = True
        self.session.lane.cancel("propose")
        self._end(search, "search cancelled")
        return True

    def _end(self, search: _Search, message: str) -> None:
        if self._search is not search:
            return
        self._search, self.running = None, False
        self.events.running.emit(False)
        if message:
            self.events.message.emit(message)

    def _done(self, search: _Search, result: _Found | _Failed) -> None:
        if search.cancelled or self._search is not search:
            return  # cancelled: the answer (if any) is dropped
        if isinstance(result, _Failed):
            exc = result.error
            self._end(search, "search cancelled" if exc is None else
                      f"{search.name} failed: {exc}" if isinstance(exc, (ValueError,
                                                                         RuntimeError))
                      else f"{search.name} failed ({type(exc).__name__}): {exc}")
            return
        rec = self._record(result.image_id)
        s = self.session
        shape = result.shape
        found = [c for c in result.candidates if c.mask.shape == shape]
        wrong = len(result.candidates) - len(found)
        repeats = 0
        if s.doc is not None and s.image_id() == result.image_id:
            kept = [c for c in found if not _repeats(c, s.doc.objects)]
            repeats, found = len(found) - len(kept), kept
        rec.objects.clear()
        rec.before_refine = frozenset()
        rec.model_id, rec.source = result.model_id, search.name
        rec.candidates.threshold = self._threshold
        rec.candidates.replace(found)
        shown = len(rec.candidates.visible())
        text = (f"{search.name}: {len(found)} found, {shown} at or above "
                f"{self._threshold:.2f} ({result.seconds:.1f} s)")
        if repeats:
            text += f"; {repeats} already accepted left out"
        if wrong:
            text += f"; {wrong} of another size than the {shape[1]} x {shape[0]} image dropped"
        if s.doc is None or s.image_id() != result.image_id:
            text += f" — on {result.image_id}, shown when you go back to it"
        self._end(search, text)
        self.selected = None
        self._keep_selection()

    # -- decisions ---------------------------------------------------------------------------
    def _require(self, index: int) -> tuple[ImageProposals, Candidate]:
        rec = self._open_record()
        if rec is None:
            raise RuntimeError("no image is open; call open_image first")
        return rec, rec.candidates[index]

    def _class_of(self, cand: Candidate, class_id: int | None) -> int:
        if class_id is None:
            class_id = cand.class_id if cand.class_id is not None else \
                self.session.current_class
        self.session.classes.index(int(class_id))  # a clear error for an unknown class
        if not class_id:
            raise ValueError("pick a class for the candidate (background cannot be accepted)")
        return int(class_id)

    def _logits(self, cand: Candidate) -> np.ndarray | None:
        """The candidate's logits if the session's engine can take them as ``mask_input``."""
        engine = self.session.engine
        if cand.low_res_logits is None or engine is None or \
                cand.logits_frame != engine.logits_frame:
            return None
        lg = np.asarray(cand.low_res_logits, dtype=np.float32)
        return lg.reshape(1, *lg.shape[-2:]) if lg.size == 256 * 256 else None

    def _object(self, rec: ImageProposals, cand: Candidate, class_id: int) -> AnnotatedObject:
        from napari_samlabel.engine.quality import logits_to_image, stability_score

        logits = self._logits(cand)
        signals = {"candidate_score": float(cand.score)}
        engine = self.session.engine
        if logits is not None and engine is not None:
            image = logits_to_image(logits[0], cand.mask.shape, frame=engine.logits_frame)
            signals["stability"] = float(stability_score(image))
        return AnnotatedObject(1, class_id, cand.mask, _prompts_of(cand), float(cand.score),
                               rec.model_id, signals, logits,
                               attributes={"source": cand.source})

    def accept_candidate(self, index: int, class_id: int | None = None
                         ) -> AnnotatedObject | None:
        """Accept candidate ``index`` into the document (one undo step, saved at once).

        Its class is ``class_id``, else the candidate's own, else the selected class.
        Returns the object, or None when the candidate was decided already.
        """
        rec, cand = self._require(index)
        if rec.candidates.decision(index) != Decision.PENDING:
            return None
        doc = self.session._require_doc()
        (obj,) = doc.add_objects([self._object(rec, cand, self._class_of(cand, class_id))])
        rec.objects[index] = _key(obj)
        rec.candidates.decide(index, Decision.ACCEPTED)
        self._keep_selection()
        return obj

    def accept_all(self, class_id: int | None = None) -> tuple[AnnotatedObject, ...]:
        """Accept every visible candidate, as one undo step (saved at once)."""
        rec = self._open_record()
        if rec is None:
            return ()
        shown = rec.candidates.visible()
        if not shown:
            self.events.message.emit("no candidate to accept")
            return ()
        objs = [self._object(rec, rec.candidates[i], self._class_of(rec.candidates[i],
                                                                    class_id)) for i in shown]
        added = self.session._require_doc().add_objects(objs)
        for i, obj in zip(shown, added, strict=True):
            rec.objects[i] = _key(obj)
            rec.candidates.decide(i, Decision.ACCEPTED)
        self.events.message.emit(f"accepted {len(added)} candidates (Ctrl+Z takes them out)")
        self._keep_selection()
        return added

    def reject(self, index: int) -> None:
        """Hide candidate ``index`` for good (the list moves on to the next)."""
        rec, _ = self._require(index)
        rec.candidates.decide(index, Decision.REJECTED)
        self._keep_selection()

    def reject_all(self) -> None:
        """Reject every visible candidate."""
        rec = self._open_record()
        if rec is not None:
            for i in rec.candidates.visible():
                rec.candidates.decide(i, Decision.REJECTED)
        self._keep_selection()

    def refine_candidate(self, index: int, class_id: int | None = None) -> None:
        """Make candidate ``index`` the current object, to refine with ± points and scribbles.

        Its mask is shown, its prompts (else its box) are kept, and its low-resolution
        logits are the ``mask_input`` of the next decode. Accepting it (the ordinary accept)
        keeps its source and score. One undo step.
        """
        rec, cand = self._require(index)
        s = self.session
        doc = s._require_doc()
        logits = self._logits(cand)
        engine = s.engine
        prompts = _prompts_of(cand)
        current = CurrentObject(self._class_of(cand, class_id), prompts, cand.mask,
                                float(cand.score), logits,
                                engine.model_id if logits is not None and engine else None,
                                mask_prompts=prompts, candidate=cand)
        s.select_object(None)
        rec.before_refine = frozenset(_key(o) for o in doc.objects)
        doc.set_current(current)

    # -- following the document ---------------------------------------------------------------
    def _sync(self, *_: Any) -> None:
        """Derive the decisions from the document (accept, undo, redo, discard)."""
        s = self.session
        rec = self._open_record()
        if rec is None or s.doc is None:
            return
        doc, cands = s.doc, rec.candidates
        present = {_key(o) for o in doc.objects}
        for i in range(len(cands)):
            cand, now = cands[i], cands.decision(i)
            if doc.current.candidate is cand:
                want = Decision.REFINING
            elif i in rec.objects and rec.objects[i] in present:
                want = Decision.ACCEPTED
            elif now == Decision.REFINING:
                taken = _accepted_from(cand, doc.objects, rec.before_refine)
                if taken is not None:
                    rec.objects[i] = taken
                    want = Decision.ACCEPTED
                else:
                    want = Decision.PENDING
            elif now == Decision.REJECTED:
                continue
            else:
                want = Decision.PENDING
            if want != now:
                cands.decide(i, want)
        self._keep_selection()

    def _on_image_changed(self, _index: int) -> None:
        rec = self._open_record()
        if rec is not None:
            rec.candidates.threshold = self._threshold
        self.selected = None
        self._sync()
        self.events.changed.emit()
        self._keep_selection()

    def close(self) -> None:
        """Cancel a search and stop listening to the session."""
        self.cancel()
        ev = self.session.events
        ev.image_changed.disconnect(self._on_image_changed)
        ev.objects_changed.disconnect(self._sync)
        ev.current_changed.disconnect(self._sync)


def _prompts_of(cand: Candidate) -> tuple[Prompt, ...]:
    """The candidate's prompts; else its box; else the box around its mask.

    Refinement needs a positive prompt besides the new ones (a negative click alone
    decodes nothing).
    """
    if cand.prompts:
        return tuple(cand.prompts)
    if cand.box is not None:
        return (cand.box,)
    rows, cols = np.nonzero(cand.mask)
    if not len(rows):
        return ()
    return (Box((float(rows.min()), float(cols.min())), (float(rows.max()),
                                                         float(cols.max()))),)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _repeats(cand: Candidate, objects: Sequence[AnnotatedObject]) -> bool:
    return any(_iou(cand.mask, o.mask) >= DUPLICATE_IOU for o in objects)


def _accepted_from(cand: Candidate, objects: Sequence[AnnotatedObject],
                   before: frozenset[tuple[int, float]]) -> tuple[int, float] | None:
    """The object accepted from a refined candidate: new since, with its source and score."""
    for o in objects:
        if _key(o) not in before and o.attributes.get("source") == cand.source and \
                o.signals.get("candidate_score") == float(cand.score):
            return _key(o)
    return None


__all__ = ["DEFAULT_THRESHOLD", "DUPLICATE_IOU", "ImageProposals", "ProposalCancelled",
           "ProposalController", "ProposalEvents"]

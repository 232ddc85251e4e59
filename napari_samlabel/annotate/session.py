"""The annotation session of one viewer: images, the open document, the engine, autosave.

Qt-free and napari-free, so the whole annotate-accept-save loop runs headless (scripts, the
kill test) and the GUI is a thin layer over it (:mod:`napari_samlabel._napari.bridge` turns
layer events into :meth:`AnnotationSession.set_prompts` and renders the session's events).

What the session does, and what it leaves to the layers below:

- the image list and the project folder are :mod:`napari_samlabel.io.project`'s; every accept,
  class change and status change is saved through it at once (atomic writes there);
- undo/redo, the current object and its logits are the
  :class:`~napari_samlabel.core.document.AnnotationDocument`'s;
- SAM inputs are built only by :func:`napari_samlabel.engine.policies.refine_object`;
- engine work runs on an :class:`~napari_samlabel.annotate.lane.EngineLane`: encoding the
  image, decoding the newest prompts (older waiting requests are dropped, stale answers are
  refused by ``set_prediction``), and prefetching the next image's embedding when idle (the
  prefetch also reads the next image and its saved annotation, so moving on is instant);
- with a ``loader`` runner, images and documents are read off the GUI thread too (the old
  image stays until the new one is read; a newer request wins);
- the annotator's choices that are not document state: the polarity of the next prompt,
  the selected accepted object (picking a class then re-classes it; it can be deleted), and
  which prompts are accepted at all (prompts outside the image are dropped with a notice).

One session per viewer; nothing here is global.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.annotate.lane import EngineLane, Runner, SyncRunner
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.current import CurrentObject
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.prompts import ObjectPrompts, Prompt, in_image

#: Statuses the navigator cycles through, in menu order.
STATUSES: tuple[ImageStatus, ...] = (ImageStatus.NEW, ImageStatus.IN_PROGRESS,
                                     ImageStatus.DONE, ImageStatus.FLAGGED)


class SessionEvents(SignalGroup):
    """What a session tells its views (emitted on the thread that drives the session)."""

    image_changed = Signal(int)      # index of the newly opened image
    current_changed = Signal()       # the current object (prompts, mask, class) changed
    objects_changed = Signal()       # accepted objects changed
    status_changed = Signal(int, str)  # image index, new status
    engine_changed = Signal()        # an engine was set
    encoded = Signal(int)            # the embedding of image ``index`` is ready
    prefetched = Signal(int)         # the embedding of image ``index`` was computed ahead
    timing = Signal(str)             # status-line text with the last encode/decode times
    busy = Signal(str)               # what the engine is doing ("" when idle)
    message = Signal(str)            # errors and notices for the user ("" clears them)
    saved = Signal(str)              # image id written to the project
    selection_changed = Signal(int)  # id of the selected accepted object, 0 for none
    polarity_changed = Signal(bool)  # polarity of the next prompt (True: positive)
    decoding = Signal(bool)          # a decode started (True) / its answer was shown (False)


def decode_object(engine: Any, prompts: ObjectPrompts, shape: tuple[int, int],
                  prev_logits: np.ndarray | None, policy: Any = None) -> Any:
    """Run one interactive decode through the engine's prompt policy.

    Returns
    -------
    ObjectResult
        Its ``mask`` (``H x W`` bool), ``score`` (predicted IoU), ``ious`` (of every
        candidate) and ``logits`` (``(1, 256, 256)``, for the next decode of this object).
    """
    from napari_samlabel.engine.policies import refine_object

    return refine_object(engine, prompts, shape, prev_logits, policy)


def accept_signals(current: CurrentObject, shape: tuple[int, int]) -> dict[str, float]:
    """Quality signals of the object about to be accepted (curation ranks objects by them).

    ``stability``: IoU of the mask thresholded at logit +1 and -1 (SAM's stability score,
    on the logits upsampled to the image); ``iou_spread``: highest minus lowest predicted
    IoU of SAM's candidate masks (a wide spread: the prompts were ambiguous). Signals
    describe a mask: a reopened object accepted with its mask unchanged keeps its signals,
    a new mask gets new ones.
    """
    from napari_samlabel.engine.quality import logits_to_image, stability_score

    if current.original is not None and current.mask is current.original.mask:
        return dict(current.original.signals)
    out: dict[str, float] = {}
    if current.logits is not None:
        out["stability"] = float(stability_score(logits_to_image(current.logits, shape)))
    if current.ious is not None and len(current.ious) > 1:
        out["iou_spread"] = float(np.max(current.ious) - np.min(current.ious))
    return out


class AnnotationSession:
    """Images, the open document, the engine and autosave of one viewer.

    Parameters
    ----------
    images : sequence of Path
        The images to annotate, in navigator order.
    project : object, optional
        A :class:`napari_samlabel.io.project.Project`; documents are loaded from and saved
        to it. Without one nothing is saved (a scratch session).
    engine : Engine, optional
        The mask engine; can be set later with :meth:`set_engine` (loading takes a while).
    classes : ClassTable, optional
        Class table (VOC by default).
    runner : Runner, optional
        Where engine jobs run (inline by default; the GUI passes a worker-thread runner).
    policy : object, optional
        Prompt policy handed to ``refine_object`` (its default when None).
    prefetch : bool
        Compute the next image's embedding while the annotator works.
    prefetch_runner : Runner, optional
        Where prefetch jobs run when the engine can encode without changing its current
        image (default: ``runner``).
    image_loader : callable, optional
        ``path -> RGB uint8 array`` (``napari_samlabel.io.images.load_image`` by default).
    loader : Runner, optional
        Where images and documents are read when an image is opened (default: at once, on
        the calling thread, so :meth:`open_image` returns the document).
    """

    def __init__(self, images: Sequence[Path], *, project: Any = None, engine: Any = None,
                 classes: ClassTable | None = None, runner: Runner | None = None,
                 policy: Any = None, prefetch: bool = True,
                 prefetch_runner: Runner | None = None,
                 image_loader: Callable[[Path], np.ndarray] | None = None,
                 loader: Runner | None = None) -> None:
        if not images:
            raise ValueError("no images to annotate")
        self.images = [Path(p) for p in images]
        self.project = project
        self.engine = engine
        self.classes = classes or ClassTable.voc()
        self.policy = policy
        self.prefetch_enabled = prefetch
        self.events = SessionEvents()
        self.lane = EngineLane(runner or SyncRunner(), self._job_failed)
        self.prefetch_lane = EngineLane(prefetch_runner or runner or SyncRunner(),
                                        self._prefetch_failed)
        self.load_lane = EngineLane(loader or SyncRunner(), self._load_failed, kinds=("load",))
        self._async_load = loader is not None
        self._opening: int | None = None        # image being read by the load lane
        self._preloaded: dict[int, tuple[np.ndarray, AnnotationDocument]] = {}
        # (doc, prompts, logits, engine) of the decode running; prompts of an anticipated
        # decode still waiting to start (see anticipate)
        self._decoding_for: tuple[Any, ...] | None = None
        self._anticipated: tuple[Prompt, ...] | None = None
        # statuses saved for images that were not open; applied to their documents on open,
        # since a preloaded or in-flight read may predate the save
        self._pending_status: dict[int, ImageStatus] = {}
        self._prefetching: int | None = None
        self._load = image_loader or _default_loader
        self.positive = True                    # polarity of the next prompt
        self.selected: int | None = None        # selected accepted object
        self._notice_shown = False
        self.index = -1
        self.image: np.ndarray | None = None
        self.doc: AnnotationDocument | None = None
        self.current_class = 1 if len(self.classes) > 1 else 0
        self._resume_at: int | None = None
        if project is not None:
            # Where the annotator stopped (samlabel-session.json): image and class.
            image_id, class_id = project.last_position()
            stems = [p.stem for p in self.images]
            if image_id in stems:
                self._resume_at = stems.index(image_id)
            if class_id is not None and 0 < class_id < len(self.classes):
                self.current_class = int(class_id)
        self._statuses: list[ImageStatus] = [self._stored_status(p) for p in self.images]
        self._engine_image: int | None = None   # index of the image the engine holds
        self._encoded: set[int] = set()         # images encoded (or prefetched) this session
        self.last_encode_ms: float | None = None
        self.last_decode_ms: float | None = None
        self.last_encode_cached = False
        self.decode_count = 0

    # -- images ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int | None = None) -> str:
        """Id (file stem) of image ``index`` (the open one by default)."""
        return self.images[self.index if index is None else index].stem

    def status_of(self, index: int) -> ImageStatus:
        """Status of image ``index``."""
        return self._statuses[index]

    def open_image(self, index: int) -> AnnotationDocument | None:
        """Open image ``index``: read it and its saved annotation, start encoding it.

        The unaccepted current object of the image being left is dropped (accepted objects
        are already saved). Returns the new document, or None while it is being read by an
        asynchronous ``loader`` (``image_changed`` tells when it is open).
        """
        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} is outside 0..{len(self.images) - 1}")
        pre = self._preloaded.pop(index, None)
        if pre is not None:
            return self._show(index, *pre)
        if not self._async_load:
            return self._show(index, *self._read(index))
        self._opening = index

        def factory() -> Callable[[], Any] | None:
            if self._opening != index:
                return None
            return lambda: (index, *self._read(index))

        self.load_lane.submit("load", factory, self._loaded,
                              label=f"Loading {self.image_id(index)}")
        return self.doc if self.index == index and self._opening is None else None

    def _read(self, index: int) -> tuple[np.ndarray, AnnotationDocument]:
        path = self.images[index]
        image = self._load(path)
        return image, self._load_document(path, image.shape[:2])

    def _loaded(self, result: tuple[int, np.ndarray, AnnotationDocument]) -> None:
        index, image, doc = result
        if index == self._opening:
            self._show(index, image, doc)

    def _load_failed(self, kind: str, exc: BaseException) -> None:
        self._opening = None
        self.notify(f"cannot open the image: {exc}")

    def _show(self, index: int, image: np.ndarray, doc: AnnotationDocument
              ) -> AnnotationDocument:
        self._opening = None
        if self.doc is not None:
            self._disconnect(self.doc)
        self.index, self.image, self.doc = index, image, doc
        self.selected = None
        self._statuses[index] = doc.status
        doc.events.current_changed.connect(self._on_current_changed)
        doc.events.objects_changed.connect(self._on_objects_changed)
        doc.events.status_changed.connect(self._on_status_changed)
        if doc.current.class_id != self.current_class:
            doc.set_current_class(self.current_class)
        pending = self._pending_status.pop(index, None)
        if pending is not None and doc.status != pending:
            doc.set_status(pending)
        self.lane.cancel("decode")
        self._remember_position()
        self.events.image_changed.emit(index)
        self.events.selection_changed.emit(0)
        self._request_encode()
        return doc

    def _remember_position(self) -> None:
        """Save the open image and the picked class, so reopening resumes exactly here."""
        if self.project is None or self.index < 0:
            return
        try:
            self.project.set_last_position(self.image_id(), self.current_class or None)
        except (OSError, KeyError, ValueError) as exc:  # a convenience: never stop work
            self.notify(f"could not remember the position: {exc}")

    @property
    def target_index(self) -> int:
        """The image being opened, else the open one (navigation counts from it)."""
        return self.index if self._opening is None else self._opening

    @property
    def idle(self) -> bool:
        """True when no engine or loading job runs or waits."""
        return self.lane.idle and self.prefetch_lane.idle and self.load_lane.idle

    def resume_index(self) -> int:
        """Index of the image to open first.

        The image that was open when the project was last left, else the first image in
        progress, else the first new one, else 0.
        """
        if self._resume_at is not None:
            return self._resume_at
        for wanted in (ImageStatus.IN_PROGRESS, ImageStatus.NEW):
            for i, status in enumerate(self._statuses):
                if status == wanted:
                    return i
        return 0

    def next_image(self) -> bool:
        """Open the next image; False at the end."""
        nxt = self.target_index + 1
        if nxt >= len(self.images):
            return False
        self.open_image(nxt)
        return True

    def previous_image(self) -> bool:
        """Open the previous image; False at the start."""
        prev = self.target_index - 1
        if prev < 0:
            return False
        self.open_image(prev)
        return True

    def next_unfinished(self) -> bool:
        """Open the next image (wrapping around) that is neither done nor flagged."""
        n = len(self.images)
        here = self.target_index
        for step in range(1, n + 1):
            i = (here + step) % n
            if self._statuses[i] in (ImageStatus.NEW, ImageStatus.IN_PROGRESS) and i != here:
                self.open_image(i)
                return True
        return False

    def set_status(self, status: ImageStatus | str) -> None:
        """Set the open image's status (saved at once)."""
        self._require_doc().set_status(status)

    def set_status_of(self, index: int, status: ImageStatus | str) -> None:
        """Set the status of image ``index`` (saved at once), open or not.

        The open image's goes through its document (one undo step); any other's is written
        to the project and taken over by its document when it opens.

        Raises
        ------
        ValueError
            For an image that is not open when there is no project to save it to.
        """
        status = ImageStatus(status)
        doc = self.doc
        if doc is not None and index == self.index and self._opening != index:
            doc.set_status(status)
            return
        if self.project is None:
            raise ValueError(f"image {self.image_id(index)} is not open and there is no "
                             "project to save its status to")
        self.project.set_status(self.image_id(index), status)
        self._pending_status[index] = status
        if self._statuses[index] != status:
            self._statuses[index] = status
            self.events.status_changed.emit(index, status.value)

    # -- the engine ----------------------------------------------------------------------------
    def set_engine(self, engine: Any) -> None:
        """Use ``engine`` from now on and encode the open image with it.

        Accepted objects stay as they are (their masks, and the model that made each, are
        saved with them). The object being prompted is decoded again by the new model,
        without the old model's logits.
        """
        self.engine = engine
        self._engine_image = None
        self._encoded.clear()
        self.events.engine_changed.emit()
        if self.doc is not None:
            self.doc.invalidate_prediction()  # the new model answers the current prompts
            self._request_encode()
            self._request_decode()

    def _request_encode(self) -> None:
        if self.engine is None or self.image is None:
            return
        index, image, engine = self.index, self.image, self.engine

        def factory() -> Callable[[], Any] | None:
            if index != self.index or engine is not self.engine:
                return None
            if self._engine_image == index:
                return None
            if self._prefetching == index:
                return None  # being prefetched: _prefetch_done encodes (from the cache)
            self.events.busy.emit(f"encoding {self.image_id(index)}")

            def run() -> tuple[int, float]:
                t0 = time.perf_counter()
                engine.set_image(image)
                return index, (time.perf_counter() - t0) * 1000.0
            return run

        self.lane.submit("encode", factory, self._encode_done,
                         label=f"Encoding {self.image_id(index)}")

    def _encode_done(self, result: tuple[int, float]) -> None:
        index, ms = result
        self._engine_image = index
        self.last_encode_cached = index in self._encoded
        self._encoded.add(index)
        self.last_encode_ms = ms
        self._clear_notice()
        self.events.busy.emit("")
        self._emit_timing()
        self.events.encoded.emit(index)
        if index == self.index:
            self._request_decode()  # prompts drawn while the image was encoding
        self._request_prefetch()

    def _request_prefetch(self) -> None:
        nxt = self.index + 1
        if (not self.prefetch_enabled or self.engine is None or nxt >= len(self.images)
                or nxt in self._encoded or self._prefetching is not None):
            return
        engine, current, current_index = self.engine, self.image, self.index
        path = self.images[nxt]
        encode = getattr(engine, "encode", None)
        # An engine that can encode without changing its current image (SamEngine.encode)
        # prefetches on a lane of its own, so decodes are not held up by it; otherwise the
        # prefetch takes the engine lane: encode the next image, then set the open one back
        # (a cache hit).
        lane = self.prefetch_lane if callable(encode) else self.lane

        def factory() -> Callable[[], Any] | None:
            if engine is not self.engine or nxt in self._encoded or self.index != current_index:
                return None
            self._prefetching = nxt
            self.events.busy.emit(f"prefetching {self.image_id(nxt)}")

            def run() -> tuple[int, np.ndarray, AnnotationDocument]:
                image = self._load(path)
                doc = self._load_document(path, image.shape[:2])
                if callable(encode):
                    encode(image)
                else:
                    engine.set_image(image)
                    engine.set_image(current)
                return nxt, image, doc
            return run

        lane.submit("prefetch", factory, self._prefetch_done,
                    label=f"Prefetching {self.image_id(nxt)}")

    def _prefetch_done(self, result: tuple[int, np.ndarray, AnnotationDocument]) -> None:
        index, image, doc = result
        self._prefetching = None
        self._encoded.add(index)
        if index != self.index and index != self._opening:
            # Only the open image's document changes, so this one stays valid until opened.
            self._preloaded = {index: (image, doc)}
        self.events.busy.emit("")
        self.events.prefetched.emit(index)
        if index == self.index and self._engine_image != index:
            self._request_encode()  # the annotator got there first: encode is a cache hit now

    def is_encoded(self, index: int) -> bool:
        """True when image ``index`` was encoded or prefetched in this session."""
        return index in self._encoded

    # -- prompting ---------------------------------------------------------------------------
    def set_prompts(self, prompts: Sequence[Prompt]) -> tuple[Prompt, ...]:
        """Replace the current object's prompts and decode them (off the GUI thread).

        Prompts outside the image (a click past its edge) are dropped with a notice, so they
        never reach the decoder. Returns the prompts kept.
        """
        doc = self._require_doc()
        kept = tuple(p for p in prompts if in_image(p, doc.shape))
        if len(kept) < len(prompts):
            n = len(prompts) - len(kept)
            self.notify(f"ignored {n} prompt{'s' * (n > 1)} outside the "
                        f"{doc.shape[1]} x {doc.shape[0]} image")
        if kept and kept != doc.current.prompts:
            self.select_object(None)  # prompting again: class keys are for this object
        doc.set_prompts(kept)
        if not self._decode_answers(kept):
            self._request_decode()
        return kept

    def anticipate(self, prompts: Sequence[Prompt]) -> bool:
        """Start decoding ``prompts`` before they are set: a click the layer is still adding.

        napari's Points layer takes ~15 ms to add a point before it reports it; the bridge
        calls this at the button's release, so the decoder starts that much earlier. When
        :meth:`set_prompts` then sets exactly these prompts, this decode answers them and
        no other starts; otherwise its answer is stale and dropped (as any). Returns True
        if a decode was started.
        """
        doc = self.doc
        prompts = tuple(prompts)
        if doc is None or self.engine is None or not prompts or \
                prompts == doc.current.prompts or \
                not all(in_image(p, doc.shape) for p in prompts):
            return False
        self._request_decode(prompts)
        return True

    def _decode_answers(self, prompts: tuple[Prompt, ...]) -> bool:
        """True when a decode already waiting or running will answer exactly ``prompts``.

        A waiting one: the anticipated decode of these prompts (it reads the logits when it
        starts, as a new request would). A running one: started for these prompts from
        the logits the current object holds now.
        """
        if self.lane.waiting("decode"):
            return self._anticipated == prompts
        run = self._decoding_for
        doc = self.doc
        # identity for the arrays and objects: == on logits would compare elementwise
        return (run is not None and doc is not None and self.lane._running == "decode"
                and run[0] is doc and run[1] == prompts and run[2] is doc.current.logits
                and run[3] is self.engine)

    def set_polarity(self, positive: bool) -> None:
        """Set the polarity of the next prompts."""
        if bool(positive) != self.positive:
            self.positive = bool(positive)
            self.events.polarity_changed.emit(self.positive)

    def toggle_polarity(self) -> bool:
        """Switch the polarity of the next prompts; returns the new polarity."""
        self.set_polarity(not self.positive)
        return self.positive

    def _request_decode(self, prompts: tuple[Prompt, ...] | None = None) -> None:
        """Decode the current object's prompts (or ``prompts``, anticipated) when the lane can.

        The newest request replaces a waiting one; what it decodes and from which logits
        is read when it starts.
        """
        doc = self.doc
        if doc is None or self.engine is None:
            return
        self._anticipated = prompts

        def factory() -> Callable[[], Any] | None:
            if self._anticipated is prompts:
                self._anticipated = None  # started: no longer waiting
            if doc is not self.doc or self._engine_image != self.index:
                return None
            cur = doc.current
            engine, policy, shape = self.engine, self.policy, doc.shape
            target = cur.prompts if prompts is None else prompts
            if not target or (prompts is None and cur.prediction_is_current):
                return None  # e.g. undo back to a state whose mask answers its prompts
            # Logits of another model (the model was switched, or an object made with it
            # was reopened) mean nothing to this one.
            other_model = cur.model_id is not None and cur.model_id != getattr(
                engine, "model_id", None)
            obj = ObjectPrompts(cur.object_id or 0, cur.class_id, target)
            # A writable copy: torch warns on (and must not write into) the document's
            # read-only array.
            logits = None if cur.logits is None or other_model else np.array(cur.logits)
            self._decoding_for = (doc, target, cur.logits, engine)

            def run() -> tuple[Any, ...]:
                t0 = time.perf_counter()
                result = decode_object(engine, obj, shape, logits, policy)
                return doc, target, result, (time.perf_counter() - t0) * 1e3
            self.events.decoding.emit(True)
            return run

        self.lane.submit("decode", factory, self._decode_done, label="Decoding")

    def _decode_done(self, result: tuple[Any, ...]) -> None:
        self._decoding_for = None
        doc, prompts, res, ms = result
        self.last_decode_ms = ms
        self.decode_count += 1
        try:
            self._clear_notice()
            self._emit_timing()
            if doc is self.doc:
                model_id = getattr(self.engine, "model_id", None)
                doc.set_prediction(prompts, res.mask, res.score, res.logits, model_id,
                                   ious=res.ious)
        finally:
            self.events.decoding.emit(False)

    @property
    def decoding(self) -> bool:
        """True while a decode runs or waits."""
        return self.lane._running == "decode" or self.lane.waiting("decode")

    # -- object actions --------------------------------------------------------------------
    def select_class(self, class_id: int) -> None:
        """Pick the class of the current object (and of the objects that follow)."""
        self.classes.index(int(class_id))
        self.current_class = int(class_id)
        if self.doc is not None:
            self.doc.set_current_class(class_id)
        self._remember_position()

    def pick_class(self, class_id: int) -> None:
        """A class key or click: re-class the selected accepted object, else the current one."""
        if self.selected is not None:
            self.set_object_class(self.selected, class_id)
        else:
            self.select_class(class_id)

    def set_object_class(self, object_id: int, class_id: int) -> None:
        """Change the class of an accepted object (saved at once)."""
        self.classes.index(int(class_id))
        self._require_doc().set_object_class(object_id, class_id)

    def accept(self) -> Any:
        """Accept the current object (saved at once); returns it, or None without a mask.

        Its ``signals`` get the stability and candidate-IoU spread (:func:`accept_signals`).
        """
        doc = self._require_doc()
        if not doc.current.has_mask:
            return None
        return doc.accept(accept_signals(doc.current, doc.shape))

    def discard(self) -> None:
        """Drop the current object (a reopened object goes back unchanged); deselect."""
        self.select_object(None)
        self._require_doc().discard()

    def reopen(self, object_id: int) -> None:
        """Take accepted object ``object_id`` back into prompting, with its prompts."""
        doc = self._require_doc()
        self.select_object(None)
        doc.reopen(object_id)
        self.current_class = doc.current.class_id

    def select_object(self, object_id: int | None) -> None:
        """Select accepted object ``object_id`` (None: deselect); class keys then re-class it."""
        if object_id is not None:
            self._require_doc().get(object_id)   # KeyError for an id not on this image
        if object_id != self.selected:
            self.selected = object_id
            self.events.selection_changed.emit(object_id or 0)

    def delete_selected(self) -> bool:
        """Delete the selected accepted object (undoable, saved at once); False if none."""
        if self.selected is None:
            return False
        self.remove_object(self.selected)
        return True

    def object_at(self, row: float, col: float) -> int | None:
        """Accepted object visible at ``(row, col)`` of the open image (a part first).

        Parts are drawn over their wholes, so a click on a dog's head finds the head.
        """
        doc = self._require_doc()
        return doc.part_at(int(row), int(col)) or doc.object_at(int(row), int(col))

    def remove_object(self, object_id: int) -> None:
        """Delete accepted object ``object_id`` (saved at once)."""
        self._require_doc().remove_object(object_id)

    def undo(self) -> bool:
        """Undo one step (prompt edit, accept, class or status change)."""
        done = self._require_doc().undo()
        self._request_decode()
        return done

    def redo(self) -> bool:
        """Redo one undone step."""
        done = self._require_doc().redo()
        self._request_decode()
        return done

    # -- persistence ---------------------------------------------------------------------------
    def _stored_status(self, path: Path) -> ImageStatus:
        if self.project is None:
            return ImageStatus.NEW
        return ImageStatus(self.project.status(path.stem))

    def _load_document(self, path: Path, shape: tuple[int, int]) -> AnnotationDocument:
        if self.project is None:
            return AnnotationDocument(path.stem, shape, class_id=self.current_class,
                                      classes=self.classes)
        return self.project.load_document(path.stem, class_id=self.current_class)

    def save(self) -> None:
        """Write the open document to the project (atomic; autosave calls this).

        A reopened object counts as accepted until it is accepted again or discarded, so a
        crash while refining it never loses it.
        """
        doc = self.doc
        if doc is None or self.project is None:
            return
        self._preloaded.pop(self.index, None)
        original = doc.current.original
        if original is not None:
            snapshot = AnnotationDocument(doc.image_id, doc.shape, doc.objects + (original,),
                                          doc.status, classes=doc.classes)
            self.project.save_document(snapshot)
        else:
            self.project.save_document(doc)
        self.events.saved.emit(doc.image_id)

    # -- event plumbing ---------------------------------------------------------------------------
    def _on_current_changed(self) -> None:
        doc = self.doc
        if doc is not None:
            self.current_class = doc.current.class_id
        self.events.current_changed.emit()

    def _on_objects_changed(self) -> None:
        doc = self.doc
        if self.selected is not None and doc is not None and \
                all(o.object_id != self.selected for o in doc.objects):
            self.select_object(None)   # deleted, reopened or undone away
        self.save()
        self.events.objects_changed.emit()

    def _on_status_changed(self, status: str) -> None:
        self._statuses[self.index] = ImageStatus(status)
        self.save()
        self.events.status_changed.emit(self.index, status)

    def _disconnect(self, doc: AnnotationDocument) -> None:
        doc.events.current_changed.disconnect(self._on_current_changed)
        doc.events.objects_changed.disconnect(self._on_objects_changed)
        doc.events.status_changed.disconnect(self._on_status_changed)

    def _prefetch_failed(self, kind: str, exc: BaseException) -> None:
        self._prefetching = None
        self._job_failed(kind, exc)

    def _job_failed(self, kind: str, exc: BaseException) -> None:
        self.events.busy.emit("")
        self.notify(f"{kind} failed: {exc}")
        if kind == "decode":
            self._decoding_for = None
            self.events.decoding.emit(False)

    def notify(self, text: str) -> None:
        """Tell the user something; cleared by the next successful encode or decode."""
        self._notice_shown = True
        self.events.message.emit(text)

    def _clear_notice(self) -> None:
        if self._notice_shown:
            self._notice_shown = False
            self.events.message.emit("")

    def _emit_timing(self) -> None:
        parts = []
        if self.last_encode_ms is not None:
            parts.append(f"encode {self.last_encode_ms:.0f} ms")
        if self.last_decode_ms is not None:
            parts.append(f"decode {self.last_decode_ms:.0f} ms")
        self.events.timing.emit(" · ".join(parts))

    def _require_doc(self) -> AnnotationDocument:
        if self.doc is None:
            raise RuntimeError("no image is open; call open_image first")
        return self.doc

    def close(self) -> None:
        """Disconnect from the open document (the views disconnect themselves)."""
        if self.doc is not None:
            self._disconnect(self.doc)
        self.doc = None


def match_classes(classes: ClassTable, text: str) -> list[int]:
    """Class indices (background excluded) whose name contains ``text``, best first.

    Case-insensitive; names whose last part (``dog/head`` -> ``head``) or whole name start
    with ``text`` come first, then the other matches, each group in class order. An empty
    ``text`` matches every class.
    """
    needle = text.strip().lower()
    hits = [(i, name.lower()) for i, name in enumerate(classes.names) if i > 0]
    if not needle:
        return [i for i, _ in hits]
    starts = [i for i, n in hits if n.startswith(needle) or n.rsplit("/", 1)[-1].startswith(needle)]
    rest = [i for i, n in hits if needle in n and i not in starts]
    return starts + rest


def project_for_folder(folder: str | Path, classes: ClassTable | None = None) -> Any:
    """Open the project in ``folder``, or make ``folder`` (a folder of images) a project.

    The project files live in the image folder itself, so reopening the folder resumes.
    ``classes`` may extend an existing project's class list (new names are appended); a
    list that renames or reorders existing classes is refused, because saved objects refer
    to classes by index.

    Raises
    ------
    ValueError
        If ``classes`` conflicts with the project's classes (both lists named).
    """
    from napari_samlabel.io.project import Project

    folder = Path(folder)
    if not Project.is_project(folder):
        return Project.create(folder, folder, classes)
    project = Project.open(folder)
    if classes is not None and classes.names != project.classes.names:
        have = project.classes.names
        if classes.names[:len(have)] != have:
            raise ValueError(
                f"project {folder} has the classes {', '.join(have[1:])}; the given list "
                f"({', '.join(classes.names[1:])}) does not extend it. Saved objects refer to "
                "classes by index, so existing classes cannot be renamed or reordered.")
        for name in classes.names[len(have):]:
            project.add_class(name)
    return project


def session_for_project(project: Any, **kwargs: Any) -> AnnotationSession:
    """An :class:`AnnotationSession` over every image of ``project``."""
    images = [project.image_path(i) for i in project.image_ids]
    return AnnotationSession(images, project=project, classes=project.classes, **kwargs)


def _default_loader(path: Path) -> np.ndarray:
    from napari_samlabel.io.images import load_image

    return load_image(path)

r"""The engine side of an annotation session: its state, encoding, prefetching, decoding.

:class:`DecodingSession` is the base of :class:`~napari_samlabel.annotate.session.
AnnotationSession` (which adds opening images, navigation, object actions and autosave); it
is not used alone. Engine work runs on :class:`~napari_samlabel.annotate.lane.EngineLane`\ s:

- encoding the open image, then decoding the prompts drawn meanwhile;
- decoding the newest prompts of the current object (older waiting requests are dropped,
  stale answers are refused by ``set_prediction``), or prompts the bridge anticipates
  (:meth:`DecodingSession.anticipate`);
- prefetching the next image's embedding when idle (the prefetch also reads the next image
  and its saved annotation, so moving on is instant), on a lane of its own when the engine
  can encode without changing its current image (an
  :class:`~napari_samlabel.engine.protocol.EncodingEngine`).

SAM inputs are built only by :func:`napari_samlabel.engine.policies.refine_object`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.annotate.lane import EngineLane, Runner, SyncRunner
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.prompts import ObjectPrompts, Prompt, in_image
from napari_samlabel.engine.protocol import EncodingEngine

if TYPE_CHECKING:
    from napari_samlabel.engine.policies import ObjectResult, Policy
    from napari_samlabel.engine.protocol import Engine
    from napari_samlabel.io.project import Project

#: What a running decode was started for: document, prompts, the logits it started from
#: and the engine (see :meth:`DecodingSession._decode_answers`).
_DecodeRun = tuple[AnnotationDocument, tuple[Prompt, ...], "np.ndarray | None", "Engine"]
#: What a decode returns to the session: document, prompts, result, milliseconds.
_Decoded = tuple[AnnotationDocument, tuple[Prompt, ...], "ObjectResult", float]


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
    stroke_preview = Signal(object)  # mask of a stroke still being drawn (see preview_stroke)


def decode_object(engine: Engine, prompts: ObjectPrompts, shape: tuple[int, int],
                  prev_logits: np.ndarray | None, policy: Policy | str | None = None
                  ) -> ObjectResult:
    """Run one interactive decode through the engine's prompt policy.

    Returns
    -------
    ObjectResult
        Its ``mask`` (``H x W`` bool), ``score`` (predicted IoU), ``ious`` (of every
        candidate) and ``logits`` (``(1, 256, 256)``, for the next decode of this object).
    """
    from napari_samlabel.engine.policies import refine_object

    return refine_object(engine, prompts, shape, prev_logits, policy)


def default_loader(path: Path) -> np.ndarray:
    """Read ``path`` as an RGB ``uint8`` array (:func:`napari_samlabel.io.images.load_image`)."""
    from napari_samlabel.io.images import load_image

    return load_image(path)


class DecodingSession:
    """The state of a session and its engine work (see the module docstring).

    The parameters are :class:`~napari_samlabel.annotate.session.AnnotationSession`'s.
    """

    def __init__(self, images: Sequence[Path], *, project: Project | None = None,
                 engine: Engine | None = None, classes: ClassTable | None = None,
                 runner: Runner | None = None, policy: Policy | str | None = None,
                 prefetch: bool = True,
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
        self._decoding_for: _DecodeRun | None = None
        self._anticipated: tuple[Prompt, ...] | None = None
        # statuses saved for images that were not open; applied to their documents on open,
        # since a preloaded or in-flight read may predate the save
        self._pending_status: dict[int, ImageStatus] = {}
        self._prefetching: int | None = None
        self._load = image_loader or default_loader
        self.positive = True                    # polarity of the next prompt
        self.selected: int | None = None        # selected accepted object
        self._notice_shown = False
        self._note_shown = False
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
        self.decode_count = 0
        # when the first prompt of the open image was drawn before its embedding was ready
        # (the first mask then says how long it waited), and that note once it has
        self._prompted_at: float | None = None
        self._wait_note = ""

    # -- images ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int | None = None) -> str:
        """Id (file stem) of image ``index`` (the open one by default)."""
        return self.images[self.index if index is None else index].stem

    @property
    def idle(self) -> bool:
        """True when no engine or loading job runs or waits."""
        return self.lane.idle and self.prefetch_lane.idle and self.load_lane.idle

    # -- the engine ----------------------------------------------------------------------------
    def set_engine(self, engine: Engine) -> None:
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

    def busy_text(self) -> str:
        """What the engine is doing for the annotator: encoding the open image, prefetching.

        "encoding <image>…" from the moment an image opens until its embedding is ready
        (prompts drawn meanwhile are decoded then); "prefetching <next>" only for an image
        that is not the open one.
        """
        if self.engine is not None and self.image is not None and self.index >= 0 \
                and self._engine_image != self.index:
            return f"encoding {self.image_id()}… (masks follow once it is ready)"
        nxt = self._prefetching
        if nxt is not None and nxt != self.index:
            return f"prefetching {self.image_id(nxt)}"
        return ""

    def _emit_busy(self) -> None:
        self.events.busy.emit(self.busy_text())

    def _request_encode(self) -> None:
        if self.engine is None or self.image is None:
            return
        self._emit_busy()
        index, image, engine = self.index, self.image, self.engine

        def factory() -> Callable[[], Any] | None:
            if index != self.index or engine is not self.engine:
                return None
            if self._engine_image == index:
                return None
            if self._prefetching == index:
                return None  # being prefetched: _prefetch_done encodes (from the cache)
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
        self._encoded.add(index)
        self.last_encode_ms = ms
        self._clear_notice()
        self._emit_busy()
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
        # An engine that can encode without changing its current image (SamEngine.encode)
        # prefetches on a lane of its own, so decodes are not held up by it; otherwise the
        # prefetch takes the engine lane: encode the next image, then set the open one back
        # (a cache hit).
        ahead = isinstance(engine, EncodingEngine)
        lane = self.prefetch_lane if ahead else self.lane

        def factory() -> Callable[[], Any] | None:
            if engine is not self.engine or nxt in self._encoded or self.index != current_index:
                return None
            self._prefetching = nxt
            self._emit_busy()

            def run() -> tuple[int, np.ndarray, AnnotationDocument]:
                image = self._load(path)
                doc = self._load_document(path, image.shape[:2])
                if isinstance(engine, EncodingEngine):
                    engine.encode(image)
                else:
                    engine.set_image(image)
                    if current is not None:
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
        self._emit_busy()
        self.events.prefetched.emit(index)
        if index == self.index and self._engine_image != index:
            self._request_encode()  # the annotator got there first: encode is a cache hit now

    @property
    def engine_ready(self) -> bool:
        """True when the engine holds the open image (encoded: prompts decode at once)."""
        return self.engine is not None and self.index >= 0 and self._engine_image == self.index

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
        if kept and self._engine_image != self.index and self._prompted_at is None:
            self._prompted_at = time.perf_counter()  # this mask waits for the encoding
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

    def preview_stroke(self, prompts: Sequence[Prompt]) -> bool:
        """Decode a stroke still being drawn, to show its mask before the stroke ends.

        ``prompts``: the current prompts plus the stroke so far. The document is not changed
        (the finished stroke is set with :meth:`set_prompts` as usual); the mask comes in
        ``stroke_preview`` if the same document is still open. Nothing starts while another
        decode runs or waits (the next call after it tries again). Returns True if started.
        """
        doc, engine = self.doc, self.engine
        prompts = tuple(prompts)
        if doc is None or engine is None or self._engine_image != self.index or \
                self.decoding or not prompts or \
                not all(in_image(p, doc.shape) for p in prompts):
            return False
        cur = doc.current
        other_model = cur.model_id is not None and cur.model_id != engine.model_id
        logits = None if cur.logits is None or other_model else np.array(cur.logits)
        obj = ObjectPrompts(cur.object_id or 0, cur.class_id, prompts)
        policy, shape = self.policy, doc.shape

        def factory() -> Callable[[], Any] | None:
            if doc is not self.doc or engine is not self.engine:
                return None
            return lambda: (doc, decode_object(engine, obj, shape, logits, policy).mask)

        def done(result: tuple[AnnotationDocument, np.ndarray]) -> None:
            if result[0] is self.doc:
                self.events.stroke_preview.emit(result[1])

        self.lane.submit("decode", factory, done, label="Decoding")
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
        return (run is not None and doc is not None and self.lane.running == "decode"
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
            if engine is None:
                return None
            target = cur.prompts if prompts is None else prompts
            if not target or (prompts is None and cur.prediction_is_current):
                return None  # e.g. undo back to a state whose mask answers its prompts
            # Logits of another model (the model was switched, or an object made with it
            # was reopened) mean nothing to this one.
            other_model = cur.model_id is not None and cur.model_id != engine.model_id
            obj = ObjectPrompts(cur.object_id or 0, cur.class_id, target)
            # A writable copy: torch warns on (and must not write into) the document's
            # read-only array.
            logits = None if cur.logits is None or other_model else np.array(cur.logits)
            self._decoding_for = (doc, target, cur.logits, engine)

            def run() -> _Decoded:
                t0 = time.perf_counter()
                result = decode_object(engine, obj, shape, logits, policy)
                return doc, target, result, (time.perf_counter() - t0) * 1e3
            self.events.decoding.emit(True)
            return run

        self.lane.submit("decode", factory, self._decode_done, label="Decoding")

    def _decode_done(self, result: _Decoded) -> None:
        self._decoding_for = None
        doc, prompts, res, ms = result
        self.last_decode_ms = ms
        self.decode_count += 1
        try:
            self._clear_notice()
            if self._prompted_at is not None and doc is self.doc:
                waited = time.perf_counter() - self._prompted_at
                self._prompted_at = None
                self._wait_note = (f"first mask {waited:.1f} s after the prompt: it waited "
                                   "for the image's encoding")
            self._emit_timing()
            self._wait_note = ""
            if doc is self.doc:
                model_id = None if self.engine is None else self.engine.model_id
                doc.set_prediction(prompts, res.mask, res.score, res.logits, model_id,
                                   ious=res.ious)
        finally:
            self.events.decoding.emit(False)

    @property
    def decoding(self) -> bool:
        """True while a decode runs or waits."""
        return self.lane.running == "decode" or self.lane.waiting("decode")

    # -- the selected accepted object ----------------------------------------------------------
    def select_object(self, object_id: int | None) -> None:
        """Select accepted object ``object_id`` (None: deselect); class keys then re-class it."""
        if object_id is not None:
            self._require_doc().get(object_id)   # KeyError for an id not on this image
        if object_id != self.selected:
            self.selected = object_id
            self.events.selection_changed.emit(object_id or 0)

    # -- reading documents ---------------------------------------------------------------------
    def _stored_status(self, path: Path) -> ImageStatus:
        if self.project is None:
            return ImageStatus.NEW
        return ImageStatus(self.project.status(path.stem))

    def _load_document(self, path: Path, shape: tuple[int, int]) -> AnnotationDocument:
        if self.project is None:
            return AnnotationDocument(path.stem, shape, class_id=self.current_class,
                                      classes=self.classes)
        return self.project.load_document(path.stem, class_id=self.current_class)

    # -- failures and notices ------------------------------------------------------------------
    def _load_failed(self, kind: str, exc: BaseException) -> None:
        self._opening = None
        self.notify(f"cannot open the image: {exc}")

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
        self._note_shown = False
        self.events.message.emit(text)

    def note(self, text: str) -> None:
        """Tell the user something that stays until the next image opens or notice comes."""
        self._notice_shown = False
        self._note_shown = True
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
        if self._wait_note:
            parts.append(self._wait_note)
        self.events.timing.emit(" · ".join(parts))

    def _require_doc(self) -> AnnotationDocument:
        if self.doc is None:
            raise RuntimeError("no image is open; call open_image first")
        return self.doc


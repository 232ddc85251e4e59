"""Run engine jobs off the GUI thread, reporting back on the GUI thread.

:class:`ThreadRunner` keeps one long-lived Python thread per lane and hands results back
through a queued Qt signal. It is used instead of napari's ``create_worker`` (QThreadPool)
because a thread of our own lets us give torch the GUI thread's thread count (see below)
before the first decode. Encoding and loading show a progress bar in napari's activity dock
(an encode's counts the encoder's blocks, :func:`~napari_samlabel.engine.base.encode_progress`),
but only once they have run for :data:`PROGRESS_DELAY_MS`: adding a bar to the dock costs the
GUI thread 100-250 ms (measured), more than a cache hit takes. Prefetching, which runs
while the annotator works, shows on the status line only.

torch's intra-op thread count is per OS thread for OpenMP/MKL: a thread that never called
``torch.set_num_threads`` may decode with fewer threads than the GUI thread would (measured:
ViT-B decoder 386 ms on a fresh QThread, 206 ms after ``set_num_threads(2)`` in it). The
engine thread therefore applies the GUI thread's setting (read when a job is queued).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import QCoreApplication, QDeadlineTimer, QObject, QThread, QTimer, Signal

from napari_samlabel.engine.base import encode_progress

#: Flush denormal floats to zero on the engine thread (see the module notes).
FLUSH_DENORMAL = True

#: Jobs slow enough to show in napari's activity dock ...
_SHOW_PROGRESS = ("Encoding", "Loading")
#: ... once they have run this long.
PROGRESS_DELAY_MS = 400

#: True once the canvas is found to be rendered in software (llvmpipe: no GPU, e.g. a VM or
#: Xvfb). napari's activity indicator then animates through software OpenGL and took 13 %
#: of the CPU from a concurrent encode (measured: a float32 ViT-B first encode 7.3 s with
#: napari's progress, 5.4-6.3 s without), so encodes show their blocks on the status line.
software_gl = False


def watch_renderer(canvas: Any) -> None:
    """Set :data:`software_gl` from the GL renderer at the vispy ``canvas``'s first draw."""

    def on_draw(_event: object) -> None:
        global software_gl
        canvas.events.draw.disconnect(on_draw)
        try:
            from vispy.gloo import gl

            renderer = str(gl.glGetParameter(gl.GL_RENDERER)).lower()
        except Exception:  # noqa: BLE001 - no GL answer: assume hardware
            return
        software_gl = any(name in renderer for name in ("llvmpipe", "softpipe", "swrast",
                                                          "software"))

    canvas.events.draw.connect(on_draw)


@dataclass
class _Job:
    fn: Callable[[], Any]
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]
    threads: int
    label: str
    bar: Any = None
    done: bool = False
    #: ``(blocks done, blocks)`` of the encoder pass running in this job, once reported.
    blocks: tuple[int, int] | None = None

    def show_progress(self) -> None:
        if not self.done:
            from napari.utils import progress

            # Determinate when the encoder reports its blocks: an animated (indeterminate)
            # bar keeps a software-rendered window repainting (11 % of the CPU, measured).
            done, total = self.blocks or (0, 0)
            self.bar = progress(total=total, desc=self.label)
            if done:
                self.bar.update(done)

    def set_blocks(self, done: int, total: int) -> None:
        """The encoder's progress (GUI thread): moves the bar, if it is shown."""
        before = self.blocks[0] if self.blocks else 0
        self.blocks = (done, total)
        if self.bar is None or self.done:
            return
        if self.bar.total != total:
            self.bar.total = total
        if done > before:
            self.bar.update(done - before)


def run_transient(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread that ends with it; its result, or its exception re-raised.

    GNU OpenMP keeps a thread's team of workers until that thread exits, and while a second
    team lives on a machine with no more cores than one team uses, it stops its workers
    from spin-waiting between parallel regions: every small torch operation of the engine
    thread then waits for its workers to wake (measured, float32 ViT-B global attention on
    2 cores: 0.29 s per block with one team, 0.42-0.43 s while another thread's team lives;
    the first encode after a model load in napari's worker thread took 7.0-7.4 s against
    4.0-4.2 s in a plain process). Torch work off the engine thread (loading a model,
    prefetching) therefore runs here, so that its team goes when the work is done.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="samlabel-transient", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class _Relay(QObject):
    """Lives in the GUI thread; a signal emitted from the worker is delivered there."""

    deliver = Signal(object)
    blocks = Signal(object, int, int)


class ThreadRunner:
    """A :class:`~napari_samlabel.annotate.lane.Runner` on one long-lived Python thread.

    Create it on the GUI thread. Jobs run in order (the lane starts one at a time anyway);
    ``on_done``/``on_error`` are called on the GUI thread.
    """

    def __init__(self, name: str = "samlabel-engine", transient: bool = False) -> None:
        #: Run each job in a thread of its own (:func:`run_transient`): for lanes whose
        #: torch work must not keep an OpenMP team beside the engine thread's.
        self.transient = transient
        self._relay = _Relay()
        self._relay.deliver.connect(self._deliver)
        self._relay.blocks.connect(self._blocks)
        #: Called on the GUI thread with ``(job label, blocks done, blocks)`` of an encode.
        self.on_blocks: Callable[[str, int, int], None] | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def start(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
              on_error: Callable[[BaseException], None], label: str) -> None:
        """Queue ``fn``; its result or error comes back on the GUI thread."""
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else 0
        job = _Job(fn, on_done, on_error, threads, label)
        if label.startswith(_SHOW_PROGRESS) and not (
                software_gl and label.startswith("Encoding") and self.on_blocks is not None):
            QTimer.singleShot(PROGRESS_DELAY_MS, job.show_progress)
        self._pending += 1
        self._jobs.put(job)

    def _loop(self) -> None:
        threads_set = 0
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.threads and job.threads != threads_set:
                torch = sys.modules["torch"]
                torch.set_num_threads(job.threads)  # this thread's OpenMP/MKL
                torch.set_flush_denormal(FLUSH_DENORMAL)
                threads_set = job.threads
            def report(done: int, total: int, job: _Job = job) -> None:
                with contextlib.suppress(RuntimeError):  # the relay is gone
                    self._relay.blocks.emit(job, done, total)

            def work(job: _Job = job, report: Callable[[int, int], None] = report) -> Any:
                with encode_progress(report):
                    return job.fn()

            try:
                item = (job, job.on_done, run_transient(work) if self.transient else work())
            except Exception as exc:  # reported on the GUI thread
                item = (job, job.on_error, exc)
            with contextlib.suppress(RuntimeError):  # the relay is gone: nobody listens
                self._relay.deliver.emit(item)

    def _blocks(self, job: _Job, done: int, total: int) -> None:
        job.set_blocks(done, total)
        if self.on_blocks is not None:
            self.on_blocks(job.label, done, total)

    def _deliver(self, item: tuple[_Job, Callable[[Any], None], Any]) -> None:
        job, callback, payload = item
        self._pending -= 1
        job.done = True
        if job.bar is not None:
            job.bar.close()
        callback(payload)

    @property
    def active(self) -> int:
        """Jobs queued or running whose result has not been delivered yet."""
        return self._pending

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Process events until every job has been delivered; False on timeout."""
        deadline = QDeadlineTimer(timeout_ms)
        while self._pending and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)
        return not self._pending

    def close(self) -> None:
        """Let the thread end after the queued jobs."""
        self._jobs.put(None)

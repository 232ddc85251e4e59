"""Run engine jobs off the GUI thread, reporting back on the GUI thread.

:class:`ThreadRunner` keeps one long-lived Python thread per lane and hands results back
through a queued Qt signal. It is used instead of napari's ``create_worker`` (QThreadPool)
because a thread of our own lets us give torch the GUI thread's thread count (see below)
before the first decode. Encoding and loading show a progress bar in napari's activity dock,
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

#: Flush denormal floats to zero on the engine thread (see the module notes).
FLUSH_DENORMAL = True

#: Jobs slow enough to show in napari's activity dock ...
_SHOW_PROGRESS = ("Encoding", "Loading")
#: ... once they have run this long.
PROGRESS_DELAY_MS = 400


@dataclass
class _Job:
    fn: Callable[[], Any]
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]
    threads: int
    label: str
    bar: Any = None
    done: bool = False

    def show_progress(self) -> None:
        if not self.done:
            from napari.utils import progress

            self.bar = progress(total=0, desc=self.label)


class _Relay(QObject):
    """Lives in the GUI thread; a signal emitted from the worker is delivered there."""

    deliver = Signal(object)


class ThreadRunner:
    """A :class:`~napari_samlabel.annotate.lane.Runner` on one long-lived Python thread.

    Create it on the GUI thread. Jobs run in order (the lane starts one at a time anyway);
    ``on_done``/``on_error`` are called on the GUI thread.
    """

    def __init__(self, name: str = "samlabel-engine") -> None:
        self._relay = _Relay()
        self._relay.deliver.connect(self._deliver)
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
        if label.startswith(_SHOW_PROGRESS):
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
            try:
                item = (job, job.on_done, job.fn())
            except Exception as exc:  # reported on the GUI thread
                item = (job, job.on_error, exc)
            with contextlib.suppress(RuntimeError):  # the relay is gone: nobody listens
                self._relay.deliver.emit(item)

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

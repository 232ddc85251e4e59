"""Run engine jobs off the GUI thread, reporting back on the GUI thread.

:class:`ThreadRunner` keeps one long-lived Python thread per lane and hands results back
through a queued Qt signal. It is used instead of napari's ``create_worker`` (QThreadPool)
because a thread of our own lets us give torch the GUI thread's thread count (see below)
before the first decode. Encoding and prefetching still show a progress bar in napari's
activity dock.

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
from typing import Any

from qtpy.QtCore import QCoreApplication, QDeadlineTimer, QObject, QThread, Signal

#: Flush denormal floats to zero on the engine thread (see the module notes).
FLUSH_DENORMAL = True

#: Jobs slow enough to show in napari's activity dock.
_SHOW_PROGRESS = ("Encoding", "Prefetching", "Loading")


class _Relay(QObject):
    """Lives in the GUI thread; a signal emitted from the worker is delivered there."""

    deliver = Signal(object)


class ThreadRunner:
    """A :class:`~napari_samlabel._napari.lane.Runner` on one long-lived Python thread.

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
        bar = None
        if label.startswith(_SHOW_PROGRESS):
            from napari.utils import progress

            bar = progress(total=0, desc=label)
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else 0
        self._pending += 1
        self._jobs.put((fn, on_done, on_error, bar, threads))

    def _loop(self) -> None:
        threads_set = 0
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, on_done, on_error, bar, threads = job
            if threads and threads != threads_set:
                torch = sys.modules["torch"]
                torch.set_num_threads(threads)  # this thread's OpenMP/MKL
                torch.set_flush_denormal(FLUSH_DENORMAL)
                threads_set = threads
            try:
                item = (on_done, fn(), bar)
            except Exception as exc:  # reported on the GUI thread
                item = (on_error, exc, bar)
            with contextlib.suppress(RuntimeError):  # the relay is gone: nobody listens
                self._relay.deliver.emit(item)

    def _deliver(self, item: tuple[Callable[[Any], None], Any, Any]) -> None:
        callback, payload, bar = item
        self._pending -= 1
        if bar is not None:
            bar.close()
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

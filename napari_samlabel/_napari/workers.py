"""Run engine jobs in napari worker threads, reporting back on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker

#: Jobs slow enough to show in napari's activity dock.
_SHOW_PROGRESS = ("Encoding", "Prefetching", "Loading")


class NapariRunner:
    """A :class:`~napari_samlabel._napari.lane.Runner` on napari's thread workers.

    The lane runs one job at a time, so at most one worker is alive per session. Encoding
    and prefetching show an (indeterminate) progress bar in napari's activity dock.
    """

    def __init__(self) -> None:
        self._workers: set[Any] = set()

    def start(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
              on_error: Callable[[BaseException], None], label: str) -> None:
        """Start ``fn`` in a worker thread; results arrive through Qt signals."""
        progress: Any = {"desc": label, "total": 0} if label.startswith(_SHOW_PROGRESS) else False
        worker = create_worker(fn, _start_thread=False, _progress=progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        self._workers.add(worker)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Process events until this runner's workers have finished; False on timeout."""
        from qtpy.QtCore import QCoreApplication, QDeadlineTimer, QThread

        deadline = QDeadlineTimer(timeout_ms)
        while self._workers and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)
        return not self._workers

    @property
    def active(self) -> int:
        """Number of workers not finished yet."""
        return len(self._workers)

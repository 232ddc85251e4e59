"""One lane for engine work: jobs run one at a time, off the GUI thread, newest request wins.

A SAM engine holds one image at a time, so encoding, prefetching and decoding must never
overlap. :class:`EngineLane` serialises them (reading images and documents runs on a lane
of its own, whose only kind is ``load``). Each job has a *kind*; a waiting job is replaced
by a newer job of the same kind (a burst of prompt edits during a decode costs one decode,
for the newest prompts, not one per edit). Waiting jobs start in priority order (by default
:data:`PRIORITY`: ``encode`` before ``decode`` before ``prefetch``).

A job is given as a *factory* called on the calling (GUI) thread at the moment the job starts;
it returns the function to run in the worker. So a decode reads the current object's logits
when it starts, after the previous decode has delivered them, not when it was requested.

How the function runs is a :class:`Runner`: :class:`SyncRunner` runs it inline (headless use,
scripts, tests); the GUI passes a runner that starts a napari worker thread. Nothing here
imports Qt or napari.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: Kinds of job in start order.
PRIORITY: tuple[str, ...] = ("encode", "decode", "refine", "propose", "prefetch")


class Runner(Protocol):
    """Runs ``fn`` somewhere and reports back on the caller's thread."""

    def start(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
              on_error: Callable[[BaseException], None], label: str) -> None:
        """Run ``fn``; call ``on_done(result)`` or ``on_error(exc)`` on the caller's thread."""
        ...


@runtime_checkable
class ThreadedRunner(Runner, Protocol):
    """A :class:`Runner` on a thread of its own, which can be waited for and closed."""

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Deliver every job queued so far; False if ``timeout_ms`` ran out first."""
        ...

    def close(self) -> None:
        """Let the thread end after the queued jobs."""
        ...


class SyncRunner:
    """Run jobs inline, on the calling thread (headless sessions and tests)."""

    def start(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
              on_error: Callable[[BaseException], None], label: str) -> None:
        """Run ``fn`` now and report its result or error."""
        try:
            result = fn()
        except Exception as exc:  # reported, not raised: a failed job must not stop the lane
            on_error(exc)
            return
        on_done(result)


@dataclass
class _Job:
    kind: str
    factory: Callable[[], Callable[[], Any] | None]
    on_done: Callable[[Any], None]
    label: str


class EngineLane:
    """Serialises engine jobs; a newer job replaces a waiting job of the same kind.

    Parameters
    ----------
    runner : Runner
        Where jobs run.
    on_error : callable
        Called with ``(kind, exception)`` when a job fails.
    kinds : tuple of str
        The kinds of job this lane takes, in start order (default :data:`PRIORITY`).
    """

    def __init__(self, runner: Runner,
                 on_error: Callable[[str, BaseException], None] | None = None,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.runner = runner
        self.kinds = PRIORITY if kinds is None else tuple(kinds)
        self._on_error = on_error
        self._waiting: dict[str, _Job] = {}
        self._running: str | None = None

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self._running is not None

    @property
    def running(self) -> str | None:
        """The kind of the job running, None when none runs."""
        return self._running

    @property
    def idle(self) -> bool:
        """True when nothing runs and nothing waits."""
        return self._running is None and not self._waiting

    def waiting(self, kind: str) -> bool:
        """True when a job of ``kind`` waits to start."""
        return kind in self._waiting

    def submit(self, kind: str, factory: Callable[[], Callable[[], Any] | None],
               on_done: Callable[[Any], None], label: str = "") -> None:
        """Queue a job of ``kind``, replacing a waiting job of the same kind.

        ``factory`` is called when the job starts and returns the function to run, or None
        to skip the job (nothing left to do by then).
        """
        if kind not in self.kinds:
            raise ValueError(f"unknown job kind {kind!r}; expected one of {self.kinds}")
        self._waiting[kind] = _Job(kind, factory, on_done, label or kind)
        self._pump()

    def cancel(self, kind: str) -> None:
        """Drop a waiting job of ``kind`` (a running one finishes)."""
        self._waiting.pop(kind, None)

    def _pump(self) -> None:
        while self._running is None and self._waiting:
            kind = next(k for k in self.kinds if k in self._waiting)
            job = self._waiting.pop(kind)
            fn = job.factory()
            if fn is None:
                continue
            self._running = kind
            self.runner.start(fn, functools.partial(self._finish, job),
                              functools.partial(self._fail, job), job.label)

    def _finish(self, job: _Job, result: Any) -> None:
        self._running = None
        try:
            job.on_done(result)
        finally:
            self._pump()

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self._running = None
        try:
            if self._on_error is not None:
                self._on_error(job.kind, exc)
        finally:
            self._pump()

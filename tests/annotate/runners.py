"""A runner for tests of the engine lane and the session."""

from __future__ import annotations


class ManualRunner:
    """Runs nothing until told: lets a test see what waits and what is superseded."""

    def __init__(self):
        self.started = []

    def start(self, fn, on_done, on_error, label):
        self.started.append((fn, on_done, on_error, label))

    def finish(self):
        fn, on_done, on_error, _ = self.started.pop(0)
        on_done(fn())

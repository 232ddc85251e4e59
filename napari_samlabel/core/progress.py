"""Progress reporting without a UI: the core calls a callback, the faces render it.

The CLI turns it into tqdm, the GUI into napari's progress. A callback receives
``(done, total, message)``; ``total`` may be None when unknown.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, "int | None", str], None]


def no_progress(done: int, total: int | None, message: str = "") -> None:
    """Ignore progress (the default callback)."""

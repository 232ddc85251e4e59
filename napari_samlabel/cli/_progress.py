"""tqdm rendering of the core's progress callbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tqdm import tqdm

from napari_samlabel.core.progress import ProgressCallback


@contextlib.contextmanager
def tqdm_progress(desc: str, unit: str = "img") -> Iterator[ProgressCallback]:
    """Yield a progress callback that drives one tqdm bar, closed on exit."""
    bar = tqdm(desc=desc, unit=unit, dynamic_ncols=True)

    def update(done: int, total: int | None, message: str = "") -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()

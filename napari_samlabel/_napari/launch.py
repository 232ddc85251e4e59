"""Start napari with the annotator docked (the work of ``samlabel annotate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_samlabel._napari.widget import SamLabelWidget
from napari_samlabel._napari.window import fit_window
from napari_samlabel.annotate.model import EngineOptions
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.engine.protocol import Engine


def preload_model_libraries() -> None:
    """Import torch and segment-anything now, before the window shows.

    Imported by the model-loading worker instead, they hold the GIL for seconds (shared
    libraries, op registration, torchvision), and the window freezes in stalls of up to
    1.5 s (measured by ``benchmarks/bench_gui_stalls.py``). Triton is kept out first (see
    :mod:`napari_samlabel._napari.torch_guard`).
    """
    from napari_samlabel._napari.torch_guard import keep_triton_out

    keep_triton_out()
    import segment_anything  # noqa: F401


def open_annotator(viewer: Any, folder: str | Path | None = None,
                   classes: ClassTable | None = None,
                   engine_options: EngineOptions | None = None,
                   engine: Engine | None = None,
                   review: str | Path | None = None) -> SamLabelWidget:
    """Dock the annotator in ``viewer`` and open ``folder`` (the sample images if None).

    ``review``: a curation queue (``queue.json`` or its folder) to walk in the Review tab,
    which opens at its worst undecided image.

    Raises
    ------
    ValueError
        If the review queue cannot be used with this folder (the message says why).
    """
    widget = SamLabelWidget(viewer, engine_options, classes)
    viewer.window.add_dock_widget(widget, name="SAM label", area="right")
    if folder is None:
        widget.open_samples(engine)
    else:
        widget.open_folder(folder, engine)
    if review is not None and not widget.open_review(review):
        text = widget.review_panel.message if widget.review_panel else ""
        widget.shutdown()
        raise ValueError(text or f"cannot review {review}")
    return widget


def launch(folder: str | Path | None = None, classes: ClassTable | None = None,
           model: str = "vit_b", checkpoint: str | None = None, precise: bool = False,
           run: bool = True, review: str | Path | None = None,
           cache_dir: str | None = None) -> SamLabelWidget:
    """Open a napari window annotating ``folder`` and run the Qt event loop until closed.

    ``review``: a curation queue to walk in the Review tab (see :func:`open_annotator`).
    ``cache_dir``: cache root of checkpoints and embeddings (default: the user cache dir).

    Raises
    ------
    ValueError, FileNotFoundError, NotADirectoryError
        On a bad folder or class list (before any window opens when possible).
    """
    import napari

    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise NotADirectoryError(f"not a folder of images: {folder}")
    preload_model_libraries()
    viewer = napari.Viewer(title="napari-samlabel")
    fit_window(viewer)  # napari's default leaves the canvas a strip next to the docks
    try:
        widget = open_annotator(viewer, folder, classes,
                                EngineOptions(model, checkpoint, precise, cache_dir),
                                review=review)
    except Exception:
        viewer.close()
        raise
    if run:
        napari.run()
        if widget.jobs_left or widget.loading_model is not None:
            _exit_now()
    return widget


def _exit_now() -> None:
    """End the process although an engine job still runs (the window is closed).

    An encode (seconds on a CPU) cannot be interrupted, and a daemon thread inside torch at
    interpreter shutdown aborts the process ("terminate called without an active
    exception"). Everything is saved by then (accepts at once, the draft on close), so the
    process ends here, with the usual exit status.
    """
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

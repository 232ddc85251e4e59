"""The dock widget: open a folder, classes, objects, images, help, and the status line.

Reached from napari's Plugins menu (npe2 manifest) or docked by ``samlabel annotate``.
Opening a folder makes it a project (or reopens it) and resumes at the first unfinished
image; the model loads in a worker thread meanwhile (prompts drawn before it is ready are
decoded once it is). Images and their annotations are read on a worker thread too.

The window repaints as usual while a decode runs: a clicked point shows at once, its mask
when it arrives (holding the repaint until the mask was there won a few milliseconds under
software OpenGL, but looked like a lost click for up to 400 ms). The status line says what
the engine is doing ("encoding <image>…" until the open image's embedding is ready), the
last encode/decode times, and notices; a model that failed to load gets one short line
there (the detail goes to napari's notification and the log), cleared once a model loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel._napari.chrome import HelpOverride, hide_shape_tools
from napari_samlabel._napari.model_panel import ModelPanel
from napari_samlabel._napari.objects_panel import ObjectsPanel
from napari_samlabel._napari.panels import ClassPanel, HelpPanel, NavigatorPanel
from napari_samlabel._napari.proposals_panel import ProposalsPanel
from napari_samlabel._napari.refine_panel import RefinePanel
from napari_samlabel._napari.review_panel import ReviewPanel
from napari_samlabel._napari.tools import ToolBar
from napari_samlabel._napari.window import refit_on_resize
from napari_samlabel._napari.workers import ThreadRunner, run_transient, watch_renderer
from napari_samlabel.annotate.display import status_lines
from napari_samlabel.annotate.model import EngineOptions
from napari_samlabel.annotate.session import AnnotationSession, session_for_project
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.engine.protocol import Engine
from napari_samlabel.io.folder import project_for_folder

_log = logging.getLogger(__name__)
#: How long closing the window waits for a running job (a decode ends in time, an encode not).
CLOSE_WAIT_MS = 200


def _runners() -> dict[str, ThreadRunner]:
    """Worker threads of a session: the engine, the prefetch, and reading files."""
    # The prefetch runs its torch work in short-lived threads (see workers.run_transient).
    return {"runner": ThreadRunner(),
            "prefetch_runner": ThreadRunner("samlabel-prefetch", transient=True),
            "loader": ThreadRunner("samlabel-load")}


@dataclass(frozen=True)
class _LoadFailed:
    """Why the model could not be loaded."""

    error: BaseException


class SamLabelWidget(QWidget):
    """The plugin's dock widget for one viewer."""

    def __init__(self, napari_viewer: Any, engine_options: EngineOptions | None = None,
                 classes: ClassTable | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.engine_options = engine_options or EngineOptions()
        self.classes = classes
        self.annotator: Annotator | None = None
        self.review_panel: ReviewPanel | None = None
        self._loader: Any = None
        self.loading_model: str | None = None  # model type being loaded, if any
        self._load_seq = 0  # the newest load wins
        self.model_panel: ModelPanel | None = None
        self._refit: Any = None
        self.toolbar: ToolBar | None = None
        #: True when :meth:`shutdown` left a job running (the process may end without it).
        self.jobs_left = False
        win = self._window()
        if win is not None:  # the dock widget gets no close event of its own
            win.installEventFilter(self)
        canvas = getattr(getattr(getattr(napari_viewer, "window", None), "_qt_viewer", None),
                         "canvas", None)  # napari's vispy canvas (private; absent in fakes)
        if canvas is not None and hasattr(getattr(canvas, "_scene_canvas", None), "events"):
            watch_renderer(canvas._scene_canvas)
        self._help: HelpOverride | None = None
        self._timing = ""
        self._busy = ""
        self._blocks = ""       # an encode's progress, where napari's bar is not shown
        self._loading = ""      # the model being loaded
        self._message = ""
        self._load_error = ""   # short line about a model that failed to load
        self._saved = ""        # image id last saved
        open_button = QPushButton("Open image folder…")
        open_button.clicked.connect(self._choose_folder)
        samples_button = QPushButton("Sample images")
        samples_button.setToolTip("Annotate the bundled sample images")
        samples_button.clicked.connect(self._open_samples_clicked)
        top = QHBoxLayout()
        top.addWidget(open_button, 1)
        top.addWidget(samples_button)
        self.tools_row = QVBoxLayout()  # the prompt tool in use (filled by attach)
        self.tabs = QTabWidget()
        self.status_line = QLabel("Open a folder of images to start.")
        self.status_line.setWordWrap(True)
        self.setMaximumWidth(420)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(self.tools_row)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status_line)

    # -- opening -------------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to annotate")
        if folder:
            self.open_folder(folder)

    def _open_samples_clicked(self) -> None:
        self.open_samples()

    def open_folder(self, folder: str | Path, engine: Engine | None = None) -> Annotator:
        """Open (or create) the project in ``folder`` and start annotating it.

        ``engine``: an engine to use as is; otherwise one is loaded in a worker thread from
        :attr:`engine_options`.
        """
        project = project_for_folder(folder, self.classes)
        return self.attach(session_for_project(project, **self._runners()), engine)

    def open_samples(self, engine: Engine | None = None) -> Annotator:
        """Annotate the bundled sample images (their project lives in the user data folder)."""
        from napari_samlabel.annotate.samples import sample_project

        return self.attach(session_for_project(sample_project(self.classes), **self._runners()),
                           engine)

    def attach(self, session: AnnotationSession, engine: Engine | None = None) -> Annotator:
        """Annotate ``session`` in this widget's viewer (replacing a previous one)."""
        self.shutdown()
        self.tabs.clear()
        ev = session.events
        ev.timing.connect(self._on_timing)
        ev.busy.connect(self._on_busy)
        ev.message.connect(self._on_message)
        ev.saved.connect(self._on_saved)
        for signal in (ev.image_changed, ev.current_changed, ev.objects_changed,
                       ev.selection_changed, ev.polarity_changed):
            signal.connect(self._render_status)
        if engine is not None:
            session.engine = engine
        annotator = Annotator(self.viewer, session, start=session.resume_index())
        annotator.bridge.defer = lambda fn: QTimer.singleShot(0, fn)
        self.annotator = annotator
        b = annotator.bridge
        self._help = HelpOverride(self.viewer, b.owned, b.shapes_layer)
        hide_shape_tools(self.viewer, b.shapes_layer)
        self.toolbar = ToolBar(annotator)
        self.tools_row.addWidget(self.toolbar)
        self._refit = refit = refit_on_resize(self.viewer)
        if refit is not None:  # the bridge fits each new image: that is the fitted view
            ev.image_changed.connect(lambda _: refit.remember())
        # Classes and the image's objects are used together all day: one tab, split.
        self.class_panel = ClassPanel(annotator)
        self.objects_panel = ObjectsPanel(annotator)
        label = QSplitter(Qt.Orientation.Vertical)
        label.addWidget(self.class_panel)
        label.addWidget(self.objects_panel)
        self.tabs.addTab(label, "Label")
        self.navigator_panel = NavigatorPanel(annotator)
        self.tabs.addTab(self.navigator_panel, "Images")
        self.tabs.addTab(RefinePanel(annotator), "Refine")
        self.model_panel = ModelPanel(self)
        self.tabs.addTab(self.model_panel, "Model")
        self.review_panel = ReviewPanel(annotator)
        self.tabs.addTab(self.review_panel, "Review")
        self.proposals_panel = ProposalsPanel(annotator)
        self.tabs.addTab(self.proposals_panel, "Proposals")
        self.tabs.addTab(HelpPanel(), "Keys")
        annotator.points_mode()
        if session.engine is None:
            self.load_engine()
        self._render_status()
        return annotator

    def open_review(self, queue: str | Path) -> bool:
        """Show the Review tab with ``queue`` loaded, at its worst undecided image.

        ``queue``: a ``queue.json`` or the folder holding it. False when it could not be
        loaded (the tab says why).
        """
        if self.review_panel is None:
            raise RuntimeError("open a folder before loading a review queue")
        self.tabs.setCurrentWidget(self.review_panel)
        return self.review_panel.load(queue)

    def switch_model(self, options: EngineOptions) -> None:
        """Load another model (in a worker); the annotation goes on with it when ready.

        Accepted objects are kept; the object being prompted is decoded again by the new
        model. If loading fails, the previous model stays in use.
        """
        self.engine_options = options
        self.load_engine()

    def load_engine(self) -> None:
        """Load the model in a worker thread; the session encodes once it is ready."""
        from napari.qt.threading import create_worker

        from napari_samlabel.engine.device import tune_memory

        tune_memory()  # huge pages only if the plugin is the first to import torch
        opts = self.engine_options
        self.loading_model = opts.model
        self._load_seq += 1
        seq = self._load_seq
        if self.model_panel is not None:
            self.model_panel.refresh()

        def load() -> tuple[int, Engine | _LoadFailed]:
            from napari_samlabel._napari.torch_guard import keep_triton_out

            keep_triton_out()
            try:
                # In a thread that ends with the load, so that no OpenMP team stays beside
                # the engine thread's (workers.run_transient: a first encode 1.7x slower).
                return seq, run_transient(opts.load)
            except Exception as exc:  # shown as a message, not re-raised as a traceback
                return seq, _LoadFailed(exc)  # (a worker returning an exception re-raises it)

        self._set_loading(f"loading model {opts.model}…")
        worker = create_worker(load, _start_thread=False,
                               _progress={"desc": f"Loading {opts.model}", "total": 0})
        worker.returned.connect(self._engine_loaded)
        worker.finished.connect(lambda: self._load_finished(seq))
        self._loader = worker
        worker.start()

    def _load_finished(self, seq: int) -> None:
        if seq != self._load_seq:
            return  # a newer load is under way
        self.loading_model = None
        self._set_loading("")
        if self.model_panel is not None:
            self.model_panel.refresh()

    def _engine_loaded(self, result: tuple[int, Engine | _LoadFailed]) -> None:
        seq, engine = result
        if seq != self._load_seq:
            return  # the user picked another model meanwhile
        if isinstance(engine, _LoadFailed):
            from napari.utils.notifications import show_error

            exc = engine.error
            text = f"model {self.engine_options.model} not loaded ({type(exc).__name__}): {exc}"
            _log.warning("%s", text)
            keep = ("the previous model stays in use" if self.annotator is not None
                    and self.annotator.session.engine is not None else "prompts are kept")
            self._load_error = (f"model {self.engine_options.model} not loaded "
                                f"({type(exc).__name__}; details in the notification); "
                                f"{keep}: pick another model or a local checkpoint in the "
                                "Model tab")
            self._render_status()
            show_error(text)
            return
        self._load_error = ""
        self._render_status()
        if self.annotator is not None:
            self.annotator.session.set_engine(engine)

    # -- status line ---------------------------------------------------------------------------
    def _on_timing(self, text: str) -> None:
        self._timing = text
        self._render_status()

    def _on_busy(self, text: str) -> None:
        self._busy = text
        self._render_status()

    def _set_loading(self, text: str) -> None:
        self._loading = text
        self._render_status()

    def _on_message(self, text: str) -> None:
        self._message = text
        self._render_status()

    def _on_saved(self, image_id: str) -> None:
        self._saved = image_id
        self._render_status()

    def _runners(self) -> dict[str, ThreadRunner]:
        runners = _runners()
        runners["runner"].on_blocks = self._on_blocks
        return runners

    def _on_blocks(self, label: str, done: int, total: int) -> None:
        """An encode's progress on the status line (the engine's blocks)."""
        self._blocks = f"{label[0].lower()}{label[1:]}: {done}/{total} blocks" \
            if done < total else ""
        self._render_status()

    def _render_status(self, *_: Any) -> None:
        a = self.annotator
        parts = status_lines(a.session) if a is not None else []
        # "saved" only about the open image (a status set on leaving one is not news here)
        saved = ("saved" if a is not None and a.session.doc is not None
                 and self._saved == a.session.doc.image_id else "")
        parts += [p for p in (self._timing, self._loading, self._busy, self._blocks,
                              self._load_error, self._message, saved) if p]
        self.status_line.setText("\n".join(parts) or "ready")

    def shutdown(self, timeout_ms: int = 60000, remove_layers: bool = True) -> None:
        """Stop annotating: drop waiting jobs, let running ones finish, remove the layers.

        The object in progress is kept as a draft (see the session's ``close``). A job still
        running after ``timeout_ms`` is left to its thread; :attr:`jobs_left` then says so.
        ``remove_layers=False`` when the window is closing anyway (see the bridge's close).
        """
        a, self.annotator = self.annotator, None
        if a is None:
            return
        s = a.session
        self.jobs_left = not s.stop_jobs(timeout_ms)
        ev = s.events
        for signal, slot in ((ev.timing, self._on_timing), (ev.busy, self._on_busy),
                             (ev.message, self._on_message)):
            signal.disconnect(slot)
        if self._refit is not None:
            self._refit.close()
            self._refit = None
        if self.toolbar is not None:
            self.toolbar.close_tools()
            self.toolbar.setParent(None)
            self.toolbar = None
        if self._help is not None:
            self._help.close()
            self._help = None
        for signal in (ev.image_changed, ev.current_changed, ev.objects_changed, ev.saved,
                       ev.selection_changed, ev.polarity_changed):
            signal.disconnect()
        a.close(remove_layers)

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        """The main window closes: keep the draft, and do not wait for a running encode.

        (Waiting for an encode or prefetch to finish kept a closed window's process alive
        for 7-20 s; :func:`napari_samlabel._napari.launch.launch` ends the process at once
        when a job was left running, as everything is already saved.)
        """
        if event.type() == QEvent.Type.Close and obj is self._window():
            self.shutdown(timeout_ms=CLOSE_WAIT_MS, remove_layers=False)
        return False

    def _window(self) -> Any:
        return getattr(self.viewer.window, "_qt_window", None)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Stop annotating when the widget closes."""
        self.shutdown()
        super().closeEvent(event)

"""One viewer's annotator: the session, its layer bridge, and the keyboard shortcuts.

:class:`Annotator` is what the dock widget and the launcher create per viewer. It holds no
widgets (those are in :mod:`napari_samlabel._napari.widget`), so tests can drive it with a
viewer alone. The shortcut table :data:`SHORTCUTS` is the single source of the key bindings
and of the help panel's text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari_samlabel._napari.bridge import LayerBridge
from napari_samlabel._napari.session import AnnotationSession
from napari_samlabel.core.document import ImageStatus


@dataclass(frozen=True)
class Shortcut:
    """A key binding: napari key names, the action's name, and what it does."""

    keys: tuple[str, ...]
    action: str
    help: str


# Keys chosen against napari's defaults: they are bound on the plugin's own layers (an
# instance keymap wins over the layer class's), so e.g. "a" no longer selects all points
# there, and on the viewer for when another layer is active.
SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut(("a",), "accept", "accept the current object"),
    Shortcut(("Escape",), "discard", "discard the current object (a reopened one goes back)"),
    Shortcut(("Control-z",), "undo", "undo (prompts, accepts, classes, status)"),
    Shortcut(("Control-Shift-z", "Control-y"), "redo", "redo"),
    Shortcut(("n",), "toggle_polarity", "switch next prompts positive / negative"),
    Shortcut(("p",), "points_mode", "click points (Shift+click: one negative point)"),
    Shortcut(("r",), "box_mode", "draw boxes"),
    Shortcut(("t",), "scribble_mode", "draw scribbles (Shift+drag: negative scribble)"),
    Shortcut(tuple(str(d) for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)), "class_key",
             "pick class 1-9, 0 = class 10 (current object)"),
    Shortcut(("c",), "apply_class", "give the selected accepted object the picked class"),
    Shortcut((".", "PageDown"), "next_image", "next image"),
    Shortcut((",", "PageUp"), "previous_image", "previous image"),
    Shortcut(("u",), "next_unfinished", "next unfinished image"),
    Shortcut(("d",), "mark_done", "mark image done and go to the next unfinished"),
    Shortcut(("f",), "toggle_flag", "flag / unflag the image"),
    Shortcut(("Shift-A",), "review_accept", "review: accept the image, go to the next"),
    Shortcut(("Shift-R",), "review_reject",
             "review: reject the image (out of train and val), go to the next"),
    Shortcut(("Shift-W",), "review_needs_work",
             "review: the image needs work (out of train), go to the next"),
)

#: Mouse gestures, listed in the help panel.
MOUSE_HELP: tuple[tuple[str, str], ...] = (
    ("Ctrl+click", "reopen the accepted object under the cursor with its prompts"),
    ("Alt+click", "select the accepted object under the cursor (for 'c')"),
)


class Annotator:
    """Session + layers + shortcuts of one napari viewer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer to annotate in.
    session : AnnotationSession
        The session to drive; its image ``start`` is opened unless one is open already.
    start : int
        Image to open first.
    """

    #: The Review tab's controller (a ``ReviewController``) that the review keys act on.
    review: Any = None

    def __init__(self, viewer: Any, session: AnnotationSession, start: int = 0) -> None:
        self.viewer = viewer
        self.session = session
        self.bridge = LayerBridge(viewer, session)
        self._bind_keys()
        if session.doc is None:
            session.open_image(start)
        else:
            self.bridge._on_image_changed(session.index)

    # -- actions ---------------------------------------------------------------------------------
    def accept(self) -> Any:
        """Accept the current object."""
        return self.session.accept()

    def discard(self) -> None:
        """Discard the current object."""
        self.session.discard()

    def undo(self) -> None:
        """Undo one step."""
        self.session.undo()

    def redo(self) -> None:
        """Redo one step."""
        self.session.redo()

    def toggle_polarity(self) -> None:
        """Switch the polarity of the next prompts."""
        self.bridge.toggle_polarity()

    def points_mode(self) -> None:
        """Select the points layer in add mode."""
        self._activate(self.bridge.points_layer, "add")

    def box_mode(self) -> None:
        """Select the shapes layer in rectangle mode."""
        self._activate(self.bridge.shapes_layer, "add_rectangle")

    def scribble_mode(self) -> None:
        """Select the shapes layer in free-hand path mode."""
        self._activate(self.bridge.shapes_layer, "add_path")

    def pick_class(self, class_id: int) -> None:
        """Pick the class of the current object."""
        if 0 < class_id < len(self.session.classes):
            self.session.select_class(class_id)

    def apply_class(self) -> None:
        """Give the selected accepted object the picked class."""
        oid = self.bridge.selected_object
        doc = self.session.doc
        if oid is not None and doc is not None and any(o.object_id == oid for o in doc.objects):
            self.session.set_object_class(oid, self.session.current_class)

    def next_image(self) -> None:
        """Open the next image."""
        self.session.next_image()

    def previous_image(self) -> None:
        """Open the previous image."""
        self.session.previous_image()

    def next_unfinished(self) -> None:
        """Open the next unfinished image."""
        self.session.next_unfinished()

    def mark_done(self) -> None:
        """Mark the image done and move on."""
        self.session.set_status(ImageStatus.DONE)
        self.session.next_unfinished()

    def toggle_flag(self) -> None:
        """Flag the image as a failure case, or unflag it."""
        s = self.session
        flagged = s.status_of(s.index) == ImageStatus.FLAGGED
        has_objects = bool(s.doc and s.doc.objects)
        back = ImageStatus.IN_PROGRESS if has_objects else ImageStatus.NEW
        s.set_status(back if flagged else ImageStatus.FLAGGED)

    def review_accept(self) -> None:
        """Review: accept the image and go to the next undecided one."""
        self._review("accepted")

    def review_reject(self) -> None:
        """Review: reject the image and go to the next undecided one."""
        self._review("rejected")

    def review_needs_work(self) -> None:
        """Review: mark the image as needing work and go to the next undecided one."""
        self._review("needs_work")

    def _review(self, decision: str) -> None:
        if self.review is None:
            self.session.events.message.emit("no review queue: load one in the Review tab")
        else:
            self.review.decide(decision)

    # -- keys ------------------------------------------------------------------------------------
    def _activate(self, layer: Any, mode: str) -> None:
        self.viewer.layers.selection.active = layer
        layer.mode = mode

    def _handler(self, sc: Shortcut, key: str) -> Callable[..., None]:
        if sc.action == "class_key":
            class_id = 10 if key == "0" else int(key)
            return lambda *_: self.pick_class(class_id)
        method = getattr(self, sc.action)
        return lambda *_: method()

    def _bind_keys(self) -> None:
        targets = [self.viewer, *(layer for layer in self.bridge.owned)]
        for sc in SHORTCUTS:
            for key in sc.keys:
                for target in targets:
                    target.bind_key(key, self._handler(sc, key), overwrite=True)

    def close(self) -> None:
        """Remove the layers and key bindings of this annotator."""
        for sc in SHORTCUTS:
            for key in sc.keys:
                self.viewer.bind_key(key, None, overwrite=True)
        self.bridge.close()
        self.session.close()

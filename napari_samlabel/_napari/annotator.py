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
from napari_samlabel.annotate.review import ReviewController
from napari_samlabel.annotate.session import AnnotationSession
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress


@dataclass(frozen=True)
class Shortcut:
    """A key binding: napari key names, the action's name, and what it does."""

    keys: tuple[str, ...]
    action: str
    help: str


#: Keys of the class shortcuts: 1-9, 0 pick classes 1-10; Alt+1..0 pick classes 11-20.
#: (Not Shift: napari folds Shift into the key, and Shift+1 arrives as "!" or whatever the
#: keyboard layout makes of it.)
DIGITS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
CLASS_KEYS: dict[str, int] = {**{d: i + 1 for i, d in enumerate(DIGITS)},
                              **{f"Alt-{d}": i + 11 for i, d in enumerate(DIGITS)}}

# Keys chosen against napari's defaults: they are bound on the plugin's own layers (an
# instance keymap wins over the layer class's), so e.g. "a" no longer selects all points
# there, and on the viewer for when another layer is active.
SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut(("a",), "accept", "accept the current object"),
    Shortcut(("Escape",), "discard",
             "cancel the box or scribble being drawn; else discard the current object (a "
             "reopened one goes back) and deselect"),
    Shortcut(("Control-z",), "undo", "undo (prompts, accepts, deletes, classes, status)"),
    Shortcut(("Control-Shift-z", "Control-y"), "redo", "redo"),
    Shortcut(("n",), "toggle_polarity", "switch next prompts positive / negative"),
    Shortcut(("p",), "points_mode", "click points (Shift+click: one negative point)"),
    Shortcut(("r",), "box_mode",
             "draw boxes (Shift+drag: a negative box, which cuts its area out of the mask)"),
    Shortcut(("t",), "scribble_mode", "draw scribbles (Shift+drag: negative scribble)"),
    Shortcut(tuple(CLASS_KEYS)[:10], "class_key",
             "pick class 1-9, 0 = class 10 (of the selected accepted object, else of the "
             "current one)"),
    Shortcut(tuple(CLASS_KEYS)[10:], "class_key", "pick class 11-20"),
    Shortcut(("/",), "find_class", "type to find a class by name (Enter picks it)"),
    Shortcut(("Delete", "Backspace"), "delete",
             "delete the selected accepted object (else the selected prompts)"),
    Shortcut(("o",), "toggle_outlines", "accepted objects as outlines / filled"),
    Shortcut(("h",), "toggle_accepted", "hide / show the accepted objects"),
    Shortcut((".", "PageDown"), "next_image", "next image"),
    Shortcut((",", "PageUp"), "previous_image", "previous image"),
    Shortcut(("u",), "next_unfinished", "next unfinished image"),
    Shortcut(("d",), "mark_done", "mark image done and go to the next unfinished"),
    Shortcut(("f",), "toggle_flag", "flag / unflag the image"),
    Shortcut(("Shift-A",), "review_accept",
             "review: accept the image (marks it done), go to the next"),
    Shortcut(("Shift-R",), "review_reject",
             "review: reject the image (out of train and val), go to the next"),
    Shortcut(("Shift-W",), "review_needs_work",
             "review: the image needs work (out of train), go to the next"),
    # Proposals (the Proposals tab; a concept model such as SAM 3 finds them)
    Shortcut(("Shift-F",), "find_all", "proposals: find every instance of the selected class"),
    Shortcut(("Shift-S",), "find_similar",
             "proposals: find instances like the box drawn (r, then drag on one instance)"),
    Shortcut(("Shift-P",), "propose_again",
             "proposals: propose with the trained prompter / segmenter loaded in Propose "
             "with…"),
    Shortcut(("y",), "accept_candidate", "proposals: accept the highlighted candidate"),
    Shortcut(("Shift-Y",), "accept_all_candidates",
             "proposals: accept every candidate shown (one undo step)"),
    Shortcut(("x",), "reject_candidate", "proposals: reject the highlighted candidate"),
    Shortcut(("e",), "refine_candidate",
             "proposals: refine the highlighted candidate with ± points and scribbles (its "
             "mask and logits go on), then a accepts it"),
    Shortcut(("j", "k"), "candidate_key", "proposals: highlight the next / previous candidate"),
)

#: Mouse gestures, listed in the help panel.
MOUSE_HELP: tuple[tuple[str, str], ...] = (
    ("click", "a point, in every tool (a box or scribble needs a drag)"),
    ("Ctrl+click", "reopen the accepted object under the cursor with its prompts"),
    ("Alt+click", "select the accepted object under the cursor (class keys re-class it, "
                  "Delete deletes it); on the background: deselect"),
    ("Objects tab", "click selects, double-click reopens, Delete deletes"),
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

    #: The Review tab's controller that the review keys act on.
    review: ReviewController | None = None

    def __init__(self, viewer: Any, session: AnnotationSession, start: int = 0) -> None:
        self.viewer = viewer
        self.session = session
        self.bridge = LayerBridge(viewer, session)
        #: Called by the "/" key: the dock widget points it at its class filter box.
        self.find_class_hook: Callable[[], None] = lambda: None
        #: Progress of proposal searches (the Proposals tab points it at its progress bar).
        self.proposal_progress: ProgressCallback = no_progress
        self._bind_keys()
        if session.doc is None:
            session.open_image(start)
        else:
            self.bridge._on_image_changed(session.index)

    # -- actions ---------------------------------------------------------------------------------
    def accept(self) -> AnnotatedObject | None:
        """Accept the current object."""
        return self.session.accept()

    def discard(self) -> None:
        """Cancel the stroke being drawn; else discard the current object and deselect."""
        if not self.bridge.cancel_stroke():
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
        """Pick a class: of the selected accepted object, else of the current object."""
        if 0 < class_id < len(self.session.classes):
            self.session.pick_class(class_id)

    def find_class(self) -> None:
        """Start typing a class name (the dock's class filter)."""
        self.find_class_hook()

    def delete(self) -> None:
        """Delete the selected accepted object, else the selected prompts of the layer."""
        if self.session.delete_selected():
            return
        layer = self.viewer.layers.selection.active
        if layer in (self.bridge.points_layer, self.bridge.shapes_layer) and layer.selected_data:
            layer.remove_selected()

    def toggle_outlines(self) -> None:
        """Show accepted objects as outlines or filled."""
        self.bridge.toggle_outlines()

    def toggle_accepted(self) -> None:
        """Hide or show the accepted objects."""
        self.bridge.toggle_accepted()

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
        self.session.mark_done()

    def toggle_flag(self) -> None:
        """Flag the image as a failure case, or unflag it."""
        self.session.toggle_flag()

    def review_accept(self) -> None:
        """Review: accept the image and go to the next undecided one."""
        self._review("accepted")

    def review_reject(self) -> None:
        """Review: reject the image and go to the next undecided one."""
        self._review("rejected")

    def review_needs_work(self) -> None:
        """Review: mark the image as needing work and go to the next undecided one."""
        self._review("needs_work")

    # -- proposals (annotate.proposals; the Proposals tab shows them) ----------------------------
    def find_all(self) -> None:
        """Find every instance of the selected class (a concept model is needed)."""
        self.session.proposals.find_all(progress=self.proposal_progress)

    def find_similar(self) -> None:
        """Find instances like the box drawn (the current object's boxes)."""
        self.session.proposals.find_similar_to_current(progress=self.proposal_progress)

    def propose_again(self) -> None:
        """Propose with the trained source loaded last (Proposals tab → Propose with…)."""
        self.session.proposals.propose_again(progress=self.proposal_progress)

    def accept_candidate(self) -> None:
        """Accept the highlighted candidate."""
        p = self.session.proposals
        if p.selected is not None:
            self._told(p.accept_candidate, p.selected)

    def accept_all_candidates(self) -> None:
        """Accept every visible candidate (one undo step)."""
        self._told(self.session.proposals.accept_all)

    def _told(self, action: Callable[..., Any], *args: Any) -> None:
        """Run a proposal action; a refusal (no class picked ...) becomes a notice."""
        try:
            action(*args)
        except (ValueError, IndexError, KeyError) as exc:
            self.session.notify(str(exc))

    def reject_candidate(self) -> None:
        """Reject the highlighted candidate."""
        p = self.session.proposals
        if p.selected is not None:
            p.reject(p.selected)

    def refine_candidate(self) -> None:
        """Make the highlighted candidate the current object, to refine with prompts."""
        p = self.session.proposals
        if p.selected is not None:
            self._told(p.refine_candidate, p.selected)
            self.points_mode()

    def _review(self, decision: str) -> None:
        if self.review is None:
            self.session.notify("no review queue: load one in the Review tab")
        else:
            self.review.decide(decision)

    # -- keys ------------------------------------------------------------------------------------
    def _activate(self, layer: Any, mode: str) -> None:
        self.viewer.layers.selection.active = layer
        layer.mode = mode

    def _handler(self, sc: Shortcut, key: str) -> Callable[..., None]:
        if sc.action == "class_key":
            class_id = CLASS_KEYS[key]
            return lambda *_: self.pick_class(class_id)
        if sc.action == "candidate_key":
            step = 1 if key == "j" else -1

            def highlight(*_: Any) -> None:
                self.session.proposals.select_next(step)
            return highlight
        method = getattr(self, sc.action)
        return lambda *_: method()

    def _bind_keys(self) -> None:
        targets = [self.viewer, *(layer for layer in self.bridge.owned)]
        for sc in SHORTCUTS:
            for key in sc.keys:
                for target in targets:
                    target.bind_key(key, self._handler(sc, key), overwrite=True)

    def close(self, remove_layers: bool = True) -> None:
        """Remove the layers (unless the window is closing) and key bindings."""
        for sc in SHORTCUTS:
            for key in sc.keys:
                self.viewer.bind_key(key, None, overwrite=True)
        self.bridge.close(remove_layers)
        self.session.close()

"""The bridge between napari layers and an :class:`AnnotationSession` (napari, no Qt widgets).

The bridge creates and owns the plugin's layers:

- ``image``: the open image;
- ``semantic``: accepted objects by class (VOC colours), ``instances``: by instance id;
  both can show as filled areas or as outlines, and be hidden;
- ``current object``: the preview of the object being prompted, in its class colour;
- ``selected object``: the outline of the selected accepted object (hidden without one);
- ``SAM boxes & scribbles`` (Shapes): rectangles are boxes, paths are scribbles;
- ``SAM points`` (Points): clicks; polarity is the ``positive`` feature, the colour follows it.

Layer edits become core prompts and go to :meth:`AnnotationSession.set_prompts` (which
decodes off the GUI thread); session events are rendered back into the layers (undo, redo,
reopen and image changes rewrite the prompt layers from the document). Modifier clicks:
Shift adds a negative prompt, Ctrl/Cmd reopens the accepted object under the cursor, Alt
selects it (then class keys re-class it and Delete deletes it). napari hands mouse
callbacks vispy ``Key`` objects as modifiers; :func:`modifier_names` reads their names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points, Shapes
from napari.layers.base import ActionType
from napari.utils.colormaps import DirectLabelColormap

from napari_samlabel._napari import convert
from napari_samlabel.annotate.display import display_palette
from napari_samlabel.annotate.session import AnnotationSession
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import Point, Prompt, Scribble

POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "magenta"
SELECTED_COLOR = (1.0, 1.0, 0.0, 1.0)
SCRIBBLE_WIDTH = convert.EDGE_WIDTH
OUTLINE_WIDTH = 2
ACCEPTED_OPACITY = 0.45
#: Parts are drawn over their wholes, a little stronger so that they stand out.
PARTS_OPACITY = 0.6
_DONE_ACTIONS = {ActionType.ADDED, ActionType.REMOVED, ActionType.CHANGED}
#: Shapes modes that draw a prompt: a click without a drag in them adds a point instead.
_DRAWING_MODES = frozenset({"add_rectangle", "add_path"})
try:  # how far a press may move and still add a point in napari's add mode (canvas px)
    from napari.layers.points._points_mouse_bindings import DRAG_DIST_THRESHOLD as _DRAG_DIST
except ImportError:  # private in napari: its value since 0.4
    _DRAG_DIST = 5


def _set_visible(layer: Any, visible: bool) -> bool:
    """Show or hide ``layer``; True if that changed it (showing a layer refreshes it)."""
    if layer.visible == visible:
        return False
    layer.visible = visible
    return True


def modifier_names(modifiers: Any) -> set[str]:
    """Names of the modifier keys of a mouse event (vispy ``Key`` objects or strings)."""
    return {str(getattr(m, "name", m)) for m in modifiers}


def class_colormap(classes: ClassTable) -> DirectLabelColormap:
    """Colours of the class indices; background and void transparent.

    The bright display palette (:func:`~napari_samlabel.annotate.display.display_palette`),
    not VOC's dark one, which the export keeps.
    """
    palette = display_palette(len(classes)).astype(np.float32) / 255.0
    colors: dict[Any, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 255: (0, 0, 0, 0)}
    for i in range(1, len(classes)):
        colors[i] = (*palette[i], 1.0)
    return DirectLabelColormap(color_dict=colors)


class LayerBridge:
    """Creates the plugin's layers in ``viewer`` and keeps them in step with ``session``."""

    def __init__(self, viewer: Any, session: AnnotationSession) -> None:
        self.viewer = viewer
        self.session = session
        self._syncing = 0
        self._editing = 0             # inside a layer's own data event
        self._accepted_shown = True   # the "h" key hides the accepted objects
        self._swallow_click = False
        self._one_shot: bool | None = None
        self._shown: tuple[Any, ...] | None = None  # (mask, class, document) on show
        #: How to run a callable once the current napari event is over (the GUI passes a
        #: zero-delay timer; the default runs it at once).
        self.defer: Callable[[Callable[[], None]], Any] = lambda fn: fn()
        #: Called on every mouse press on a prompt layer (the GUI lets the window paint).
        self.pressed: Callable[[], None] = lambda: None
        empty = np.zeros((1, 1), dtype=np.uint8)
        cmap = class_colormap(session.classes)
        self.image_layer = viewer.add_layer(Image(np.zeros((1, 1, 3), np.uint8), name="image",
                                                  rgb=True))
        self.semantic_layer = viewer.add_layer(Labels(empty, name="semantic",
                                                      opacity=ACCEPTED_OPACITY, colormap=cmap))
        self.instance_layer = viewer.add_layer(Labels(empty, name="instances",
                                                      opacity=ACCEPTED_OPACITY, visible=False))
        # Parts (dog/head) have their own map: they never compete with their wholes.
        self.parts_layer = viewer.add_layer(Labels(empty, name="parts", opacity=PARTS_OPACITY,
                                                   colormap=cmap, visible=False))
        self.preview_layer = viewer.add_layer(Labels(empty, name="current object",
                                                     opacity=0.6, colormap=cmap))
        self.selection_layer = viewer.add_layer(Labels(
            empty, name="selected object", opacity=1.0, visible=False,
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0),
                                                     1: SELECTED_COLOR})))
        self.selection_layer.contour = OUTLINE_WIDTH + 1
        self.shapes_layer = viewer.add_layer(Shapes(
            ndim=2, name="SAM boxes & scribbles", features={"positive": np.array([], bool)},
            edge_width=SCRIBBLE_WIDTH, face_color="transparent", edge_color=POSITIVE_COLOR))
        self.points_layer = viewer.add_layer(Points(
            np.empty((0, 2)), name="SAM points", features={"positive": np.array([], bool)},
            face_color="positive", face_color_cycle={True: POSITIVE_COLOR,
                                                      False: NEGATIVE_COLOR},
            border_color="white", size=10))
        for layer in (self.semantic_layer, self.instance_layer, self.parts_layer,
                      self.preview_layer, self.selection_layer):
            layer.editable = False
        self.owned = (self.image_layer, self.semantic_layer, self.instance_layer,
                      self.parts_layer, self.preview_layer, self.selection_layer,
                      self.shapes_layer, self.points_layer)
        # napari recomputes the viewer's dims on each data event of each layer, twice per
        # added point (~7 ms of a click here). Points prompts lie inside the image (others
        # are dropped), so they never change the dims: skip that work for this layer.
        dims_update = getattr(viewer, "_on_layers_change", None)  # private: may go away
        if callable(dims_update):
            self.points_layer.events.data.disconnect(dims_update)
        # First, ahead of napari's other listeners (for shapes, its dims update).
        self.points_layer.events.data.connect(self._on_layer_data, position="first")
        self.shapes_layer.events.data.connect(self._on_layer_data, position="first")
        for layer in (self.points_layer, self.shapes_layer):
            layer.mouse_drag_callbacks.insert(0, self._on_press)
        self.points_layer.mode = "add"
        ev = session.events
        ev.image_changed.connect(self._on_image_changed)
        ev.current_changed.connect(self._on_current_changed)
        ev.objects_changed.connect(self.render_labels)
        ev.selection_changed.connect(self.render_selection)
        ev.polarity_changed.connect(self._on_polarity)
        ev.stroke_preview.connect(self._on_stroke_preview)
        self._set_polarity_defaults()

    @property
    def positive(self) -> bool:
        """Polarity of the next prompt (the session's)."""
        return self.session.positive

    @property
    def selected_object(self) -> int | None:
        """The selected accepted object (the session's)."""
        return self.session.selected

    # -- reading the layers ----------------------------------------------------------------------
    def layer_prompts(self, extra_point: Any = None) -> list[Prompt]:
        """The prompts the layers show, points first, then shapes (layer order).

        ``extra_point``: ``(row, col)`` of a point as napari's add mode is adding it, with
        the polarity it gets there (the layer's feature default).
        """
        pts = self.points_layer
        data = pts.data
        positive = pts.features["positive"].to_numpy(bool) if len(data) else np.zeros(0, bool)
        if extra_point is not None:
            data = np.append(data, np.atleast_2d(extra_point), axis=0)
            positive = np.append(positive, bool(pts.feature_defaults["positive"].iloc[0]))
        out: list[Prompt] = [*convert.points_to_prompts(data, positive)]
        sh = self.shapes_layer
        if sh.nshapes:
            # A shape napari has just started (a zero-size box, a one-vertex path) is no
            # prompt yet: it becomes one once it has an extent (or a point, if it never does).
            out += [p for p in convert.shapes_to_prompts(
                sh.data, sh.shape_type, sh.features["positive"].to_numpy(bool),
                sh.edge_width) if not convert.degenerate(p)]
        return out

    def _on_layer_data(self, event: Any) -> None:
        if self._syncing or getattr(event, "action", ActionType.CHANGED) not in _DONE_ACTIONS:
            return
        if event.source is self.shapes_layer:
            self._recolor_shapes()
        if self._one_shot is not None:
            self._one_shot = None
            self._set_polarity_defaults()
        if self._swallow_click:
            # The click that reopened or selected an object adds no prompt: put the
            # layers back to the document once napari has finished adding.
            self._swallow_click = False
            self.defer(lambda: self.render_prompts(force=True))
            return
        doc = self.session.doc
        if doc is None:
            return
        prompts = convert.merge_order(doc.current.prompts, self.layer_prompts())
        self._editing += 1
        try:
            kept = self.session.set_prompts(prompts)
        finally:
            self._editing -= 1
        if len(kept) != len(prompts):
            # Prompts outside the image were dropped: take them off the layers too, once
            # napari has finished its own handling of the edit.
            self.defer(lambda: self.render_prompts(force=True))

    # -- modifier clicks -------------------------------------------------------------------------
    def _on_press(self, layer: Any, event: Any) -> Iterator[None]:
        """Interpret modifier clicks; runs before the layer's own mode (which may add).

        A click that napari's add mode turns into a point (released within its drag
        threshold) is decoded from the release on, while napari is still adding the point
        (:meth:`AnnotationSession.anticipate`): this callback's release part runs before
        the add mode's.
        """
        self.pressed()
        mods = modifier_names(event.modifiers)
        self._swallow_click = False
        self._one_shot = None
        if mods & {"Control", "Meta", "Alt"}:
            self._swallow_click = True
            row, col = layer.world_to_data(event.position)[-2:]
            self.click_object(row, col, reopen="Alt" not in mods)
        elif "Shift" in mods:
            self._one_shot = not self.positive   # this one prompt has the other polarity
            self._set_polarity_defaults(self._one_shot)
        else:
            self._set_polarity_defaults()
        if self._swallow_click:
            return
        drawing = layer is self.shapes_layer and str(layer.mode) in _DRAWING_MODES
        if not drawing and (layer is not self.points_layer or str(layer.mode) != "add"):
            return
        positive = self.positive if self._one_shot is None else self._one_shot
        doc = self.session.doc
        before = () if doc is None else doc.current.prompts
        start = np.asarray(event.pos, dtype=float)
        yield
        while event.type == "mouse_move":
            if drawing and str(layer.mode) == "add_path":
                self._preview_stroke(before, positive)
            yield
        if np.linalg.norm(start - np.asarray(event.pos, dtype=float)) >= _DRAG_DIST:
            return
        coords = layer.world_to_data(event.position)
        if drawing:
            # A plain click in box or scribble mode is a point, not a zero-size box or a
            # one-vertex path left open: once napari has finished with it (its release
            # handler runs after this one), drop that shape and add the point.
            self.defer(lambda: self._click_as_point(before, coords, positive))
        else:
            self.anticipate_point(coords)

    def _preview_stroke(self, before: tuple[Prompt, ...], positive: bool) -> None:
        """Decode the scribble drawn so far (its mask shows before the stroke ends).

        napari keeps the path being drawn in the Shapes layer's private ``_data_view``
        and ``_moving_value`` (checked by ``tests/gui``); without them there is no preview.
        """
        sh = self.shapes_layer
        index = getattr(sh, "_moving_value", (None,))[0]
        if not getattr(sh, "_is_creating", False) or index is None:
            return
        try:
            verts = np.asarray(sh._data_view.shapes[index].data, dtype=float)[:, -2:]
        except (AttributeError, IndexError):
            return
        if len(verts) < 3:
            return
        stroke = Scribble(verts, positive, float(sh.current_edge_width))
        if not convert.degenerate(stroke):
            self.session.preview_stroke((*before, stroke))

    def _on_stroke_preview(self, mask: Any) -> None:
        """Show the mask of the stroke being drawn, in the current object's layer."""
        doc = self.session.doc
        if doc is None or mask is None or mask.shape != doc.shape or \
                not getattr(self.shapes_layer, "_is_creating", False):
            return  # the stroke ended meanwhile: its real answer follows
        layer = self.preview_layer
        buf = layer.data
        if buf.shape != doc.shape:
            buf = np.zeros(doc.shape, dtype=np.uint8)
            np.multiply(mask, np.uint8(doc.current.class_id), out=buf)
            layer.data = buf
        else:
            np.multiply(mask, np.uint8(doc.current.class_id), out=buf)
            layer.refresh(extent=False)
        self._shown = None  # the next render_preview shows the document's mask again
        _set_visible(layer, True)

    def _click_as_point(self, before: tuple[Prompt, ...], coords: Any, positive: bool) -> None:
        """The prompts before the click, and a point where it was (the shape goes)."""
        self.cancel_stroke()  # a path napari keeps open for more clicks
        if self.session.doc is None:
            return
        r, c = (float(x) for x in np.asarray(coords, dtype=float)[-2:])
        self.session.set_prompts((*before, Point((r, c), positive)))
        self.render_prompts(force=True)

    def anticipate_point(self, coords: Any) -> bool:
        """Start decoding the prompts the layers will show once the point ``coords`` is added.

        Returns True if a decode started (see :meth:`AnnotationSession.anticipate`).
        """
        doc = self.session.doc
        if doc is None or self._syncing:
            return False
        prompts = convert.merge_order(doc.current.prompts,
                                      self.layer_prompts(extra_point=coords[-2:]))
        return self.session.anticipate(prompts)

    def click_object(self, row: float, col: float, reopen: bool = True) -> int | None:
        """Reopen (or only select) the accepted object at ``(row, col)``; returns its id.

        Selecting where there is no object deselects.
        """
        oid = self.session.object_at(row, col)
        if reopen:
            if oid is not None:
                self.session.reopen(oid)
        else:
            self.session.select_object(oid)
        return oid

    # -- drawing -----------------------------------------------------------------------------
    def cancel_stroke(self) -> bool:
        """Drop the box or scribble being drawn, if any; True when there was one.

        napari keeps a drawing in progress in the Shapes layer's drag generator and its
        ``_is_creating`` flag (private; checked by ``tests/gui``): both are reset, and the
        layer is rewritten from the document, which never saw the unfinished stroke.
        """
        sh = self.shapes_layer
        drags = getattr(sh, "_mouse_drag_gen", {})
        if not (getattr(sh, "_is_creating", False) or drags):
            return False
        for gen in list(drags.values()):
            gen.close()
        drags.clear()
        getattr(sh, "_persisted_mouse_event", {}).clear()
        with self._sync():
            if getattr(sh, "_is_creating", False) and sh._moving_value[0] is not None:
                sh._finish_drawing()
            sh._is_creating = False
        self.render_prompts(force=True)
        self.render_preview()  # a preview of the cancelled stroke goes
        return True

    # -- polarity --------------------------------------------------------------------------------
    def toggle_polarity(self) -> bool:
        """Switch the polarity of the next prompts; returns the new polarity."""
        return self.session.toggle_polarity()

    def _on_polarity(self, positive: bool) -> None:
        self._set_polarity_defaults()

    def _set_polarity_defaults(self, positive: bool | None = None) -> None:
        pos = self.positive if positive is None else positive
        for layer in (self.points_layer, self.shapes_layer):
            layer.feature_defaults = {"positive": pos}
        # Points take their colour from the feature; shapes are recoloured after each edit,
        # this only shows the right colour while drawing (napari also gives it to the
        # selected shapes, e.g. the one just drawn: recolour them from their features).
        self.shapes_layer.current_edge_color = POSITIVE_COLOR if pos else NEGATIVE_COLOR
        self._recolor_shapes()

    def _recolor_shapes(self) -> None:
        sh = self.shapes_layer
        if not sh.nshapes:
            return
        pos = sh.features["positive"].to_numpy(bool)
        colors = [POSITIVE_COLOR if p else NEGATIVE_COLOR for p in pos]
        with self._sync():
            sh.edge_color = colors

    # -- display of the accepted objects ------------------------------------------------------
    @property
    def outlines(self) -> bool:
        """True when accepted objects show as outlines rather than filled areas."""
        return bool(self.semantic_layer.contour)

    def set_outlines(self, on: bool) -> None:
        """Show accepted objects as outlines (opaque) or as filled areas (translucent)."""
        for layer, filled in ((self.semantic_layer, ACCEPTED_OPACITY),
                              (self.instance_layer, ACCEPTED_OPACITY),
                              (self.parts_layer, PARTS_OPACITY)):
            layer.contour = OUTLINE_WIDTH if on else 0
            layer.opacity = 1.0 if on else filled

    def toggle_outlines(self) -> bool:
        """Switch between outlines and filled areas; returns True for outlines."""
        self.set_outlines(not self.outlines)
        return self.outlines

    def toggle_accepted(self) -> bool:
        """Hide or show the accepted objects; returns True when they are shown."""
        self._accepted_shown = not self._accepted_shown
        doc = self.session.doc
        _set_visible(self.semantic_layer, self._accepted_shown and bool(doc and doc.wholes))
        _set_visible(self.parts_layer, self._accepted_shown and bool(doc and doc.parts))
        return self._accepted_shown

    # -- rendering -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _sync(self) -> Iterator[None]:
        self._syncing += 1
        try:
            yield
        finally:
            self._syncing -= 1

    def _on_image_changed(self, index: int) -> None:
        s = self.session
        self.image_layer.data = s.image
        self.image_layer.name = "image"
        self.image_layer.metadata["image_id"] = s.image_id()
        self.render_labels()
        self.render_prompts()
        self.render_preview()
        self.viewer.reset_view()

    def _on_current_changed(self) -> None:
        if not self._editing:  # the layers already show an edit made in them
            self.render_prompts()
        self.render_preview()

    def render_prompts(self, force: bool = False) -> None:
        """Rewrite the prompt layers from the document when they differ from it."""
        doc = self.session.doc
        if doc is None:
            return
        prompts = doc.current.prompts
        if not force and convert.same_prompts(prompts, self.layer_prompts()):
            return
        pts = convert.prompts_to_points(prompts)
        shp = convert.prompts_to_shapes(prompts)
        with self._sync():
            layer = self.points_layer
            layer.selected_data = set()
            layer.data = pts.data
            layer.features = pd.DataFrame({"positive": pts.positive})
            layer.face_color = "positive"
            sh = self.shapes_layer
            sh.selected_data = set()
            sh.data = []
            if shp.data:
                sh.add(shp.data, shape_type=shp.shape_types, edge_width=list(shp.widths))
                sh.features = pd.DataFrame({"positive": shp.positive})
        self._recolor_shapes()
        self._set_polarity_defaults()

    def render_preview(self) -> None:
        """Show the current object's mask in its class colour (hidden without a mask).

        The preview layer keeps one buffer per image and is updated in place: assigning a
        new array to a Labels layer re-evaluates the viewer's dims and transforms (about
        10-25 ms a click, measured), a refresh does not. A hidden layer costs no rendering.
        """
        doc = self.session.doc
        if doc is None:
            return
        cur = doc.current
        shown = (cur.mask, cur.class_id, doc)
        old = self._shown
        if old is not None and old[0] is cur.mask and old[1] == cur.class_id and old[2] is doc:
            return  # a prompt edit keeps the old mask until its prediction arrives
        self._shown = shown
        layer = self.preview_layer
        buf = layer.data
        fresh = buf.shape != doc.shape
        if fresh:
            buf = np.zeros(doc.shape, dtype=np.uint8)
        if cur.mask is None:
            buf[...] = 0
        else:
            np.multiply(cur.mask, np.uint8(cur.class_id), out=buf)
        if fresh:
            layer.data = buf
        visible = cur.mask is not None
        if not _set_visible(layer, visible) and visible and not fresh:
            layer.refresh(extent=False)

    def render_labels(self) -> None:
        """Show the accepted objects in the semantic and instance layers."""
        doc = self.session.doc
        if doc is None:
            return
        semantic, instance = doc.label_maps()
        self.semantic_layer.data = np.array(semantic)
        self.instance_layer.data = np.array(instance)
        # An empty Labels layer still costs a full-canvas pass per frame: hide it.
        _set_visible(self.semantic_layer, self._accepted_shown and bool(doc.wholes))
        has_parts = bool(doc.parts)
        if has_parts:
            self.parts_layer.data = np.array(doc.part_maps()[0])
        _set_visible(self.parts_layer, self._accepted_shown and has_parts)
        self.render_selection()

    def render_selection(self, *_: Any) -> None:
        """Outline the selected accepted object; hide the layer without one."""
        s = self.session
        oid = s.selected
        if oid is None or s.doc is None:
            _set_visible(self.selection_layer, False)
            return
        self.selection_layer.data = s.doc.get(oid).mask.astype(np.uint8)
        _set_visible(self.selection_layer, True)

    def close(self, remove_layers: bool = True) -> None:
        """Disconnect from the session and remove the plugin's layers.

        ``remove_layers=False`` when the window is closing: each removal repaints the
        canvas, seconds in all while an encode holds the CPU.
        """
        ev = self.session.events
        ev.image_changed.disconnect(self._on_image_changed)
        ev.current_changed.disconnect(self._on_current_changed)
        ev.objects_changed.disconnect(self.render_labels)
        ev.selection_changed.disconnect(self.render_selection)
        ev.polarity_changed.disconnect(self._on_polarity)
        ev.stroke_preview.disconnect(self._on_stroke_preview)
        for layer in self.owned if remove_layers else ():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

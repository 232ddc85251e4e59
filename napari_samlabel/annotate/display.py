"""What the dock widget's panels show of a session, as plain text and rows (no Qt).

The panels in :mod:`napari_samlabel._napari` only put these into widgets: the status line,
the navigator's image labels, the class list, the objects table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_samlabel.core.document import ImageStatus

if TYPE_CHECKING:
    from napari_samlabel.annotate.session import AnnotationSession
    from napari_samlabel.core.classes import ClassTable

#: How the navigator marks each image status.
STATUS_MARK: dict[ImageStatus, str] = {
    ImageStatus.NEW: "○", ImageStatus.IN_PROGRESS: "◐",
    ImageStatus.DONE: "●", ImageStatus.FLAGGED: "⚑"}


def status_lines(session: AnnotationSession) -> list[str]:
    """The session part of the status line: image and objects, class, polarity, selection.

    Empty while no image is open.
    """
    s, doc = session, session.doc
    if doc is None:
        return []
    line = (f"class {s.classes.name(s.current_class)} ({s.current_class}) · next "
            f"prompt {'positive' if s.positive else 'NEGATIVE'}")
    if s.selected is not None:
        obj = doc.get(s.selected)
        line += f" · selected #{obj.object_id} {s.classes.name(obj.class_id)}"
    return [f"{s.index + 1}/{len(s)} {s.image_id()} · {count(len(doc.objects), 'object')}",
            line]


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: "1 object", "2 objects", "0 objects"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def display_palette(n: int) -> np.ndarray:
    """Colours to draw classes 0..n-1 on photographs (``(n, 3)`` uint8; 0 is black).

    VOC's palette is dark (cat is (64, 0, 0), nearly invisible on a photo): the window draws
    with saturated, bright colours whose hues step by the golden angle, so neighbouring
    class ids differ. Only the display uses them; the export keeps VOC's palette.
    """
    i = np.arange(n, dtype=np.float64)
    hue = (i * 0.618033988749895 + 0.02) % 1.0
    value = np.where(i % 2 == 1, 1.0, 0.85)          # every other class a little darker
    sat = np.full(n, 0.9)
    h6 = hue * 6.0
    k = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = value * (1 - sat), value * (1 - f * sat), value * (1 - (1 - f) * sat)
    table = np.select([k[:, None] == j for j in range(6)],
                      [np.stack(c, axis=1) for c in ((value, t, p), (q, value, p),
                                                     (p, value, t), (p, q, value),
                                                     (t, p, value), (value, p, q))])
    out = np.round(table * 255).astype(np.uint8)
    if n:
        out[0] = 0
    return out


def image_label(session: AnnotationSession, index: int) -> str:
    """The navigator's label of image ``index``: status mark, id and status."""
    status = session.status_of(index)
    return (f"{STATUS_MARK[status]}  {session.image_id(index)}   "
            f"({status.value.replace('_', ' ')})")


def class_label(classes: ClassTable, class_id: int, key: str = "") -> str:
    """The class list's label: its shortcut key, indented by depth, the last name part."""
    name = classes.names[class_id]
    return f"{key:6s}{'    ' * name.count('/')}{name.rsplit('/', 1)[-1]}"


def highlighted_class(session: AnnotationSession) -> int:
    """The class to highlight: of the selected accepted object, else the picked class."""
    if session.selected is not None and session.doc is not None:
        return session.doc.get(session.selected).class_id
    return session.current_class


@dataclass(frozen=True)
class AcceptedRow:
    """One row of the objects table: an accepted object of the open image."""

    object_id: int
    class_id: int
    name: str
    """Class name; a part also names the whole it belongs to, ``dog/head (of #3)``."""
    area: int
    score: float | None

    @property
    def cells(self) -> tuple[str, str, str, str]:
        """The row's texts: class, id, area, score (empty without one)."""
        score = "" if self.score is None else f"{self.score:.2f}"
        return self.name, str(self.object_id), str(self.area), score


def accepted_rows(session: AnnotationSession) -> list[AcceptedRow]:
    """The open image's accepted objects, in accept order (none while no image is open)."""
    doc = session.doc
    if doc is None:
        return []
    rows = []
    for obj in doc.objects:
        name = session.classes.name(obj.class_id)
        parent = doc.parent_of(obj.object_id)
        if parent is not None:  # a part: say which whole it belongs to
            name = f"{name} (of #{parent})"
        rows.append(AcceptedRow(obj.object_id, obj.class_id, name, obj.area, obj.score))
    return rows

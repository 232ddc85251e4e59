"""The result type of every weak-label reader, and the error they raise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import (
    Box,
    ObjectPrompts,
    Point,
    Prompt,
    Scribble,
    in_image,
    prompt_from_dict,
)

KINDS = ("points", "scribbles", "boxes", "cams", "tags", "text")


class WeakLabelError(ValueError):
    """Bad weak-label content; the message names the file and, where it applies, the place.

    Parameters
    ----------
    path : str or pathlib.Path
        The file with the problem.
    problem : str
        What is wrong, in words a user can act on.
    where : str, optional
        The line or element (``"line 3"``, ``"<object> #2"``, ``"image '2008_000003', entry 4"``).
    image_id : str, optional
        The image the problem belongs to, when known (a dataset file holds many images;
        :func:`~napari_samlabel.io.weak.read_weak_labels` reports failures per image).
    """

    def __init__(self, path: str | Path, problem: str, where: str | None = None,
                 image_id: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.where = where
        self.image_id = image_id
        place = f" ({where})" if where else ""
        super().__init__(f"{self.path}{place}: {problem}")


def negative(prompt: Prompt) -> Prompt | None:
    """Return ``prompt`` as a negative prompt, or None for a box (SAM has no negative box)."""
    if isinstance(prompt, Point):
        return Point(prompt.rc, positive=False)
    if isinstance(prompt, Scribble):
        return Scribble(prompt.path, positive=False, width=prompt.width)
    return None


@dataclass(frozen=True)
class WeakLabels:
    """The weak labels of one image, as core prompts in napari ``(row, col)`` pixels.

    Attributes
    ----------
    image_id : str
        The image's id (file stem, as in VOC ``JPEGImages/<id>.jpg``).
    kind : str
        ``"points"``, ``"scribbles"``, ``"boxes"`` or ``"cams"``.
    objects : tuple of ObjectPrompts
        The labelled objects as the source gives them, with positive prompts and a class
        index >= 1: one per clicked object (points: one per ``(cls, rank)``), one per scribble
        line / polygon / connected stroke, one per box, one per CAM class. ``object_id`` runs
        1..N in this order. Objects of the same class appear in the source's order (rank for
        points, CAM value for CAM peaks), which is the order iterative policies feed them in.
    background : tuple of Prompt
        Negative prompts labelled background (class 0 points and scribbles).
    source : str
        The file(s) the labels were read from (for error messages and provenance).
    image_shape : tuple of int or None
        ``(height, width)`` when the source states it (VOC XML ``<size>``, CAM arrays,
        scribble PNGs); None otherwise.
    origins : tuple of str
        Where each object is in its source (``"line 3"``, ``"<object> #2"``,
        ``"image 'a', entries 0, 4"``, ``"channel 1"``), parallel to ``objects``; empty when
        unknown. Error messages of the pipeline name objects by it.
    background_origins : tuple of str
        The same for ``background``.

    Notes
    -----
    The pseudo-labelling pipeline works either per object (boxes: one SAM call per box) or
    per class (points and scribbles in the seed paper: all prompts of a class, fed
    iteratively, give the class's mask). :meth:`by_class` merges the objects of each class
    into one :class:`ObjectPrompts` whose ``object_id`` is the class index, and
    :meth:`negatives_for` gives the prompts usable as negatives for a class: the background
    prompts plus every other class's points and scribbles turned negative.
    """

    image_id: str
    kind: str
    objects: tuple[ObjectPrompts, ...] = ()
    background: tuple[Prompt, ...] = ()
    source: str = ""
    image_shape: tuple[int, int] | None = field(default=None)
    origins: tuple[str, ...] = ()
    background_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown weak-label kind {self.kind!r}; expected one of {KINDS}")
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "background", tuple(self.background))
        object.__setattr__(self, "origins", tuple(str(o) for o in self.origins))
        object.__setattr__(self, "background_origins",
                           tuple(str(o) for o in self.background_origins))
        for name, items in (("origins", self.objects), ("background_origins",
                                                        self.background)):
            have = len(getattr(self, name))
            if have not in (0, len(items)):
                raise ValueError(f"{self.image_id!r}: {have} {name} for {len(items)} prompts")
        for obj in self.objects:
            if obj.class_id < 1:
                raise ValueError(f"object {obj.object_id} of {self.image_id!r} has class "
                                 f"{obj.class_id}; background prompts belong in `background`")
        if any(getattr(p, "positive", True) for p in self.background):
            raise ValueError(f"background prompts of {self.image_id!r} must be negative")

    @property
    def class_ids(self) -> list[int]:
        """Sorted class indices that have at least one object."""
        return sorted({o.class_id for o in self.objects})

    def objects_of(self, class_id: int) -> list[ObjectPrompts]:
        """The objects of one class, in source order."""
        return [o for o in self.objects if o.class_id == class_id]

    def by_class(self) -> dict[int, ObjectPrompts]:
        """Merge the objects of each class into one "class object".

        Returns
        -------
        dict of int to ObjectPrompts
            Keyed by class index (sorted); each value has ``object_id == class_id`` and the
            prompts of the class's objects concatenated in source order.
        """
        merged: dict[int, ObjectPrompts] = {}
        for cid in self.class_ids:
            prompts = tuple(p for o in self.objects_of(cid) for p in o.prompts)
            merged[cid] = ObjectPrompts(cid, cid, prompts)
        return merged

    def negatives_for(self, class_id: int, *, include_background: bool = True,
                      other_classes: bool = True) -> tuple[Prompt, ...]:
        """Prompts usable as negatives when segmenting ``class_id``.

        Parameters
        ----------
        class_id : int
            The class being segmented.
        include_background : bool
            Include the background (class 0) prompts.
        other_classes : bool
            Include the points and scribbles of every other class, turned negative. Boxes
            of other classes are left out: SAM has no negative box.

        Returns
        -------
        tuple of Prompt
            Negative prompts, background first, then other classes in object order.
        """
        out: list[Prompt] = list(self.background) if include_background else []
        if other_classes:
            for obj in self.objects:
                if obj.class_id == class_id:
                    continue
                out.extend(n for n in map(negative, obj.prompts) if n is not None)
        return tuple(out)

    def merged_with(self, other: WeakLabels) -> WeakLabels:
        """Combine the labels of the same image read from two files (objects renumbered).

        Origins are prefixed with their file's name, so that a message still says which
        file an object came from.
        """
        if other.image_id != self.image_id or other.kind != self.kind:
            raise ValueError(f"cannot merge {self.kind} of {self.image_id!r} with "
                             f"{other.kind} of {other.image_id!r}")
        objects = renumber(self.objects + other.objects)
        sources = ", ".join(s for s in (self.source, other.source) if s)
        a, b = self._tagged(), other._tagged()
        return replace(self, objects=objects,
                       background=self.background + other.background, source=sources,
                       image_shape=self.image_shape or other.image_shape,
                       origins=a[0] + b[0], background_origins=a[1] + b[1])

    def _tagged(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Origins as ``"file: where"`` (once per file; a merged label keeps its own)."""
        single = bool(self.source) and ", " not in self.source
        name = Path(self.source).name if single else ""

        def tag(origins: tuple[str, ...], n: int, what: str) -> tuple[str, ...]:
            items = origins or tuple(f"{what} {i}" for i in range(1, n + 1))
            return tuple(f"{name}: {o}" for o in items) if name else items

        return (tag(self.origins, len(self.objects), "object"),
                tag(self.background_origins, len(self.background), "background prompt"))

    def where_is(self, index: int) -> str:
        """Name object ``index`` (0-based) for messages: ``"object 2 (line 3, class 15)"``."""
        o = self.objects[index]
        origin = f"{self.origins[index]}, " if self.origins else ""
        return f"object {o.object_id} ({origin}class {o.class_id})"

    def describe_unit(self, class_id: int, classes: ClassTable | None = None) -> str:
        """Name the class unit of a by-class policy: its class and where its objects are.

        ``"class 15 (person): line 1, line 4"``.
        """
        name = classes.name(class_id) if classes is not None and class_id < len(classes) \
            else None
        where = [self.origins[i] if self.origins else f"object {o.object_id}"
                 for i, o in enumerate(self.objects) if o.class_id == class_id]
        return (f"class {class_id}" + (f" ({name})" if name else "")
                + (f": {', '.join(where)}" if where else ""))

    def check_within(self, shape: tuple[int, int]) -> None:
        """Check that the prompts fit an image of ``shape`` ``(height, width)``.

        Readers cannot know the image size; the pipeline calls this once it has loaded the
        image. Points may lie up to half a pixel outside; a box or a scribble must touch the
        image (the policies clip the rest: hand-drawn strokes often run past the border). The
        usual cause of a failure is swapped x/y or the wrong image.

        Raises
        ------
        WeakLabelError
            Naming the source file, the image and the first offending object.
        """
        h, w = float(shape[0]), float(shape[1])
        if self.image_shape is not None and tuple(self.image_shape) != tuple(shape[:2]):
            raise WeakLabelError(self.source or self.image_id,
                                 f"labels are for a {self.image_shape[1]} x "
                                 f"{self.image_shape[0]} image but image {self.image_id!r} "
                                 f"is {int(w)} x {int(h)} (width x height)")
        items = [(self.where_is(i), p) for i, o in enumerate(self.objects) for p in o.prompts]
        items += [(f"background prompt {k + 1}"
                   + (f" ({self.background_origins[k]})" if self.background_origins else ""), p)
                  for k, p in enumerate(self.background)]
        for where, p in items:
            if isinstance(p, Box):
                bad = (p.top_left[0] > h - 0.5 or p.top_left[1] > w - 0.5
                       or p.bottom_right[0] < -0.5 or p.bottom_right[1] < -0.5)
            elif isinstance(p, Scribble):
                bad = not in_image(p, (int(h), int(w)))
            else:
                rc = np.asarray(p.rc).reshape(-1, 2)
                bad = bool(((rc < -0.5) | (rc > np.array([h, w]) - 0.5)).any())
            if bad:
                raise WeakLabelError(self.source or self.image_id,
                                     f"{type(p).__name__.lower()} lies outside the "
                                     f"{int(w)} x {int(h)} image {self.image_id!r} "
                                     "(swapped x/y or the wrong image?)", where)

    def describe(self, classes: ClassTable | None = None) -> str:
        """One line: image id, kind and the prompt count per class (by name if a table is given)."""
        parts = []
        for cid, obj in self.by_class().items():
            name = classes.name(cid) if classes is not None else str(cid)
            parts.append(f"{name}: {len(self.objects_of(cid))} obj/{len(obj.prompts)} prompts")
        if self.background:
            parts.append(f"background: {len(self.background)} prompts")
        return f"{self.image_id} [{self.kind}] " + ("; ".join(parts) or "no labels")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready representation (provenance of a pseudo-label run)."""
        return {"image_id": self.image_id, "kind": self.kind,
                "objects": [o.to_dict() for o in self.objects],
                "background": [p.to_dict() for p in self.background],
                "source": self.source,
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "origins": list(self.origins),
                "background_origins": list(self.background_origins)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeakLabels:
        """Rebuild from :meth:`to_dict` output; raises ``ValueError`` on bad content."""
        try:
            shape = data.get("image_shape")
            return cls(str(data["image_id"]), str(data["kind"]),
                       tuple(ObjectPrompts.from_dict(o) for o in data.get("objects", [])),
                       tuple(prompt_from_dict(p) for p in data.get("background", [])),
                       str(data.get("source", "")),
                       (int(shape[0]), int(shape[1])) if shape else None,
                       tuple(data.get("origins", ())),
                       tuple(data.get("background_origins", ())))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"bad weak-label record: {exc!r}") from exc


def renumber(objects: Iterable[ObjectPrompts]) -> tuple[ObjectPrompts, ...]:
    """Give objects the ids 1..N in their current order."""
    return tuple(replace(o, object_id=i) for i, o in enumerate(objects, start=1))


def resolve_class(classes: ClassTable, value: Any, path: str | Path, where: str) -> int:
    """Turn a class given as an index (int or digit string) or a name into a table index.

    Raises
    ------
    WeakLabelError
        Naming ``path`` and ``where`` when the class is not in ``classes``.
    """
    if isinstance(value, bool):
        raise WeakLabelError(path, f"class must be an index or a name, got {value!r}", where)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, str):
        value = value.strip()
    if not isinstance(value, (int, str)):
        raise WeakLabelError(path, f"class must be an index or a name, got {value!r}", where)
    try:
        return classes.index(value)
    except KeyError as exc:
        if isinstance(value, str):
            # Tolerate case differences ("Cat" for "cat") when unambiguous.
            folded = [i for i, n in enumerate(classes.names) if n.lower() == value.lower()]
            if len(folded) == 1:
                return folded[0]
        raise WeakLabelError(path, str(exc.args[0]), where) from None




def per_image(data: Mapping[str, Any], read: Callable[[str, Any], WeakLabels],
              on_error: Callable[[WeakLabelError], None] | None) -> dict[str, WeakLabels]:
    """Read each image of a dataset file.

    With ``on_error``, a bad image is reported and left out instead of failing the file.
    """
    out: dict[str, WeakLabels] = {}
    for key, value in data.items():
        try:
            out[str(key)] = read(str(key), value)
        except WeakLabelError as exc:
            if on_error is None:
                raise
            exc.image_id = str(key)
            on_error(exc)
    return out

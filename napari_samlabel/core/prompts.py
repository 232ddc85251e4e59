"""Prompt vocabulary: points, boxes and scribbles, positive or negative.

All coordinates are napari's ``(row, col)`` (see :mod:`napari_samlabel.core.coords`). Prompts
are immutable values; an :class:`ObjectPrompts` groups the prompts of one object (its id and
class) in the order they were given, which iterative prompt policies rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Point:
    """A click at ``(row, col)``; ``positive=False`` marks background."""

    rc: tuple[float, float]
    positive: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready representation."""
        return {"type": "point", "rc": [float(self.rc[0]), float(self.rc[1])],
                "positive": bool(self.positive)}


@dataclass(frozen=True)
class Box:
    """An axis-aligned box given by two opposite corners in ``(row, col)``.

    The corners are normalised on construction so that ``top_left <= bottom_right``.
    A positive box is SAM's box prompt. SAM has no negative box, so a negative box
    (``positive=False``) is an *exclusion region*: the object's mask is cut out of it (see
    :mod:`napari_samlabel.engine.policies`). Records written before boxes had a polarity
    read as positive.
    """

    top_left: tuple[float, float]
    bottom_right: tuple[float, float]
    positive: bool = True

    def __post_init__(self) -> None:
        r0, r1 = sorted((float(self.top_left[0]), float(self.bottom_right[0])))
        c0, c1 = sorted((float(self.top_left[1]), float(self.bottom_right[1])))
        object.__setattr__(self, "top_left", (r0, c0))
        object.__setattr__(self, "bottom_right", (r1, c1))
        object.__setattr__(self, "positive", bool(self.positive))

    def pixel_region(self, shape: tuple[int, int]) -> np.ndarray:
        """``H x W`` bool: the pixels whose centres lie in the box (clipped to the image)."""
        out = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
        (r0, c0), (r1, c1) = self.top_left, self.bottom_right
        rs, re = max(0, int(np.ceil(r0))), min(out.shape[0], int(np.floor(r1)) + 1)
        cs, ce = max(0, int(np.ceil(c0))), min(out.shape[1], int(np.floor(c1)) + 1)
        if re > rs and ce > cs:
            out[rs:re, cs:ce] = True
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready representation."""
        return {"type": "box", "top_left": list(self.top_left),
                "bottom_right": list(self.bottom_right), "positive": bool(self.positive)}


@dataclass(frozen=True, eq=False)
class Scribble:
    """A polyline of ``(row, col)`` vertices drawn with a brush ``width`` in pixels."""

    path: np.ndarray
    positive: bool = True
    width: float = 1.0

    def __post_init__(self) -> None:
        path = np.asarray(self.path, dtype=np.float32).reshape(-1, 2)
        if len(path) == 0:
            raise ValueError("a scribble needs at least one vertex")
        path.setflags(write=False)
        object.__setattr__(self, "path", path)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Scribble) and self.positive == other.positive
                and self.width == other.width and np.array_equal(self.path, other.path))

    def __hash__(self) -> int:
        return hash((self.path.tobytes(), self.positive, self.width))

    def pixels(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Return the integer ``(row, col)`` pixels the scribble covers, without repeats.

        Parameters
        ----------
        shape : tuple of int, optional
            Image ``(height, width)``; pixels outside are dropped.

        Returns
        -------
        numpy.ndarray
            ``(M, 2)`` ``int64`` array in drawing order (first occurrence kept).
        """
        from skimage.draw import disk, line

        verts = np.rint(self.path).astype(np.int64)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        if len(verts) == 1:
            rows.append(verts[:1, 0])
            cols.append(verts[:1, 1])
        for (r0, c0), (r1, c1) in zip(verts[:-1], verts[1:], strict=True):
            rr, cc = line(int(r0), int(c0), int(r1), int(c1))
            rows.append(rr)
            cols.append(cc)
        pix = np.stack([np.concatenate(rows), np.concatenate(cols)], axis=1)
        radius = self.width / 2.0
        if radius > 1.0:
            # Thick brush: stamp a disk on every centre-line pixel.
            r_off, c_off = disk((0, 0), radius)
            offsets = np.stack([r_off, c_off], axis=1)
            pix = (pix[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
        if shape is not None:
            inside = ((pix[:, 0] >= 0) & (pix[:, 0] < shape[0])
                      & (pix[:, 1] >= 0) & (pix[:, 1] < shape[1]))
            pix = pix[inside]
        _, first = np.unique(pix, axis=0, return_index=True)
        return pix[np.sort(first)]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready representation."""
        return {"type": "scribble", "path": self.path.tolist(),
                "positive": bool(self.positive), "width": float(self.width)}


Prompt = Point | Box | Scribble


def in_image(prompt: Prompt, shape: tuple[int, int]) -> bool:
    """True when ``prompt`` touches the ``shape`` image.

    A point counts as inside within half a pixel of the border (the decoder's rule); a box
    or a scribble needs at least one pixel inside (the decoder clips the rest).
    """
    h, w = float(shape[0]), float(shape[1])
    if isinstance(prompt, Point):
        r, c = prompt.rc
        return -0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5
    if isinstance(prompt, Box):
        (r0, c0), (r1, c1) = prompt.top_left, prompt.bottom_right
        return r1 >= 0 and c1 >= 0 and r0 <= h - 1 and c0 <= w - 1
    return len(prompt.pixels((int(h), int(w)))) > 0


def prompt_from_dict(data: dict[str, Any]) -> Prompt:
    """Rebuild a prompt written by ``to_dict``.

    Raises
    ------
    ValueError
        If ``data`` is not a valid prompt record; the message names the bad field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a prompt must be an object, got {type(data).__name__}")
    kind = data.get("type")
    try:
        if kind == "point":
            r, c = data["rc"]
            return Point((float(r), float(c)), bool(data.get("positive", True)))
        if kind == "box":
            return Box(tuple(map(float, data["top_left"])),  # type: ignore[arg-type]
                       tuple(map(float, data["bottom_right"])),  # type: ignore[arg-type]
                       bool(data.get("positive", True)))
        if kind == "scribble":
            return Scribble(np.asarray(data["path"], dtype=np.float32),
                            bool(data.get("positive", True)), float(data.get("width", 1.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad {kind} prompt {data!r}: {exc}") from exc
    raise ValueError(f"unknown prompt type {kind!r} (expected point, box or scribble)")


@dataclass(frozen=True)
class ObjectPrompts:
    """The prompts of one object, in the order the annotator (or a weak label) gave them."""

    object_id: int
    class_id: int
    prompts: tuple[Prompt, ...] = field(default_factory=tuple)

    def add(self, prompt: Prompt) -> ObjectPrompts:
        """Return a copy with ``prompt`` appended."""
        return replace(self, prompts=self.prompts + (prompt,))

    @property
    def points(self) -> tuple[Point, ...]:
        """Point prompts, in order."""
        return tuple(p for p in self.prompts if isinstance(p, Point))

    @property
    def boxes(self) -> tuple[Box, ...]:
        """Box prompts, in order."""
        return tuple(p for p in self.prompts if isinstance(p, Box))

    @property
    def scribbles(self) -> tuple[Scribble, ...]:
        """Scribble prompts, in order."""
        return tuple(p for p in self.prompts if isinstance(p, Scribble))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready representation."""
        return {"object_id": int(self.object_id), "class_id": int(self.class_id),
                "prompts": [p.to_dict() for p in self.prompts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectPrompts:
        """Rebuild from :meth:`to_dict` output; raises ``ValueError`` on bad content."""
        try:
            return cls(int(data["object_id"]), int(data["class_id"]),
                       tuple(prompt_from_dict(p) for p in data.get("prompts", [])))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad object prompts record: missing or wrong {exc}") from exc

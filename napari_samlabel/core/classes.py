"""Class tables: names, indices, the VOC colour map and the object -> part hierarchy.

Index 0 is always background and 255 is void ("ignore"), as in PASCAL VOC. Colours are for
display only: meaning lives in the indices, never in colours.
"""

from __future__ import annotations

import importlib.resources
import importlib.resources.abc
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

BACKGROUND = 0
VOID = 255
MAX_CLASSES = 255  # indices 0..254; 255 is reserved for void
#: Names other tools give index 0 (labelme's ``_background_``, Detectron's ``__background__``);
#: compared case-insensitively.
BACKGROUND_ALIASES: frozenset[str] = frozenset({"background", "_background_",
                                                "__background__"})

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap(n: int = 256) -> np.ndarray:
    """Return the standard PASCAL VOC colour map as an ``(n, 3)`` ``uint8`` array.

    This is the development kit's bit-interleaving map: index ``i`` spreads its bits over
    the high bits of R, G and B. It is defined for every index, which extends the 21 VOC
    colours deterministically to custom classes. Index 255 is (224, 224, 192), VOC's void.
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


#: Class names that are not the words a person (or a concept model's text encoder) uses.
VOC_PHRASES: dict[str, str] = {
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
    "diningtable": "dining table",
}


def name_phrase(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The noun phrase that prompts class ``name`` in a concept model.

    An override wins; else each part of ``object/part`` is its VOC phrase
    (:data:`VOC_PHRASES`) or itself with underscores and hyphens as spaces
    (``traffic_light`` -> ``"traffic light"``, ``dog/head`` -> ``"dog head"``).
    """
    if overrides and name in overrides:
        return str(overrides[name]).strip()
    words = [VOC_PHRASES.get(w, re.sub(r"[_-]+", " ", w).strip()) for w in name.split("/")]
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class ClassTable:
    """An ordered list of class names; a name's position is its label index.

    Names may be hierarchical with ``/`` (``dog/head`` is the part ``head`` of ``dog``).
    Index 0 is background: a list that does not start with a background name
    (:data:`BACKGROUND_ALIASES`, which is renamed ``background``) gets ``background``
    prepended. For a list whose first entry *is* index 0 whatever it is called (a VOC
    ``labelmap.txt``), use :meth:`from_indexed`.
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(str(n).strip() for n in self.names)
        if names and names[0].lower() in BACKGROUND_ALIASES:
            names = ("background",) + names[1:]
        else:
            names = ("background",) + names
        if len(names) > MAX_CLASSES:
            raise ValueError(
                f"{len(names)} classes (with background) do not fit in an 8-bit label map: "
                f"at most {MAX_CLASSES} are allowed, index 255 being void")
        seen: set[str] = set()
        for n in names:
            if not n:
                raise ValueError("class names must not be empty")
            if n in seen:
                raise ValueError(f"class name {n!r} appears twice")
            seen.add(n)
        object.__setattr__(self, "names", names)

    @classmethod
    def voc(cls) -> ClassTable:
        """The 21 PASCAL VOC classes."""
        return cls(VOC_CLASSES)

    @classmethod
    def from_indexed(cls, names: Sequence[str]) -> ClassTable:
        """A table where ``names[i]`` is label index ``i``: entry 0 is background by position.

        For lists that come with label maps (``labelmap.txt``): whatever entry 0 is called
        (``background``, ``_background_``, ``bg``...), it is index 0, so the other names
        keep the indices the label PNGs use. Entry 0 is renamed ``background``.
        """
        names = tuple(names)
        if not names:
            raise ValueError("an indexed class list needs at least its index 0 entry")
        return cls(("background",) + names[1:])

    @classmethod
    def from_file(cls, path: str | Path) -> ClassTable:
        """Read a class list: a text file, a YAML file, or a bundled list by name.

        - A text file holds one class name per line (``#`` comments and blank lines skipped).
        - A ``.yaml`` / ``.yml`` file, or a text file whose first entry is a ``- name`` item
          or a ``key:`` line, is read with PyYAML (:func:`names_from_yaml` lists the layouts).
        - A name of :data:`BUNDLED_CLASS_LISTS` (``voc``, ``voc-parts``) that is not a file
          in the working folder is the list shipped in the package.

        Raises ``ValueError`` naming the file (and the line, for bad YAML) on a bad list.
        """
        path = Path(path)
        if not path.exists() and str(path) in BUNDLED_CLASS_LISTS:
            return bundled_class_list(str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read class list {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"class list {path} is not UTF-8 text (byte "
                             f"0x{exc.object[exc.start]:02x} at offset {exc.start}); save it "
                             "as UTF-8") from None
        if path.suffix.lower() in (".yaml", ".yml") or _looks_like_yaml(text):
            names = names_from_yaml(text, path)
        else:
            names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
            names = [n for n in names if n]
        if not names:
            raise ValueError(f"bad class list {path}: it lists no class")
        try:
            return cls(tuple(names))
        except ValueError as exc:
            raise ValueError(f"bad class list {path}: {exc}") from exc

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterable[str]:  # type: ignore[override]
        return iter(self.names)

    def index(self, name_or_index: str | int) -> int:
        """Return the label index of a class given by name or index.

        Raises
        ------
        KeyError
            If the class is unknown.
        """
        if isinstance(name_or_index, (int, np.integer)):
            i = int(name_or_index)
            if 0 <= i < len(self.names):
                return i
            raise KeyError(f"class index {i} is outside 0..{len(self.names) - 1}")
        try:
            return self.names.index(str(name_or_index))
        except ValueError:
            raise KeyError(f"unknown class {name_or_index!r}; known: "
                           f"{', '.join(self.names)}") from None

    def name(self, index: int) -> str:
        """Return the name of label ``index``."""
        if index == VOID:
            return "void"
        return self.names[index]

    @cached_property
    def _parents(self) -> tuple[int | None, ...]:
        # Looked up for every object on every edit of a document: computed once per table.
        index = {n: i for i, n in enumerate(self.names)}
        return tuple(index.get(n.rsplit("/", 1)[0]) if "/" in n else None
                     for n in self.names)

    def parent(self, index: int) -> int | None:
        """Index of the parent object of a part class (``dog/head`` -> ``dog``), if listed.

        A class is a *part* exactly when this is not None: ``a/b`` whose ``a`` is not in the
        table is an ordinary (whole) class with a slash in its name.
        """
        return self._parents[index]

    def is_part(self, index: int) -> bool:
        """True when class ``index`` is a part of another listed class (see :meth:`parent`)."""
        return 0 <= index < len(self.names) and self._parents[index] is not None

    @property
    def has_parts(self) -> bool:
        """True when at least one class of the table is a part class."""
        return any(p is not None for p in self._parents)

    def parts(self, index: int) -> list[int]:
        """Indices of the direct parts of class ``index``."""
        return [i for i, p in enumerate(self._parents) if p == index]

    def part_name(self, index: int) -> str:
        """The name of a part class without its parent (``dog/head`` -> ``head``).

        This is the ``<part><name>`` VOC's layout annotations write inside the parent's
        ``<object>``. For a whole class, the full name.
        """
        name = self.names[index]
        return name.rsplit("/", 1)[1] if self.is_part(index) else name

    def part_index(self, parent: int, name: str) -> int | None:
        """Index of the part ``name`` of class ``parent`` (``head`` of ``dog``), if listed.

        ``name`` may be the short part name (``head``) or the full one (``dog/head``).
        """
        full = name if "/" in name else f"{self.names[parent]}/{name}"
        for i in self.parts(parent):
            if self.names[i] == full:
                return i
        return None

    def colors(self) -> np.ndarray:
        """``(256, 3)`` ``uint8`` palette for this table (VOC colour map)."""
        return voc_colormap(256)

    def to_list(self) -> list[str]:
        """Names as a JSON-ready list."""
        return list(self.names)

    def __contains__(self, item: object) -> bool:
        return item in self.names


#: Class lists shipped in the package, by the name ``--classes`` accepts (file in
#: ``napari_samlabel/resources``; None: built in).
BUNDLED_CLASS_LISTS: dict[str, str | None] = {"voc": None, "voc-parts": "voc_parts.txt"}
#: Keys of a YAML mapping that hold the class list (``classes:``; YOLO's ``names:``).
YAML_LIST_KEYS = ("classes", "names")


def bundled_class_list(name: str) -> ClassTable:
    """The class list shipped under ``name`` (:data:`BUNDLED_CLASS_LISTS`)."""
    if name not in BUNDLED_CLASS_LISTS:
        raise ValueError(f"unknown bundled class list {name!r}; known: "
                         f"{', '.join(BUNDLED_CLASS_LISTS)}")
    file = BUNDLED_CLASS_LISTS[name]
    if file is None:
        return ClassTable.voc()
    with importlib.resources.as_file(bundled_class_file(name)) as path:
        return ClassTable.from_file(path)


def bundled_class_file(name: str) -> importlib.resources.abc.Traversable:
    """Where the bundled class list ``name`` is installed (for printing its path)."""
    file = BUNDLED_CLASS_LISTS.get(name)
    if file is None:
        raise ValueError(f"{name!r} is not a bundled class list file")
    return importlib.resources.files("napari_samlabel") / "resources" / file


def _looks_like_yaml(text: str) -> bool:
    """True when the first entry of ``text`` is a YAML list item or mapping key."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if line.strip():
            return line.lstrip().startswith("- ") or line.strip() == "-" or \
                line.endswith(":") or any(line.startswith(f"{k}:") for k in YAML_LIST_KEYS)
    return False


def names_from_yaml(text: str, path: str | Path = "<text>") -> list[str]:
    """Class names from the YAML text of a class list.

    Accepted layouts: a list of names (``- cat``); a mapping with a ``classes:`` (or YOLO's
    ``names:``) key holding such a list, or a mapping ``index: name`` (YOLO); a mapping
    ``name: colour`` (or any value), read as the names in order (display colours come from
    the VOC palette, so the values are not used). List items may be mappings with a
    ``name`` key. Raises ``ValueError`` naming ``path`` and, for bad YAML, the line.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"bad class list {path}{where}: not valid YAML ({problem})") from None
    if isinstance(data, dict):
        for key in YAML_LIST_KEYS:
            if key in data:
                data = data[key]
                break
    if isinstance(data, dict):
        if data and all(isinstance(k, int) for k in data):
            data = [data[k] for k in sorted(data)]
        else:
            data = list(data)
    if not isinstance(data, list):
        raise ValueError(f"bad class list {path}: expected a YAML list of names, a "
                         f"'classes:' key holding one, or a mapping of names; got "
                         f"{type(data).__name__}")
    names = []
    for n, item in enumerate(data, start=1):
        if isinstance(item, dict) and "name" in item:
            item = item["name"]
        if isinstance(item, (dict, list)) or item is None:
            raise ValueError(f"bad class list {path}: entry {n} is not a class name "
                             f"({item!r})")
        names.append(str(item).strip())
    return names


def as_class_table(classes: ClassTable | Sequence[str] | None) -> ClassTable:
    """Accept a table, a list of names, or None (VOC)."""
    if classes is None:
        return ClassTable.voc()
    if isinstance(classes, ClassTable):
        return classes
    return ClassTable(tuple(classes))


def match_classes(classes: ClassTable, text: str) -> list[int]:
    """Class indices (background excluded) whose name contains ``text``, best first.

    Case-insensitive; names whose last part (``dog/head`` -> ``head``) or whole name start
    with ``text`` come first, then the other matches, each group in class order. An empty
    ``text`` matches every class.
    """
    needle = text.strip().lower()
    hits = [(i, name.lower()) for i, name in enumerate(classes.names) if i > 0]
    if not needle:
        return [i for i, _ in hits]
    starts = [i for i, n in hits if n.startswith(needle) or n.rsplit("/", 1)[-1].startswith(needle)]
    rest = [i for i, n in hits if needle in n and i not in starts]
    return starts + rest

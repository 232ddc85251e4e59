"""The text files of a VOC dataset: ``Annotations`` XML, ``labelmap.txt`` and ``ImageSets``.

:class:`ObjectInfo` and :class:`XmlPart` are what an ``<object>`` and its ``<part>`` hold;
the writer builds the XML with :func:`xml_text`, the reader parses it with
:func:`parse_annotation`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_samlabel.core.classes import BACKGROUND_ALIASES, ClassTable, voc_colormap
from napari_samlabel.io.voc import VocError


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one instance for ``Annotations/<id>.xml``.

    Attributes
    ----------
    instance_id : int
        The instance's value in the instance map given to :meth:`VocWriter.add` (or, when
        reading, in ``SegmentationObject``).
    class_id : int or None
        Class index; None means "take it from the semantic map under the instance".
    pose : str
        VOC pose (``Unspecified``, ``Frontal``, ``Left``...).
    truncated : bool or None
        None derives it from the mask (touches the image border).
    difficult : bool
        VOC's difficult flag.
    bbox : tuple of int or None
        ``(xmin, ymin, xmax, ymax)`` in VOC's 1-based inclusive pixel coordinates; None
        derives it from the mask.
    parent : int or None
        For a part given to :meth:`VocWriter.add` (``instance_id`` then is its value in
        the part instance map): the instance id, in the object instance map, of the object
        it belongs to. None: a part without a parent (part maps only, no XML).
    parts : tuple of XmlPart
        When reading: the ``<part>`` elements of the ``<object>``, in file order.
    """

    instance_id: int
    class_id: int | None = None
    pose: str = "Unspecified"
    truncated: bool | None = None
    difficult: bool = False
    bbox: tuple[int, int, int, int] | None = None
    parent: int | None = None
    parts: tuple[XmlPart, ...] = ()


@dataclass(frozen=True)
class XmlPart:
    """A ``<part>`` of an ``<object>`` in ``Annotations`` (VOC's layout annotation).

    Attributes
    ----------
    name : str
        The ``<name>``: the part name without its object's (``head``).
    class_id : int or None
        The part class (``dog/head`` inside a ``dog``) when the class table lists it.
    bbox : tuple of int or None
        ``(xmin, ymin, xmax, ymax)``, 1-based inclusive.
    """

    name: str
    class_id: int | None
    bbox: tuple[int, int, int, int] | None


def labelmap_text(classes: ClassTable) -> str:
    """The ``labelmap.txt`` CVAT writes.

    A ``# label:color_rgb:parts:actions`` header, then ``name:r,g,b:parts:`` per class in
    index order (background first), colours from the VOC colour map. Part classes are
    classes of their own (``dog/head``, the index ``SegmentationPart`` uses); the parts
    column of their parent lists their short names (``dog:...:head,tail:``), as CVAT
    writes VOC's ``person:...:head,hand,foot:``.
    """
    cmap = voc_colormap(256)
    lines = ["# label:color_rgb:parts:actions"]
    for i, name in enumerate(classes.names):
        r, g, b = (int(v) for v in cmap[i])
        parts = ",".join(classes.part_name(p) for p in classes.parts(i))
        lines.append(f"{name}:{r},{g},{b}:{parts}:")
    return "\n".join(lines) + "\n"


def parse_labelmap(path: str | os.PathLike[str]) -> ClassTable:
    """Read a CVAT / labelme / our ``labelmap.txt`` into a class table (line order = index).

    The first entry is label index 0, background, whatever it is called (CVAT writes
    ``background``, labelme ``_background_``): the label PNGs use these indices, so the
    position decides, never the name. A first entry whose name does not look like
    background is still index 0, with a warning.

    Raises
    ------
    VocError
        On a malformed line (the message gives the line number) or an empty list.
    """
    path = Path(path)
    names = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VocError(f"cannot read {path}: {exc}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.count(":") < 1:
            raise VocError(f"{path}:{lineno}: expected 'name:r,g,b::', got {line!r}")
        names.append(line.split(":", 1)[0].strip())
    if not names:
        raise VocError(f"{path}: no classes listed")
    if names[0].lower() not in BACKGROUND_ALIASES:
        warnings.warn(f"{path}: the first class is {names[0]!r}; it is read as index 0, "
                      "background, as label maps use it", stacklevel=2)
    try:
        return ClassTable.from_indexed(names)
    except ValueError as exc:
        raise VocError(f"{path}: {exc}") from exc


def xml_text(image_id: str, shape: tuple[int, int], objects: list[tuple[str, ObjectInfo,
              tuple[int, int, int, int], bool]], depth: int = 3,
              parts: dict[int, list[tuple[str, tuple[int, int, int, int]]]] | None = None
              ) -> str:
    """The ``Annotations`` XML; ``parts`` maps an object's position (1-based) to its parts."""
    from xml.sax.saxutils import escape

    h, w = shape
    out = ["<annotation>", "\t<folder>VOC2012</folder>",
           f"\t<filename>{escape(image_id)}.jpg</filename>",
           "\t<source>", "\t\t<database>napari-samlabel</database>", "\t</source>",
           "\t<size>", f"\t\t<width>{w}</width>", f"\t\t<height>{h}</height>",
           f"\t\t<depth>{depth}</depth>", "\t</size>", "\t<segmented>1</segmented>"]
    for k, (name, info, box, truncated) in enumerate(objects, 1):
        out += ["\t<object>", f"\t\t<name>{escape(name)}</name>",
                f"\t\t<pose>{escape(info.pose)}</pose>",
                f"\t\t<truncated>{int(truncated)}</truncated>",
                f"\t\t<difficult>{int(info.difficult)}</difficult>"]
        out += _bndbox_xml(box, "\t\t")
        for part_name, part_box in (parts or {}).get(k, ()):
            out += ["\t\t<part>", f"\t\t\t<name>{escape(part_name)}</name>",
                    *_bndbox_xml(part_box, "\t\t\t"), "\t\t</part>"]
        out.append("\t</object>")
    out.append("</annotation>")
    return "\n".join(out) + "\n"


def _bndbox_xml(box: tuple[int, int, int, int], indent: str) -> list[str]:
    x0, y0, x1, y1 = box
    inner = indent + "\t"
    return [f"{indent}<bndbox>", f"{inner}<xmin>{x0}</xmin>", f"{inner}<ymin>{y0}</ymin>",
            f"{inner}<xmax>{x1}</xmax>", f"{inner}<ymax>{y1}</ymax>", f"{indent}</bndbox>"]


def parse_annotation(path: str | os.PathLike[str],
                     classes: ClassTable) -> tuple[tuple[int, int] | None, list[ObjectInfo]]:
    """Read ``Annotations/<id>.xml``: ``((height, width) or None, objects in file order)``.

    Object ``k`` (1-based, file order) gets ``instance_id = k``. Its ``<part>`` elements
    (VOC's layout annotations) become :attr:`ObjectInfo.parts`; a part name the class
    table does not list under the object's class gets ``class_id`` None rather than an
    error, since VOC's own layout parts (``hand``, ``foot``) are boxes without masks. XML
    is parsed with ``defusedxml``.

    Raises
    ------
    VocError
        On malformed XML, an unknown class name or a bad number (names the file and object).
    """
    from defusedxml import ElementTree as DET

    path = Path(path)
    try:
        tree = DET.parse(path)
    except Exception as exc:  # ParseError and defusedxml's security errors
        import defusedxml

        from napari_samlabel.io.weak._files import unsafe_xml_reason

        reason = unsafe_xml_reason(exc) if isinstance(exc, defusedxml.DefusedXmlException) \
            else str(exc)
        raise VocError(f"cannot parse annotation {path}: {reason}") from exc
    root = tree.getroot()

    def num(node: Any, tag: str, where: str) -> int:
        text = node.findtext(tag) if node is not None else None
        try:
            return int(round(float(text or "")))  # some tools write "12.0"
        except ValueError:
            raise VocError(f"{path}: {where}: <{tag}> is {text!r}, expected a number") from None

    size = None
    size_node = root.find("size")
    if size_node is not None and size_node.findtext("height"):
        size = (num(size_node, "height", "size"), num(size_node, "width", "size"))
    objects = []
    for k, node in enumerate(root.findall("object"), 1):
        where = f"object {k}"
        name = (node.findtext("name") or "").strip()
        if name not in classes:
            raise VocError(f"{path}: {where}: unknown class {name!r}; known: "
                           f"{', '.join(classes.names[1:])}")
        cls = classes.index(name)
        parts = []
        for j, part in enumerate(node.findall("part"), 1):
            part_name = (part.findtext("name") or "").strip()
            parts.append(XmlPart(part_name, classes.part_index(cls, part_name),
                                 _read_box(part, num, f"{where}: part {j}")))
        flag = node.findtext("truncated")
        objects.append(ObjectInfo(
            instance_id=k, class_id=cls,
            pose=(node.findtext("pose") or "Unspecified").strip(),
            truncated=None if flag is None else flag.strip() == "1",
            difficult=(node.findtext("difficult") or "0").strip() == "1",
            bbox=_read_box(node, num, where), parts=tuple(parts)))
    return size, objects


def _read_box(node: Any, num: Any, where: str) -> tuple[int, int, int, int] | None:
    """The ``<bndbox>`` child of ``node`` (not of its parts), or None."""
    box = node.find("bndbox")
    if box is None:
        return None
    xmin, ymin, xmax, ymax = (num(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
    return xmin, ymin, xmax, ymax


def read_image_set(path: str | os.PathLike[str]) -> list[str]:
    """Read an ``ImageSets``-style id list: the first word of each line, in order.

    Blank lines and ``#`` comments are skipped, so ``train.txt``, ``<class>_train.txt``
    (``id flag``) and curation's ``failures.txt`` all read.

    Raises
    ------
    VocError
        If the file is missing or unreadable (named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocError(f"image list {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VocError(f"cannot read image list {path}: {exc}") from exc
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line.split()[0])
    return ids


def read_set_if_present(path: Path) -> list[str]:
    """:func:`read_image_set` of ``path``, or ``[]`` when there is no such file."""
    return read_image_set(path) if path.is_file() else []

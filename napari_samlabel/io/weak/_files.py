"""Small file helpers shared by the weak-label readers: XML parsing, index PNGs, image ids."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from ._types import WeakLabelError

# Suffixes that scribble/box files often carry after the image id ("2008_000003_scribble.txt").
_ID_SUFFIX = re.compile(r"[_.-](scribbles?|points?|boxes|box|bbox|cams?|weak)$", re.IGNORECASE)


def image_id_from_path(path: Path) -> str:
    """The image id of a per-image weak-label file: its stem without a kind suffix.

    ``2008_000003_scribble.txt`` -> ``2008_000003``; ``2008_000003.xml`` -> ``2008_000003``.
    """
    return _ID_SUFFIX.sub("", path.stem) or path.stem


_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


def normalise_image_id(name: str) -> str:
    """An image id from a name that may carry an image extension (``"a.jpg"`` -> ``"a"``)."""
    name = str(name).strip()
    p = Path(name)
    return p.stem if p.suffix.lower() in _IMAGE_EXTS else p.name


def read_utf8(path: Path) -> str:
    """The text of ``path``; :class:`WeakLabelError` naming the file if unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WeakLabelError(path, f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                             f"offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read: {exc.strerror or exc}") from exc


def unsafe_xml_reason(exc: Exception) -> str:
    """A sentence for defusedxml's refusal (its own str is a raw repr)."""
    import defusedxml

    if isinstance(exc, defusedxml.EntitiesForbidden):
        return ("refused unsafe XML: it declares entities (an XML bomb such as 'billion "
                "laughs' uses them); VOC and ScribbleSup files never need them")
    if isinstance(exc, defusedxml.DTDForbidden):
        return "refused unsafe XML: it has a DTD (<!DOCTYPE ...>), which is not allowed"
    if isinstance(exc, defusedxml.ExternalReferenceForbidden):
        return "refused unsafe XML: it refers to an external resource, which is not allowed"
    return f"refused unsafe XML ({type(exc).__name__})"


def parse_xml(path: Path, root_tag: str = "annotation") -> Element:
    """Parse an XML file from outside safely (defusedxml) and check its root element.

    Raises
    ------
    WeakLabelError
        On unreadable or malformed XML, forbidden constructs (entities, DTDs) or a wrong root.
    """
    import defusedxml
    import defusedxml.ElementTree as SafeET

    try:
        root = SafeET.parse(str(path)).getroot()
    except ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        raise WeakLabelError(path, f"malformed XML: {exc}",
                             f"line {line}, column {col}" if line else None) from exc
    except defusedxml.DefusedXmlException as exc:
        raise WeakLabelError(path, unsafe_xml_reason(exc)) from None
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read: {exc.strerror}") from exc
    if root.tag.lower() != root_tag:  # ScribbleSup files are seen with <Annotation> too
        raise WeakLabelError(path, f"root element is <{root.tag}>, expected <{root_tag}>")
    return root


def xml_number(elem: Element | None, tag: str, path: Path, where: str) -> float:
    """The number in child ``tag`` of ``elem``; raises naming the element when missing/bad."""
    child = elem.find(tag) if elem is not None else None
    if child is None or child.text is None or not child.text.strip():
        raise WeakLabelError(path, f"missing <{tag}>", where)
    try:
        value = float(child.text.strip())
    except ValueError:
        raise WeakLabelError(path, f"<{tag}> is not a number: {child.text.strip()!r}",
                             where) from None
    if not np.isfinite(value):
        raise WeakLabelError(path, f"<{tag}> is not finite: {child.text.strip()!r}", where)
    return value


def xml_image_size(root: Element, path: Path) -> tuple[int, int] | None:
    """The image size ``(height, width)`` an XML annotation states, or None.

    Reads VOC's ``<size>`` (``<width>``, ``<height>``) and LabelMe's ``<imagesize>``
    (``<nrows>``, ``<ncols>``), which wins when a file has both. A size element with one of
    its two numbers must have the other (an error names the missing one); a size of 0 or
    less, which some exporters write when they do not know it, means unknown (None).

    Raises
    ------
    WeakLabelError
        When a size element lacks one of its numbers or holds one that is not a number.
    """
    shape = None
    for tag, (rows, cols) in (("size", ("height", "width")),
                              ("imagesize", ("nrows", "ncols"))):
        elem = root.find(tag)
        if elem is None or (elem.find(rows) is None and elem.find(cols) is None):
            continue
        shape = (int(xml_number(elem, rows, path, f"<{tag}>")),
                 int(xml_number(elem, cols, path, f"<{tag}>")))
    if shape is not None and (shape[0] <= 0 or shape[1] <= 0):
        return None
    return shape


def read_index_png(path: Path) -> np.ndarray:
    """Read a label PNG as its index values (palette 'P' or greyscale 'L'), not its colours.

    Wraps :func:`napari_samlabel.io.voc.labelpng.read_label_png` (the one label-PNG reader).

    Raises
    ------
    WeakLabelError
        When the file cannot be read or is not an 8-bit index image.
    """
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.labelpng import read_label_png

    try:
        return read_label_png(path)
    except VocError as exc:
        # WeakLabelError puts the path first; say it once.
        raise WeakLabelError(path, str(exc).replace(f" {path}", "")) from None


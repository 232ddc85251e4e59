"""Image-level class labels (tags) and the phrases that prompt SAM 3 for each class.

A tag says that an image shows at least one object of a class, not where. SAM 3 turns the
class's *phrase* (``pottedplant`` -> ``"potted plant"``) into every instance of it
(:mod:`napari_samlabel.pseudo.pipeline`, kind ``tags``). Readers return the usual
``{image_id: WeakLabels}``; each tagged class is one object without prompts (kind
``"tags"``; ``"text"`` for :func:`text_labels`), in class-table order.

Sources:

- **VOC** ``ImageSets/Main/<class>_<split>.txt`` under a VOC root (or the ``Main`` folder
  itself): one ``<image id> <flag>`` per line, ``1`` present, ``0`` present but difficult
  (counted as present), ``-1`` absent. :func:`read_tags_voc`.
- **JSON** ``{"image_id": ["class", ...], ...}`` (names or indices). :func:`read_tags_json`.
- **CSV** ``image_id,class`` rows (an optional header row ``image_id,class``; several rows
  per image). :func:`read_tags_csv`.

Bad content raises :class:`~napari_samlabel.io.weak.WeakLabelError` naming the file and
the line (or image).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.prompts import ObjectPrompts

from ._files import normalise_image_id
from ._types import WeakLabelError, WeakLabels, per_image, resolve_class

__all__ = [
    "phrase_key", "read_phrases", "read_tags_csv",
    "read_tags_json", "read_tags_voc", "tags_labels", "text_labels",
]

_VOC_FLAGS = {"1": True, "0": True, "-1": False}


def phrase_key(text: str) -> str:
    """A phrase as lower-case letters and digits (``"Potted plant"`` -> ``"pottedplant"``)."""
    return re.sub(r"[^0-9a-z]+", "", str(text).lower())


def read_phrases(path: str | Path, classes: ClassTable | None = None) -> dict[str, str]:
    """A ``{class name: phrase}`` mapping from a YAML or JSON file (``--phrases``).

    Raises
    ------
    WeakLabelError
        Unreadable file, not a mapping of strings, an empty phrase, or (with ``classes``) a
        class that is not in the table.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise WeakLabelError(path, f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                             f"{str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise WeakLabelError(path, "expected a mapping of class name to phrase, e.g. "
                             "'pottedplant: potted plant'")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise WeakLabelError(path, f"the phrase of {key!r} must be non-empty text, "
                                 f"got {value!r}", f"entry {key!r}")
        name = str(key).strip()
        if classes is not None:
            name = classes.names[resolve_class(classes, name, path, f"entry {key!r}")]
        out[name] = value.strip()
    return out


def _labels(image_id: str, class_ids: Iterable[int], source: str,
            origins: Mapping[int, str] | None = None, kind: str = "tags") -> WeakLabels:
    ids = sorted(set(class_ids))
    return WeakLabels(image_id, kind,
                      tuple(ObjectPrompts(i, cid) for i, cid in enumerate(ids, start=1)),
                      source=source,
                      origins=tuple((origins or {}).get(c, "") for c in ids) if origins else ())


def tags_labels(image_id: str, class_ids: Iterable[int], source: str = "") -> WeakLabels:
    """The ``"tags"`` labels of one image from its tagged class indices."""
    return _labels(image_id, class_ids, source)


def text_labels(image_ids: Iterable[str], classes: ClassTable | None = None
                ) -> dict[str, WeakLabels]:
    """``--kind text``: every class of the table (but background) for every image."""
    table = as_class_table(classes)
    every = range(1, len(table))
    return {str(i): _labels(str(i), every, "class list", kind="text") for i in sorted(image_ids)}


def read_tags_json(path: str | Path, classes: ClassTable | None = None, *,
                   on_error: Any = None) -> dict[str, WeakLabels]:
    """Tags from ``{image_id: [class, ...]}`` (names or indices)."""
    path = Path(path)
    table = as_class_table(classes)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise WeakLabelError(path, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WeakLabelError(path, "expected an object {image_id: [class, ...]}")

    def read(image_id: str, value: Any) -> WeakLabels:
        where = f"image {image_id!r}"
        if isinstance(value, (str, int)):
            value = [value]
        if not isinstance(value, list):
            raise WeakLabelError(path, f"expected a list of classes, got {value!r}", where)
        ids = [resolve_class(table, v, path, f"{where}, entry {k}") for k, v in enumerate(value)]
        if 0 in ids:
            raise WeakLabelError(path, "background is not a tag", where)
        return _labels(normalise_image_id(image_id), ids, str(path))

    return {v.image_id: v for v in per_image(data, read, on_error).values()}


def read_tags_csv(path: str | Path, classes: ClassTable | None = None) -> dict[str, WeakLabels]:
    """Tags from ``image_id,class`` rows (optional header; several rows per image)."""
    path = Path(path)
    table = as_class_table(classes)
    found: dict[str, set[int]] = {}
    origins: dict[str, dict[int, str]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                cells = [c.strip() for c in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if n == 1 and [c.lower() for c in cells[:2]] == ["image_id", "class"]:
                    continue
                if len(cells) != 2 or not cells[0] or not cells[1]:
                    raise WeakLabelError(path, f"expected 'image_id,class', got {row!r}",
                                         f"line {n}")
                cid = resolve_class(table, cells[1], path, f"line {n}")
                if cid == 0:
                    raise WeakLabelError(path, "background is not a tag", f"line {n}")
                image_id = normalise_image_id(cells[0])
                found.setdefault(image_id, set()).add(cid)
                origins.setdefault(image_id, {}).setdefault(cid, f"line {n}")
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise WeakLabelError(path, f"not a text CSV file: {exc}") from exc
    if not found:
        raise WeakLabelError(path, "no 'image_id,class' rows")
    return {i: _labels(i, found[i], str(path), origins[i]) for i in sorted(found)}


def _voc_main(path: Path) -> Path:
    main = path / "ImageSets" / "Main"
    return main if main.is_dir() else path


def read_tags_voc(path: str | Path, classes: ClassTable | None = None,
                  split: str | None = None) -> dict[str, WeakLabels]:
    """Tags from VOC's ``ImageSets/Main/<class>_<split>.txt`` files.

    Parameters
    ----------
    path : path
        A VOC root (with ``ImageSets/Main``) or the ``Main`` folder.
    classes : ClassTable, optional
        VOC by default; files of other names (``train.txt``, ``<class>_<split>.txt`` of a
        class not in the table) are skipped.
    split : str, optional
        ``"train"``, ``"val"``, ``"trainval"`` ...; default every split found (an image
        tagged in any of them is tagged).

    Returns
    -------
    dict of str to WeakLabels
        Every image listed, also those with no class present (their label is background).

    Raises
    ------
    WeakLabelError
        No matching file, or a line that is not ``<image id> <1|0|-1>`` (file and line).
    """
    path = Path(path)
    table = as_class_table(classes)
    main = _voc_main(path)
    if not main.is_dir():
        raise WeakLabelError(path, "not a VOC root or ImageSets/Main folder")
    names = {n: i for i, n in enumerate(table.names) if i > 0}
    files: list[tuple[Path, int]] = []
    for f in sorted(main.glob("*_*.txt")):
        cls_name, _, file_split = f.stem.rpartition("_")
        if cls_name in names and (split is None or file_split == split):
            files.append((f, names[cls_name]))
    if not files:
        want = f"<class>_{split}.txt" if split else "<class>_<split>.txt"
        raise WeakLabelError(main, f"no {want} tag files for the classes "
                             f"{', '.join(list(names)[:4])}, ...")
    found: dict[str, set[int]] = {}
    origins: dict[str, dict[int, str]] = {}
    for f, cid in files:
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise WeakLabelError(f, f"cannot read: {exc}") from exc
        for n, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in _VOC_FLAGS:
                raise WeakLabelError(f, f"expected '<image id> <1|0|-1>', got {line.strip()!r}",
                                     f"line {n}")
            tags = found.setdefault(parts[0], set())
            if _VOC_FLAGS[parts[1]]:
                tags.add(cid)
                origins.setdefault(parts[0], {}).setdefault(cid, f"{f.name} line {n}")
    return {i: _labels(i, found[i], str(main), origins.get(i, {})) for i in sorted(found)}

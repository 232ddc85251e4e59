"""Per-image results of a pseudo-label run, written atomically; the basis of resuming.

Layout of the output folder ``OUT``::

    OUT/run.json                       settings of the last run (kind, policy, model, classes)
    OUT/SegmentationClass/<id>.png     class index per pixel (palette PNG, VOC colours)
    OUT/SegmentationObject/<id>.png    index of the object (the "unit" segmented) per pixel
    OUT/scores/<id>.json               per-object scores and provenance; written LAST
    OUT/failures.json                  images that failed in the last run, with the reason
    OUT/voc/VOCdevkit/VOC2012/...      the VOC dataset exported from the above at the end

``scores/<id>.json`` is the finished marker: it is removed before an image is (re)written and
written after both PNGs, each file through :mod:`napari_samlabel.core.fsutil`. An image counts
as finished only when its marker exists, parses, names both PNGs, and carries the same
fingerprint (run settings + that image's weak labels) as the current run, so a rerun skips
finished images and redoes the ones whose settings or weak labels changed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.fsutil import atomic_write_text

CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
SCORES_DIR = "scores"
VOC_DIR = "voc"
FORMAT_VERSION = 1


class ResultStore:
    """The per-image files of one output folder (see the module docstring).

    Parameters
    ----------
    out : path
        The output folder (created on the first write).
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)

    def class_png(self, image_id: str) -> Path:
        """Path of the class label PNG."""
        return self.out / CLASS_DIR / f"{image_id}.png"

    def object_png(self, image_id: str) -> Path:
        """Path of the object label PNG."""
        return self.out / OBJECT_DIR / f"{image_id}.png"

    def record_path(self, image_id: str) -> Path:
        """Path of the scores JSON (the finished marker)."""
        return self.out / SCORES_DIR / f"{image_id}.json"

    def read_record(self, image_id: str) -> dict[str, Any] | None:
        """The image's record, or None when missing or unreadable (= not finished)."""
        try:
            data = json.loads(self.record_path(image_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_done(self, image_id: str, fingerprint: str) -> bool:
        """True when the image was finished with this ``fingerprint``."""
        rec = self.read_record(image_id)
        return (rec is not None and rec.get("fingerprint") == fingerprint
                and rec.get("format_version") == FORMAT_VERSION
                and self.class_png(image_id).is_file() and self.object_png(image_id).is_file())

    def write(self, image_id: str, semantic: np.ndarray, instance: np.ndarray,
              record: dict[str, Any]) -> None:
        """Write one image's label maps, then its record (the marker) last."""
        from napari_samlabel.io.voc.labelpng import write_label_png

        with contextlib.suppress(FileNotFoundError):
            self.record_path(image_id).unlink()
        write_label_png(self.class_png(image_id), semantic)
        write_label_png(self.object_png(image_id), instance)
        record = dict(record, format_version=FORMAT_VERSION)
        atomic_write_text(self.record_path(image_id), json.dumps(record, indent=1) + "\n")

    def read_maps(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(semantic, instance)`` maps of a finished image."""
        from napari_samlabel.io.voc.labelpng import read_label_png

        return read_label_png(self.class_png(image_id)), read_label_png(self.object_png(image_id))

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``OUT/<name>`` atomically (run settings, failures)."""
        path = self.out / name
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        return path

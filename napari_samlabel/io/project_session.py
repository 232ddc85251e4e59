"""Where the annotator was: ``samlabel-session.json``, apart from the project file.

The image and class last shown and the curation queue last reviewed. The file is small and
disposable: it is rewritten on every image or class change without touching the project
file, and an unreadable one means "no saved position", never an error.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from napari_samlabel.core.filelock import FileLock
from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.io.project_schema import SESSION_FILE, SESSION_FORMAT, SESSION_SCHEMA_VERSION


class SessionFile:
    """The session file of a project folder, read once and kept in memory.

    Parameters
    ----------
    folder : pathlib.Path
        The project folder.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / SESSION_FILE
        self._state: dict[str, Any] | None = None  # as last read or written (None: not read)

    def state(self) -> dict[str, Any]:
        """The fields of ``samlabel-session.json`` (read once; ``{}`` if absent or bad).

        The file is disposable: an unreadable or malformed one gives a warning and ``{}``,
        never an error, since losing it must never stop a project from opening.
        """
        if self._state is not None:
            return self._state
        path = self.path
        state: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
                    raise ValueError(f"field 'format' is not {SESSION_FORMAT!r}")
                version = data.get("schema_version")
                if not isinstance(version, int) or not 1 <= version <= SESSION_SCHEMA_VERSION:
                    raise ValueError(f"schema version {version!r} is not one this version "
                                     f"reads (1..{SESSION_SCHEMA_VERSION})")
                state = {k: data.get(k) for k in ("image_id", "class_id", "review_queue")}
            except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeError: ValueErrors
                warnings.warn(f"{path}: {exc}; starting without a saved position",
                              stacklevel=3)
        self._state = state
        return state

    def update(self, **changes: Any) -> None:
        """Save ``changes`` with the other fields of the session file (if anything changed).

        Under a short lock the file is re-read, so fields another session wrote meanwhile
        (its review queue, say) are kept and only ``changes`` are applied.
        """
        old = self.state()
        if {**old, **changes} == old and self.path.is_file():
            return
        with FileLock(self.path.with_name(self.path.name + ".lock"),
                      what=f"session file {self.path}"):
            self._state = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a bad file was reported when first read
                old = self.state()
            state = {**old, **changes}
            payload = {"format": SESSION_FORMAT, "schema_version": SESSION_SCHEMA_VERSION,
                       "image_id": state.get("image_id"), "class_id": state.get("class_id")}
            if state.get("review_queue") is not None:
                payload["review_queue"] = state["review_queue"]
            payload["saved"] = time.time()
            atomic_write_text(self.path, json.dumps(payload) + "\n")
            self._state = state

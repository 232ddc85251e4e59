"""Drafts: objects in progress (prompts and mask not yet accepted), kept in the project.

An annotator who moves to another image or closes the window with an object half prompted
finds it again on return: the session writes it here when the image is left and restores it
when the image opens. One file per image, ``drafts/<image_id>.npz`` in the project folder
(written atomically): a JSON record (format, class, prompts, score, model) and the mask and
SAM's low-resolution logits as arrays, so the object comes back as it was, without a decode.
Drafts are not annotations: export and curation never read them.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.fsutil import atomic_save
from napari_samlabel.core.prompts import Prompt, prompt_from_dict

DRAFTS_DIR = "drafts"
DRAFT_FORMAT = "samlabel-draft"
DRAFT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Draft:
    """An object in progress: its class, prompts and, when it had one, SAM's last answer."""

    class_id: int
    prompts: tuple[Prompt, ...]
    mask: np.ndarray | None = None
    score: float | None = None
    logits: np.ndarray | None = None
    model_id: str | None = None


class DraftStore:
    """The drafts of a project folder (``<folder>/drafts``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder) / DRAFTS_DIR

    def path(self, image_id: str) -> Path:
        """File of ``image_id``'s draft."""
        return self.folder / f"{image_id}.npz"

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and self.path(image_id).is_file()

    def save(self, image_id: str, draft: Draft) -> Path:
        """Write ``draft`` as ``image_id``'s (atomically, replacing an older one)."""
        meta = {"format": DRAFT_FORMAT, "version": DRAFT_VERSION, "image_id": image_id,
                "class_id": int(draft.class_id), "prompts": [p.to_dict() for p in draft.prompts],
                "score": None if draft.score is None else float(draft.score),
                "model_id": draft.model_id}
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if draft.mask is not None:
            arrays["mask"] = np.packbits(np.asarray(draft.mask, bool))
            arrays["mask_shape"] = np.asarray(draft.mask.shape, np.int64)
        if draft.logits is not None:
            arrays["logits"] = np.asarray(draft.logits, np.float32)
        target = self.path(image_id)

        def write(fh: Any) -> None:
            np.savez_compressed(fh, **arrays)

        atomic_save(target, write)
        return target

    def load(self, image_id: str) -> Draft | None:
        """``image_id``'s draft, or None without one.

        Raises
        ------
        ValueError
            If the file is not a readable draft; the message names the file and the problem.
        """
        path = self.path(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the draft: {exc}") from exc
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                mask = None
                if "mask" in npz:
                    shape = tuple(int(x) for x in npz["mask_shape"])
                    n = int(np.prod(shape))
                    mask = np.unpackbits(npz["mask"], count=n).astype(bool).reshape(shape)
                logits = np.array(npz["logits"], np.float32) if "logits" in npz else None
            if meta.get("format") != DRAFT_FORMAT:
                raise ValueError(f"not a {DRAFT_FORMAT} file")
            prompts = tuple(prompt_from_dict(p) for p in meta["prompts"])
            score = meta.get("score")
            return Draft(int(meta["class_id"]), prompts, mask,
                         None if score is None else float(score), logits, meta.get("model_id"))
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile,
                json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable draft ({exc})") from exc

    def remove(self, image_id: str) -> bool:
        """Delete ``image_id``'s draft; True if there was one."""
        try:
            self.path(image_id).unlink()
        except FileNotFoundError:
            return False
        return True

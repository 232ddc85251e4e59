"""Open a trained proposal source from a path, for the annotator's "Propose with…" (Qt-free).

Two kinds of folders (or files) propose objects on an image without clicks:

- a **learned prompter** (``samlabel train-prompter SOURCE --out DIR``): the folder ``DIR``
  holding :data:`PROMPTER_FILE`, or the ``.pt`` prompter file itself →
  :class:`~napari_samlabel.learn.propose.PrompterSource`. It decodes with the SAM it was
  trained against, so it is refused (:class:`SourceError`, naming both SAMs) when the
  session's engine is another one.
- a **trained segmenter** (``samlabel train``): a model folder with ``model.pt`` and
  ``model.json`` (:mod:`napari_samlabel.learn.segmenter`) →
  :class:`~napari_samlabel.learn.source.SegmenterSource`. Its description is checked here;
  the weights load on the first proposal (on the engine lane, not the GUI thread).

Every refusal is a :class:`SourceError` whose message names the path and what was expected,
for the GUI to show as a notice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_samlabel.engine.protocol import ProposalSource
from napari_samlabel.learn import META_FILE, MODEL_FILE, PROMPTER_FILE

#: The files of a trained segmenter's model folder (``learn.segmenter``).
SEGMENTER_FILES = (MODEL_FILE, META_FILE)

EXPECTED = (f"a prompter folder (with {PROMPTER_FILE}, from samlabel train-prompter), a .pt "
            f"prompter file, or a segmenter folder (with {' and '.join(SEGMENTER_FILES)}, from "
            "samlabel train)")


class SourceError(ValueError):
    """A path that is no usable proposal source (the message is for the user)."""


def source_kind(path: str | os.PathLike[str]) -> str:
    """``"prompter"`` or ``"segmenter"``: what ``path`` holds.

    Raises
    ------
    SourceError
        If ``path`` is missing or neither kind (the message names it and what was expected).
    """
    p = Path(path).expanduser()
    if not str(path).strip():
        raise SourceError(f"choose {EXPECTED}")
    if not p.exists():
        raise SourceError(f"{p} does not exist; expected {EXPECTED}")
    if p.is_file():
        if p.suffix.lower() == ".pt" and p.name != SEGMENTER_FILES[0]:
            return "prompter"
        if p.name in SEGMENTER_FILES:
            return "segmenter"
        raise SourceError(f"{p} is not a proposal source; expected {EXPECTED}")
    if (p / PROMPTER_FILE).is_file():
        return "prompter"
    if (p / SEGMENTER_FILES[1]).is_file():
        if not (p / SEGMENTER_FILES[0]).is_file():
            raise SourceError(f"{p} has {SEGMENTER_FILES[1]} but no {SEGMENTER_FILES[0]} "
                              "(the trained weights): is the training finished?")
        return "segmenter"
    raise SourceError(f"{p} holds neither {PROMPTER_FILE} nor {SEGMENTER_FILES[1]}; "
                      f"expected {EXPECTED}")


def engine_device(engine: Any) -> str:
    """The torch device of ``engine`` (where a prompter must run to share its tensors)."""
    device = getattr(engine, "device", None)
    return "cpu" if device is None else str(device)


def open_source(path: str | os.PathLike[str], engine: Any = None, *,
                device: str | None = None, min_score: float = 0.5) -> ProposalSource:
    """The proposal source at ``path`` (see the module notes).

    Parameters
    ----------
    path : path
        A prompter folder or file, or a segmenter model folder (or its ``model.pt``).
    engine : Engine, optional
        The session's engine; a prompter trained against another SAM is refused.
    device : str, optional
        Torch device (default: the engine's, else ``"cpu"``).
    min_score : float
        A prompter's lowest class probability proposed (the tab's slider hides more).

    Raises
    ------
    SourceError
        Missing path, neither kind, an unreadable or malformed file, or a prompter of
        another SAM than ``engine``.
    """
    kind = source_kind(path)
    p = Path(path).expanduser()
    dev = device or engine_device(engine)
    if kind == "prompter":
        from napari_samlabel.learn.prompter import PrompterError, check_engine
        from napari_samlabel.learn.propose import PrompterSource

        file = p / PROMPTER_FILE if p.is_dir() else p
        try:
            source = PrompterSource.from_file(
                file, dev, min_score=min_score,
                name=f"prompter ({p.name if p.is_dir() else file.name})")
            if engine is not None:
                check_engine(source.info, engine, where=str(file))
        except PrompterError as exc:
            raise SourceError(str(exc)) from None
        return source
    from napari_samlabel.learn.segmenter import SegmenterError, SegmenterMeta
    from napari_samlabel.learn.source import SegmenterSource

    folder = p if p.is_dir() else p.parent
    try:
        SegmenterMeta.from_file(folder / SEGMENTER_FILES[1])
    except SegmenterError as exc:
        raise SourceError(str(exc)) from None
    if not (folder / SEGMENTER_FILES[0]).is_file():
        raise SourceError(f"{folder} has no {SEGMENTER_FILES[0]} (the trained weights)")
    return SegmenterSource(folder, dev)

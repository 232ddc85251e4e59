"""Replay a project: regenerate every accepted mask from its stored prompts with another model.

A project (:mod:`napari_samlabel.io.project`) stores, for each accepted object, the prompts
that produced it and the identity of the model (provenance). :func:`replay_project` feeds
the same prompts to another engine and writes the new masks, scores and model identity:

- **incremental** (default): the prompts are replayed as the annotator gave them, one
  decode per prompt with all prompts so far and the previous decode's logits
  (:func:`napari_samlabel.engine.policies.refine_object`, the GUI's own call), so the new
  model sees the same sequence of interactions; ``incremental=False`` makes one decode with
  all prompts.
- The result goes to a **new project** (``out``) holding the same images, classes and
  statuses, so the original masks stay for comparison; ``in_place=True`` rewrites the
  source project instead (its previous masks are then replaced).
- An image that fails (unreadable image, invalid prompt, engine error) is reported and
  skipped; the others are written. An object whose replay gives an empty mask is kept
  (with its prompts) and counted in ``empty`` — nothing is silently dropped.
- An object without prompts (accepted from a refiner, or imported from VOC) has nothing to
  replay: it is copied unchanged and listed in ``unprompted``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.policies import Policy, get_policy, refine_object
from napari_samlabel.engine.protocol import Engine


@dataclass
class ReplayReport:
    """Summary of a replay."""

    project: Path
    images: int = 0
    objects: int = 0
    decoder_calls: int = 0
    empty: list[tuple[str, int]] = field(default_factory=list)
    unprompted: list[tuple[str, int]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    model_id: str = ""

    def summary(self) -> str:
        """One line for the user."""
        return (f"{self.objects} objects of {self.images} images replayed with "
                f"{self.model_id} ({self.decoder_calls} decodes); {len(self.empty)} empty, "
                + (f"{len(self.unprompted)} without prompts kept as they were, "
                   if self.unprompted else "")
                + f"{len(self.failed)} images failed")


def replay_object(engine: Engine, obj: AnnotatedObject, shape: tuple[int, int],
                  policy: Policy, incremental: bool = True) -> tuple[AnnotatedObject, int]:
    """Recompute one object's mask from its prompts; return the new object and decode count.

    The engine must hold the object's image. An object without prompts is returned as it is
    (0 decodes): its mask did not come from prompts.
    """
    prompts = obj.prompts
    if not prompts:
        return obj, 0
    steps = range(1, len(prompts) + 1) if incremental else [len(prompts)]
    logits = None
    calls = 0
    result = None
    for k in steps:
        result = refine_object(engine, prompts[:k], shape, logits, policy)
        logits = result.logits  # None after a step without a positive prompt: start afresh
        calls += result.n_calls
    mask = result.mask if result is not None else np.zeros(shape, dtype=bool)
    score = float(result.score) if result is not None and result.n_calls else None
    new = replace(obj, mask=mask, score=score, model_id=str(engine.model_id),
                  logits=None, signals={}, modified=time.time())
    return new, calls


def replay_project(
    project: str | os.PathLike[str] | Any,
    engine: Engine,
    *,
    out: str | os.PathLike[str] | None = None,
    in_place: bool = False,
    policy: Policy | str | None = None,
    incremental: bool = True,
    loader: Callable[[Path], np.ndarray] | None = None,
    progress: ProgressCallback = no_progress,
) -> ReplayReport:
    """Regenerate every accepted mask of ``project`` with ``engine``.

    Parameters
    ----------
    project : path or Project
        The source project.
    engine : Engine
        Any engine implementing the protocol.
    out : path, optional
        Folder of the new project (must not hold a project yet). Required unless
        ``in_place``.
    in_place : bool
        Rewrite the source project's masks instead of writing a new project.
    policy : Policy or str, optional
        Prompt policy of the decodes (default ``"interactive"``, the GUI's).
    incremental : bool
        Replay prompt by prompt (see the module docstring).
    loader : callable, optional
        ``path -> RGB uint8`` (default :func:`napari_samlabel.io.images.load_image`).
    progress : callable
        ``progress(done, total, image_id)`` after each image.

    Raises
    ------
    ValueError
        Without ``out`` and without ``in_place``, or with both.
    FileExistsError
        If ``out`` already holds a project.
    napari_samlabel.io.project_schema.ProjectError
        If a new project cannot be created (an image whose size cannot be read is named).
    """
    from napari_samlabel.io.images import load_image
    from napari_samlabel.io.project import Project

    if (out is None) == (not in_place):
        raise ValueError("give either an output folder (out=...) or in_place=True")
    source = project if isinstance(project, Project) else Project.open(project)
    pol = get_policy(policy)
    load = loader or load_image
    ids = list(source.image_ids)
    if in_place:
        target = source
    else:
        assert out is not None  # checked above: out or in_place, not both
        target = Project.create(out, [source.image_path(i) for i in ids], source.classes)
    report = ReplayReport(target.folder, model_id=str(engine.model_id))
    with target.batch():
        for k, image_id in enumerate(ids, start=1):
            try:
                objects = source.read_objects(image_id)
                status = source.status(image_id)
                if objects:
                    image = load(source.image_path(image_id))
                    shape = (int(image.shape[0]), int(image.shape[1]))
                    engine.set_image(image)
                    new_objects = []
                    calls = 0
                    for obj in objects:
                        new, n = replay_object(engine, obj, shape, pol, incremental)
                        calls += n
                        new_objects.append(new)
                        if not obj.prompts:
                            report.unprompted.append((image_id, obj.object_id))
                        elif not new.mask.any():
                            report.empty.append((image_id, obj.object_id))
                    target.save_document(AnnotationDocument(image_id, shape, new_objects,
                                                            status))
                    report.objects += len(new_objects)
                    report.decoder_calls += calls
                if target is not source:
                    target.set_status(image_id, status)
                report.images += 1
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the replay
                report.failed[image_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            progress(k, len(ids), image_id)
    return report

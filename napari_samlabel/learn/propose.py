"""Proposals from a trained prompter: the annotator's candidate list and ``samlabel propose``.

:class:`PrompterSource` is an :class:`~napari_samlabel.engine.protocol.ProposalSource`: on an
image whose SAM embedding the engine holds, the prompter's queries give classes and prompt
tokens, SAM's frozen mask decoder gives each kept query's mask, and every mask becomes a
:class:`~napari_samlabel.core.candidates.Candidate` (score: the query's class probability;
its box and low-resolution logits, so refining it with +/- points starts where SAM stopped).

:func:`propose_images` runs it over a folder of images (or the not yet annotated images of a
project: "train on what I have done, propose on the rest") and writes a pseudo-label output
folder (:mod:`napari_samlabel.pseudo.store`: per-image label PNGs, ``scores/<id>.json`` with
each proposal's class probability as its ``score``, ``run.json``, and the VOC tree in
``OUT/voc``), which ``samlabel curate`` reads like the output of ``samlabel pseudo-label``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_samlabel.core.candidates import Candidate, sort_by_score
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box
from napari_samlabel.learn.prompter import (
    Prompter,
    PrompterInfo,
    check_engine,
    decode_tokens,
    load_prompter,
    sam_model,
)

SOURCE = "prompter"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def box_of(mask: np.ndarray) -> Box:
    """The bounding box of a non-empty mask in ``(row, col)`` (inclusive pixel corners)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return Box((float(rows[0]), float(cols[0])), (float(rows[-1]), float(cols[-1])))


class PrompterSource:
    """A trained prompter as a source of proposals (``engine.protocol.ProposalSource``).

    Parameters
    ----------
    model : Prompter
    info : PrompterInfo
        What the prompter was trained with (classes, SAM identity).
    min_score : float
        Queries whose best class probability is below it propose nothing.
    nms_iou : float
        Of two proposals of one class whose masks overlap by more than this IoU, the less
        probable is dropped (queries sometimes repeat an object).
    name : str, optional
        Shown in the GUI (default ``"prompter"``).
    """

    def __init__(self, model: Prompter, info: PrompterInfo, *, min_score: float = 0.5,
                 nms_iou: float = 0.7, name: str | None = None) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.model = model.eval()
        self.info = info
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.name = name or SOURCE

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "cpu", **kwargs: Any
                  ) -> PrompterSource:
        """Load a prompter file (:func:`~napari_samlabel.learn.prompter.load_prompter`)."""
        model, info = load_prompter(path, device)
        kwargs.setdefault("name", f"prompter ({Path(path).name})")
        return cls(model, info, **kwargs)

    def _class_id(self, k: int, classes: ClassTable | None) -> int | None:
        name = self.info.classes.name(k + 1)
        if classes is None:
            return k + 1
        return classes.index(name) if name in classes else None

    def propose(self, engine: Any, image: np.ndarray, classes: ClassTable | None = None,
                progress: ProgressCallback = no_progress) -> list[Candidate]:
        """Candidates for ``image``, best first (see the module docstring).

        ``engine`` must be the SAM the prompter was trained against; ``image`` is set on it
        unless it is already the current image. Class ids are those of ``classes`` (by
        name; None when the table lacks the prompter's class), or the prompter's own table
        when ``classes`` is None.

        Raises
        ------
        PrompterError
            If ``engine`` is another SAM than the prompter's, or not a SAM engine.
        """
        if engine is None:
            raise ValueError("the prompter needs the SAM engine it was trained against")
        check_engine(self.info, engine)
        shape = (int(image.shape[0]), int(image.shape[1]))
        pred = engine.predictor
        if not engine.is_image_set or tuple(pred.original_size) != shape:
            engine.set_image(image)
        progress(0, 2, "prompter")
        found = self.predict(engine, pred.features, tuple(pred.input_size), shape)
        progress(1, 2, "mask decoder")
        out = [Candidate(mask, score, SOURCE, self._class_id(k, classes), box_of(mask),
                         logits, engine.logits_frame, (box_of(mask),))
               for mask, score, k, logits, _ in found]
        progress(2, 2, f"{len(out)} proposals")
        return sort_by_score(out)

    def predict(self, engine: Any, features: torch.Tensor, input_size: tuple[int, ...],
                original_size: tuple[int, int]
                ) -> list[tuple[np.ndarray, float, int, np.ndarray, float]]:
        """``(mask, class probability, prompter class, low-res logits, SAM IoU)`` per proposal.

        ``features`` is the ``(1, C, h, w)`` embedding of an image of ``original_size``
        resized to ``input_size`` (SAM's frame). Sorted best first, after the per-class NMS.
        """
        model = sam_model(engine)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits, tokens = self.model(features.to(device, torch.float32))
        probs = logits[0].softmax(-1)[:, :-1]
        score, cls = probs.max(-1)
        keep = torch.nonzero(score >= self.min_score).flatten()
        if len(keep) == 0:
            return []
        low_res, iou = decode_tokens(engine, features, tokens[0, keep])
        with torch.no_grad():
            masks = model.postprocess_masks(low_res, input_size, original_size)
        masks_np = (masks[:, 0] > model.mask_threshold).cpu().numpy()
        low_np = low_res[:, 0].float().cpu().numpy()
        found = []
        for j, q in enumerate(keep.tolist()):
            if masks_np[j].any():
                found.append((masks_np[j], float(score[q]), int(cls[q]), low_np[j],
                              float(iou[j, 0])))
        found.sort(key=lambda f: -f[1])
        kept: list[tuple[np.ndarray, float, int, np.ndarray, float]] = []
        for f in found:
            if all(k[2] != f[2] or mask_iou(k[0], f[0]) <= self.nms_iou for k in kept):
                kept.append(f)
        return kept


# -- batch proposals -----------------------------------------------------------------------------

@dataclass
class ProposeReport:
    """What :func:`propose_images` did."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    proposals: int = 0
    voc_root: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the user."""
        return (f"{len(self.done)} images proposed ({self.proposals} proposals), "
                f"{len(self.skipped)} already done, {len(self.failed)} failed")


def images_to_propose(path: str | os.PathLike[str], include_annotated: bool = False
                      ) -> dict[str, Path]:
    """``{image_id: path}`` of an image folder, or of a project's images not yet annotated.

    For a project folder, images with accepted objects or marked done are left out unless
    ``include_annotated`` (the rest is what the annotator has not labelled yet).

    Raises
    ------
    ValueError
        If ``path`` is neither a folder of images nor a project, or two images share an id.
    """
    from napari_samlabel.io.project import Project

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"image folder not found: {folder}")
    if Project.is_project(folder):
        from napari_samlabel.core.document import ImageStatus

        project = Project.open(folder)
        out = {}
        for entry in project:
            if not include_annotated and (entry.status == ImageStatus.DONE
                                          or project.read_objects(entry.image_id)):
                continue
            out[entry.image_id] = project.image_path(entry.image_id)
        return out
    from napari_samlabel.io.images import list_images

    paths: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in paths:
            raise ValueError(f"two images have the id {p.stem!r}: {paths[p.stem]} and {p}")
        paths[p.stem] = p
    if not paths:
        raise ValueError(f"no images in {folder}")
    return paths


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def propose_images(source: PrompterSource, engine: Any, images: Mapping[str, Path],
                   out: str | os.PathLike[str], *, prompter_file: str | os.PathLike[str] |
                   None = None, export: bool = True, progress: ProgressCallback = no_progress
                   ) -> ProposeReport:
    """Propose on every image and write a pseudo-label output folder (see the module).

    Reruns skip images finished with the same prompter, SAM and settings. A failing image
    is recorded with its reason and skipped.
    """
    from napari_samlabel.core.compose import MaskEntry, compose_label_maps
    from napari_samlabel.io.images import load_image
    from napari_samlabel.pseudo.pipeline import export_voc
    from napari_samlabel.pseudo.store import ResultStore

    t0 = time.perf_counter()
    check_engine(source.info, engine)
    store = ResultStore(out)
    report = ProposeReport(Path(out))
    table = source.info.classes
    ident = _file_sha(Path(prompter_file)) if prompter_file else "in-memory"
    run = {"kind": "prompter", "model_id": str(engine.model_id), "classes": table.to_list(),
           "prompter": {"file": str(prompter_file) if prompter_file else None, "sha256": ident,
                        "trained": source.info.trained, "prompt": source.info.prompt},
           "min_score": source.min_score, "nms_iou": source.nms_iou}
    fingerprint = hashlib.sha256(repr(sorted(run.items())).encode()).hexdigest()
    store.write_json("run.json", {**run, "images": len(images)})
    for n, (image_id, path) in enumerate(sorted(images.items()), 1):
        if store.is_done(image_id, fingerprint):
            report.skipped.append(image_id)
            progress(n, len(images), image_id)
            continue
        try:
            image = load_image(path)
            cands = source.propose(engine, image, None)
            shape = (int(image.shape[0]), int(image.shape[1]))
            entries = [MaskEntry(int(c.class_id or 0), k, c.mask, c.score)
                       for k, c in enumerate(cands, 1)]
            semantic, instance = compose_label_maps(shape, entries)
            counts = np.bincount(instance.ravel(), minlength=len(cands) + 1)
            records = [{"unit": k, "object_id": k, "class_id": int(c.class_id or 0),
                        "class": table.name(int(c.class_id or 0)),
                        "score": round(float(c.score), 6), "source": SOURCE,
                        "mask_pixels": int(c.area), "pixels": int(counts[k])}
                       for k, c in enumerate(cands, 1)]
            store.write(image_id, semantic, instance, {
                "image_id": image_id, "image": str(path), "fingerprint": fingerprint,
                "shape": list(shape), "model_id": str(engine.model_id), "kind": "prompter",
                "unit": "object", "objects": records})
        except (OSError, ValueError, RuntimeError) as exc:
            report.failed[image_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            report.done.append(image_id)
            report.proposals += len(cands)
        progress(n, len(images), image_id)
    finished = sorted(report.done + report.skipped)
    if export and finished:
        report.voc_root, errors = export_voc(out, {i: Path(images[i]) for i in finished}, table)
        for image_id, error in errors.items():
            report.failed[image_id] = f"VOC export: {error}"
    store.write_json("failures.json", report.failed)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["PrompterSource", "ProposeReport", "box_of", "images_to_propose", "mask_iou",
           "propose_images"]

"""Batch pseudo-labelling: weak labels -> SAM masks -> label maps -> a VOC dataset.

For every image with weak labels: load it, ``engine.set_image``, segment each unit with the
prompt policy (:mod:`napari_samlabel.engine.policies`), compose the masks into a class map and
an object map (:func:`napari_samlabel.core.compose.compose_label_maps`: pixels no unit claims
are background 0; where units overlap, the higher predicted IoU wins, ties go to the later
unit), and write the image's results at once (:mod:`napari_samlabel.pseudo.store`). At the end
the finished images are exported as a VOC tree (:class:`napari_samlabel.io.voc.writer.VocWriter`) in
``OUT/voc``.

Units
-----
``policy.unit == "class"`` (points, scribbles, CAMs: the seed paper's setting) segments all
prompts of a class together, giving one mask per class; the VOC ``SegmentationObject`` map is
then made of the connected components of each class. ``"object"`` (boxes) segments each weak
object alone; the object map holds those objects. ``"concept"`` (kinds ``tags`` and ``text``,
SAM 3) prompts each class by its name and keeps every instance found
(:func:`label_concepts`).

Negatives for a unit come from :meth:`WeakLabels.negatives_for`: background prompts when
``policy.background_negatives``, other classes' points and scribbles when
``policy.negatives_from_other_classes``.

Robustness
----------
A failing image (unreadable file, bad prompt, engine error) is recorded with its reason and
skipped; the run goes on and returns every failure in :attr:`PseudoLabelReport.failed` (also
written to ``OUT/failures.json``). A rerun skips finished images (same settings and weak
labels); see :mod:`napari_samlabel.pseudo.store`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.compose import MaskEntry, compose_label_maps
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.policies import ObjectResult, Policy, get_policy, segment_object
from napari_samlabel.engine.protocol import Engine
from napari_samlabel.io.weak import WeakLabelError, WeakLabels
from napari_samlabel.pseudo.engines import EngineSpec
from napari_samlabel.pseudo.objects import instances_for
from napari_samlabel.pseudo.store import VOC_DIR, ResultStore

ImageLoader = Callable[[Path], np.ndarray]


def _default_loader(path: Path) -> np.ndarray:
    from napari_samlabel.io.images import load_image

    return load_image(path)


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image.

    Attributes
    ----------
    image_id : str
    status : str
        ``"done"``, ``"skipped"`` (finished by an earlier run) or ``"failed"``.
    error : str or None
        Why it failed (one line).
    objects : int
        Units segmented.
    decoder_calls : int
    seconds : float
        Wall time spent on the image.
    worker : str
        Where it ran (``"local"`` or a dask worker address).
    engine_token : int
        ``id()`` of the engine object used (to check that workers reuse their engine).
    """

    image_id: str
    status: str
    error: str | None = None
    objects: int = 0
    decoder_calls: int = 0
    seconds: float = 0.0
    worker: str = "local"
    engine_token: int = 0


@dataclass
class PseudoLabelReport:
    """Summary of a run."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: Run-level write errors (the VOC export or failures.json on a full disk), one line each.
    write_errors: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    voc_root: Path | None = None
    outcomes: list[ImageOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def finished(self) -> list[str]:
        """Images with results (done now or earlier), sorted."""
        return sorted(self.done + self.skipped)

    def summary(self) -> str:
        """One line for the user."""
        parts = [f"{len(self.done)} labelled", f"{len(self.skipped)} already done",
                 f"{len(self.failed)} failed"]
        if self.unlabelled:
            parts.append(f"{len(self.unlabelled)} images without weak labels ignored")
        return ", ".join(parts)


# -- one image --------------------------------------------------------------------------------

def units_of(weak: WeakLabels, policy: Policy) -> list[tuple[Any, tuple[Any, ...]]]:
    """The ``(ObjectPrompts, negatives)`` to segment for one image under ``policy``."""
    objs = list(weak.by_class().values()) if policy.unit == "class" else list(weak.objects)
    return [(o, weak.negatives_for(o.class_id,
                                   include_background=policy.background_negatives,
                                   other_classes=policy.negatives_from_other_classes))
            for o in objs]


def label_image(engine: Engine, image: np.ndarray, weak: WeakLabels, policy: Policy | str,
                classes: ClassTable | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Pseudo-label one image.

    Parameters
    ----------
    engine : Engine
        Any engine implementing the protocol; ``set_image`` is called here.
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB.
    weak : WeakLabels
        The image's weak labels.
    policy : Policy or str
    classes : ClassTable, optional
        For class names in the records (VOC by default).

    Returns
    -------
    semantic, instance, records
        ``uint8`` class map, ``uint8`` unit map (unit ``k`` of the records has value ``k``),
        and one JSON-ready record per unit (class, predicted IoU, chosen mask, calls, pixels
        kept after composition, and :func:`mask_quality`'s ``stability`` and
        ``iou_spread``, by which curation can rank pseudo labels).

    Raises
    ------
    WeakLabelError
        If the weak labels state another image size, a prompt lies outside the image
        (:meth:`WeakLabels.check_within`; a scribble wholly or partly outside is not dropped
        silently) or a class is not in the table; the message names the file and the
        object's entry in it.
    ValueError
        If a prompt is invalid for the policy (named by file, class and entries) or there
        are more than 254 units.
    """
    policy = get_policy(policy)
    table = as_class_table(classes)
    shape = (int(image.shape[0]), int(image.shape[1]))
    if policy.unit == "concept":
        return label_concepts(engine, image, weak, policy, table)
    # Every prompt must fall on the image: a stroke or point outside it means swapped x/y or
    # the wrong image, and dropping it would leave an empty mask that looks like a result.
    weak.check_within(shape)
    units = units_of(weak, policy)
    if len(units) > 254:
        raise ValueError(f"{weak.source or weak.image_id}: {len(units)} objects do not fit an "
                         "8-bit object map (at most 254)")
    engine.set_image(image)
    entries: list[MaskEntry] = []
    records: list[dict[str, Any]] = []
    for k, (obj, negatives) in enumerate(units, start=1):
        what = _unit_name(weak, obj, policy, table)
        if obj.class_id >= len(table):
            raise WeakLabelError(weak.source or weak.image_id,
                                 f"class index {obj.class_id} is not in the class list "
                                 f"(0..{len(table) - 1})", what)
        try:
            res = segment_object(engine, obj, shape, policy, negatives=negatives)
        except ValueError as exc:  # a prompt the policy refused: say which unit and file
            raise ValueError(f"{weak.source or weak.image_id} ({what}): {exc}") from exc
        entries.append(MaskEntry(obj.class_id, k, res.mask, res.score))
        records.append({
            "unit": k, "object_id": int(obj.object_id), "class_id": int(obj.class_id),
            "class": table.name(obj.class_id), "score": round(float(res.score), 6),
            "mask_index": int(res.index), "ious": [round(float(v), 6) for v in res.ious],
            "decoder_calls": int(res.n_calls), "positive_points": int(res.n_positive),
            "negative_points": int(res.n_negative), "prompts": len(obj.prompts),
            "mask_pixels": int(res.mask.sum()), **mask_quality(res),
        })
    semantic, instance = compose_label_maps(shape, entries)
    counts = np.bincount(instance.ravel(), minlength=len(units) + 1)
    for rec in records:
        rec["pixels"] = int(counts[rec["unit"]])
    return semantic, instance, records


def label_concepts(engine: Engine, image: np.ndarray, weak: WeakLabels, policy: Policy,
                   classes: ClassTable | None = None
                   ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Pseudo-label one image from class names (kinds ``tags`` and ``text``, SAM 3).

    Each class of ``weak`` (its tags, or every class for ``text``) is prompted with its
    phrase (:func:`~napari_samlabel.core.classes.name_phrase`, overridden by
    ``policy.phrases``); every instance scoring at least ``policy.score_threshold`` is a unit.
    Where instances overlap, the higher score wins (:func:`compose_label_maps` with the
    score as the predicted IoU). Classes not in ``weak`` are never prompted, so never written.

    Returns and raises as :func:`label_image`; ``ValueError`` also when ``engine`` cannot
    answer concept prompts, or more than 254 instances are found.
    """
    from napari_samlabel.core.classes import name_phrase
    from napari_samlabel.engine.protocol import ConceptEngine
    from napari_samlabel.engine.quality import stability_score

    table = as_class_table(classes)
    if not isinstance(engine, ConceptEngine):
        raise ValueError(f"kind {weak.kind!r} prompts with class names: it needs a model that "
                         f"finds every instance of a concept (--model sam3), not "
                         f"{engine.model_id!r}")
    shape = (int(image.shape[0]), int(image.shape[1]))
    overrides = dict(policy.phrases)
    engine.set_image(image)
    entries: list[MaskEntry] = []
    records: list[dict[str, Any]] = []
    for cid in weak.class_ids:
        if cid >= len(table):
            raise WeakLabelError(weak.source or weak.image_id,
                                 f"class index {cid} is not in the class list "
                                 f"(0..{len(table) - 1})")
        phrase = name_phrase(table.name(cid), overrides)
        for cand in engine.find_all(phrase, threshold=policy.score_threshold):
            if cand.mask.shape != shape:
                raise ValueError(f"{engine.model_id}: a {cand.mask.shape} mask for a "
                                 f"{shape} image")
            k = len(entries) + 1
            if k > 254:
                raise ValueError(f"{weak.image_id}: more than 254 instances do not fit an "
                                 "8-bit object map; raise --score-threshold")
            entries.append(MaskEntry(cid, k, cand.mask, float(cand.score)))
            logits = cand.low_res_logits
            records.append({
                "unit": k, "object_id": k, "class_id": int(cid), "class": table.name(cid),
                "phrase": phrase, "source": cand.source,
                "score": round(float(cand.score), 6), "mask_index": -1,
                "ious": [round(float(cand.score), 6)], "decoder_calls": 0,
                "positive_points": 0, "negative_points": 0, "prompts": 0,
                "mask_pixels": int(cand.mask.sum()),
                "stability": None if logits is None else round(float(
                    stability_score(np.asarray(logits, np.float32))), 6),
                "iou_spread": None,
            })
    semantic, instance = compose_label_maps(shape, entries)
    counts = np.bincount(instance.ravel(), minlength=len(entries) + 1)
    for rec in records:
        rec["pixels"] = int(counts[rec["unit"]])
    return semantic, instance, records


def mask_quality(res: ObjectResult) -> dict[str, float | None]:
    """``stability`` and ``iou_spread`` of a segmented unit, for ranking pseudo labels.

    ``stability``: SAM's stability score of the chosen mask's low-res logits
    (:func:`napari_samlabel.engine.quality.stability_score`; None without a decode);
    ``iou_spread``: the highest minus the lowest predicted IoU of the last decode's
    candidate masks (None with fewer than two: a confident prompt has its candidates agree).
    """
    from napari_samlabel.engine.quality import stability_score

    stability = None if res.logits is None else round(float(stability_score(res.logits[0])), 6)
    ious = np.asarray(res.ious, dtype=np.float64)
    spread = round(float(ious.max() - ious.min()), 6) if ious.size >= 2 else None
    return {"stability": stability, "iou_spread": spread}


def _unit_name(weak: WeakLabels, obj: Any, policy: Policy, table: ClassTable) -> str:
    """The unit for messages, with the source entries of its objects."""
    if policy.unit == "class":
        return weak.describe_unit(obj.class_id, table)
    index = next(i for i, o in enumerate(weak.objects) if o is obj)
    return weak.where_is(index)


def run_fingerprint(kind: str, policy: Policy, model_id: str, classes: ClassTable) -> dict:
    """The run settings that decide whether an earlier result can be reused."""
    return {"kind": kind, "policy": policy.to_dict(), "model_id": model_id,
            "classes": classes.to_list()}


def image_fingerprint(run: dict[str, Any], weak: WeakLabels) -> str:
    """SHA-256 of the run settings and one image's weak labels."""
    payload = json.dumps({"run": run, "weak": weak.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def process_image(engine: Engine, image_id: str, image_path: Path, weak: WeakLabels,
                  policy: Policy, classes: ClassTable, out: str | os.PathLike[str],
                  fingerprint: str, loader: ImageLoader | None = None,
                  worker: str = "local") -> ImageOutcome:
    """Label one image and write its results; never raises for a bad image.

    Used by the local loop and by dask workers alike.
    """
    t0 = time.perf_counter()
    try:
        image = (loader or _default_loader)(Path(image_path))
        semantic, instance, records = label_image(engine, image, weak, policy, classes)
        record = {"image_id": image_id, "image": str(image_path), "fingerprint": fingerprint,
                  "shape": [int(semantic.shape[0]), int(semantic.shape[1])],
                  "model_id": str(engine.model_id), "kind": weak.kind,
                  "policy": policy.to_dict(), "unit": policy.unit, "weak_source": weak.source,
                  "objects": records}
        ResultStore(out).write(image_id, semantic, instance, record)
    except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        frames = traceback.extract_tb(exc.__traceback__)
        if frames and not isinstance(exc, (ValueError, OSError, KeyError)):
            # Unexpected: keep the place in the code for the failures file.
            msg += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
        return ImageOutcome(image_id, "failed", msg, seconds=time.perf_counter() - t0,
                            worker=worker, engine_token=id(engine))
    return ImageOutcome(image_id, "done", None, len(records),
                        sum(r["decoder_calls"] for r in records),
                        time.perf_counter() - t0, worker, id(engine))


# -- a whole dataset --------------------------------------------------------------------------

def _image_paths(images: str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any]
                 ) -> dict[str, Path]:
    if isinstance(images, Mapping):
        return {str(k): Path(v) for k, v in images.items()}
    if isinstance(images, (str, os.PathLike)):
        from napari_samlabel.io.images import list_images

        paths = list_images(images)
    else:
        paths = [Path(p) for p in images]
    out: dict[str, Path] = {}
    for p in paths:
        if p.stem in out:
            raise ValueError(f"two images have the id {p.stem!r}: {out[p.stem]} and {p}")
        out[p.stem] = p
    return out


def pseudo_label(
    images: str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any],
    weak: Mapping[str, WeakLabels],
    out: str | os.PathLike[str],
    engine: Engine | EngineSpec,
    *,
    policy: Policy | str | None = None,
    kind: str | None = None,
    classes: ClassTable | Sequence[str] | None = None,
    loader: ImageLoader | None = None,
    progress: ProgressCallback = no_progress,
    scheduler: Any = None,
    export: bool = True,
    border: int = 0,
    seed: int = 0,
    input_errors: Mapping[str, str] | None = None,
) -> PseudoLabelReport:
    """Pseudo-label a dataset from weak labels.

    Parameters
    ----------
    images : folder, mapping or sequence
        An image folder, ``{image_id: path}``, or image paths (id = file stem).
    weak : mapping of str to WeakLabels
        Weak labels per image id (:func:`napari_samlabel.io.weak.read_weak_labels`).
        Images without weak labels are ignored (listed in ``report.unlabelled``); weak
        labels without an image fail.
    out : path
        Output folder (layout in :mod:`napari_samlabel.pseudo.store`).
    engine : Engine or EngineSpec
        Any engine implementing the protocol, or a spec to build one (required with
        ``scheduler``: workers build their own engine).
    policy : Policy or str, optional
        Default: the preset of ``kind`` (the paper's best setting).
    kind : str, optional
        Weak-label kind; default: the kind of the first weak label.
    classes : ClassTable or names, optional
        VOC by default.
    loader : callable, optional
        ``path -> RGB uint8`` (default :func:`napari_samlabel.io.images.load_image`); must
        be picklable with ``scheduler``.
    progress : callable
        ``progress(done, total, image_id)`` after each image.
    scheduler : str or distributed.Client, optional
        Run on a dask.distributed cluster (:mod:`napari_samlabel.pseudo.distributed`).
    export : bool
        Write the VOC tree ``OUT/voc`` from all finished images at the end.
    border : int
        Void band width for the VOC export (0: none).
    seed : int
        Seed of the VOC train/val split.
    input_errors : mapping of str to str, optional
        ``{image_id: reason}`` for images whose weak labels could not be read (collected with
        ``read_weak_labels(..., on_error=...)``). They are reported failed, listed at the end
        and in ``failures.json`` like any failing image, and not labelled, even if another
        file gave them labels.

    Returns
    -------
    PseudoLabelReport
    """
    t0 = time.perf_counter()
    table = as_class_table(classes)
    kind = kind or next((w.kind for w in weak.values()), "points")
    pol = get_policy(policy, kind=kind)
    paths = _image_paths(images)
    if scheduler is not None and not isinstance(engine, EngineSpec):
        raise TypeError("with a scheduler, pass an EngineSpec: workers build their own engine")
    if export:  # refuse a foreign OUT/voc now, not after labelling every image
        from napari_samlabel.io.voc.writer import check_output_folder

        check_output_folder(Path(out) / VOC_DIR, overwrite=True)
    store = ResultStore(out)
    report = PseudoLabelReport(Path(out))
    # The model identity of the fingerprint is the resolved model_id (model type + the
    # weights' SHA-256): the same for a local and a cluster run, independent of where the
    # checkpoint or the cache lives, and different when other weights sit at the same path.
    model_key = _model_key(engine, scheduler)
    run = run_fingerprint(kind, pol, model_key, table)
    bad_inputs = {str(k): str(v) for k, v in (input_errors or {}).items()}
    ids = sorted(set(weak) | set(bad_inputs))
    report.unlabelled = sorted(set(paths) - set(ids))
    store.write_json("run.json", {**run, "images": len(ids)})
    total = len(ids)
    todo: list[tuple[str, Path, WeakLabels, str]] = []
    count = 0

    def record(outcome: ImageOutcome) -> None:
        nonlocal count
        count += 1
        report.outcomes.append(outcome)
        if outcome.status == "done":
            report.done.append(outcome.image_id)
        elif outcome.status == "skipped":
            report.skipped.append(outcome.image_id)
        else:
            report.failed[outcome.image_id] = outcome.error or "failed"
        progress(count, total, outcome.image_id)

    for image_id in ids:
        if image_id in bad_inputs:
            record(ImageOutcome(image_id, "failed", f"weak labels: {bad_inputs[image_id]}"))
            continue
        fp = image_fingerprint(run, weak[image_id])
        if image_id not in paths:
            record(ImageOutcome(image_id, "failed", f"no image file for {image_id!r} among "
                                f"the {len(paths)} images"))
        elif store.is_done(image_id, fp):
            record(ImageOutcome(image_id, "skipped"))
        else:
            todo.append((image_id, paths[image_id], weak[image_id], fp))

    if scheduler is None and todo:
        local_engine = engine.build() if isinstance(engine, EngineSpec) else engine
        for image_id, path, w, fp in todo:
            record(process_image(local_engine, image_id, path, w, pol, table, out, fp, loader))
    elif todo:
        from napari_samlabel.pseudo.distributed import run_on_cluster

        assert isinstance(engine, EngineSpec)  # checked above: a scheduler needs a spec
        run_on_cluster(scheduler, engine, todo, pol, table, out, loader, record)

    if export and report.finished:
        try:
            report.voc_root, export_errors = export_voc(
                out, {i: paths[i] for i in report.finished}, table, border=border, seed=seed)
        except OSError as exc:  # a full disk: the per-image failures must still be reported
            report.write_errors.append(f"VOC export: {exc}")
            export_errors = {}
        for image_id, error in export_errors.items():
            report.failed[image_id] = f"VOC export: {error}"
            report.done = [i for i in report.done if i != image_id]
            report.skipped = [i for i in report.skipped if i != image_id]
    try:
        store.write_json("failures.json", report.failed)
    except OSError as exc:
        report.write_errors.append(str(exc))
    report.seconds = time.perf_counter() - t0
    return report


def _model_key(engine: Engine | EngineSpec, scheduler: Any) -> str:
    if not isinstance(engine, EngineSpec):
        return str(engine.model_id)
    from napari_samlabel.engine.checkpoint import CheckpointError

    try:
        return engine.model_id()
    except (CheckpointError, OSError) as exc:
        if scheduler is None:
            raise
        # The checkpoint may live on the workers only; they will say if it is missing.
        warnings.warn(f"cannot resolve the checkpoint here ({exc}); finished images are "
                      "recognised by the engine settings instead of the weights' SHA-256",
                      stacklevel=3)
        return engine.describe()


def export_voc(out: str | os.PathLike[str], images: Mapping[str, Path],
               classes: ClassTable, border: int = 0, seed: int = 0,
               progress: ProgressCallback = no_progress) -> tuple[Path, dict[str, str]]:
    """Write ``OUT/voc/VOCdevkit/VOC2012`` from the finished per-image results.

    The object map of a run by object becomes ``SegmentationObject`` as is; for a run by
    class, objects are the connected components of each class (or, when a fragmented mask
    has more components than an 8-bit map holds, the class units themselves). Replaces an
    earlier export (the writer builds the new tree aside and swaps it in).

    Returns
    -------
    voc2012, errors
        The ``VOC2012`` folder, and ``{image_id: reason}`` for images the writer refused
        (left out of the dataset; the others are written).
    """
    from napari_samlabel.io.voc import VocError, voc_id
    from napari_samlabel.io.voc.writer import VocWriter

    store = ResultStore(out)
    errors: dict[str, str] = {}
    owner: dict[str, str] = {}
    with VocWriter(Path(out) / VOC_DIR, classes, border=border, seed=seed, overwrite=True,
                   progress=progress, total=len(images)) as writer:
        for image_id in sorted(images):
            rec = store.read_record(image_id) or {}
            safe = voc_id(image_id)  # the renaming rule of `samlabel export` too
            if safe in owner:
                errors[image_id] = (f"images {owner[safe]!r} and {image_id!r} both become "
                                    f"{safe!r} in VOC; rename one of the files")
                continue
            owner[safe] = image_id
            try:
                semantic, instance = store.read_maps(image_id)
                by_object = rec.get("unit") == "object"
                writer.add(safe, images[image_id], semantic,
                           instance if by_object else instances_for(semantic, instance))
            except VocError as exc:
                errors[image_id] = str(exc)
    return Path(out) / VOC_DIR / "VOCdevkit" / "VOC2012", errors

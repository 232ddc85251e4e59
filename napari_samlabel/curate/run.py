"""The whole curation run: assess every image of a source, rank, write the queue and report.

:func:`curate` is what ``samlabel curate`` runs: it opens the source
(:func:`~napari_samlabel.curate.sources.open_source`) and the ground truth when given,
assesses and ranks every image (:mod:`napari_samlabel.curate.assessment`), and writes the
queue files (:mod:`napari_samlabel.curate.queue`) and the HTML report
(:mod:`napari_samlabel.curate.report`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.curate.assessment import ImageAssessment, assess_image, rank_images
from napari_samlabel.curate.matching import GroundTruth
from napari_samlabel.curate.queue import failures, write_queue
from napari_samlabel.curate.report import write_report
from napari_samlabel.curate.signals import Thresholds
from napari_samlabel.curate.sources import GroundTruthFolder, open_source


@dataclass
class CurationResult:
    """What :func:`curate` did."""

    ranked: list[ImageAssessment]
    paths: dict[str, Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unannotated: int = 0
    without_gt: int = 0

    def summary(self) -> str:
        """A few lines for the terminal."""
        flagged = len(failures(self.ranked))
        lines = [f"{len(self.ranked)} images assessed, {flagged} flagged "
                 f"(failures: {self.paths['failures']})",
                 f"report: {self.paths['report']}"]
        if self.ranked:
            worst = ", ".join(f"{a.image_id} ({a.score:.2f})" for a in self.ranked[:5])
            lines.insert(1, f"worst: {worst}")
        if self.unannotated:
            lines.append(f"{self.unannotated} images not annotated yet (status new) were left "
                         "out")
        if self.without_gt:
            lines.append(f"{self.without_gt} images have no ground truth")
        for iid, msg in self.skipped:
            lines.append(f"skipped {iid}: {msg}")
        return "\n".join(lines)


def curate(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    gt: str | os.PathLike[str] | None = None,
    weak: str | os.PathLike[str] | None = None,
    top: int = 50,
    thresholds: Thresholds | None = None,
    max_side: int = 320,
    min_area: int | None = None,
    progress: ProgressCallback = no_progress,
    report_progress: ProgressCallback = no_progress,
) -> CurationResult:
    """Assess every image of a project or VOC tree, rank them, write the queue and report.

    Parameters
    ----------
    source : path
        A project folder, a pseudo-label output folder or a VOC tree (see
        :func:`~napari_samlabel.curate.sources.open_source`).
    out_dir : path
        Output folder (created if needed); only the queue files, ``report.html`` and
        ``thumbnails/`` in it are replaced.
    gt : path, optional
        Ground truth (see :class:`~napari_samlabel.curate.sources.GroundTruthFolder`).
    weak : path, optional
        The weak labels of a pseudo-label run (see
        :class:`~napari_samlabel.curate.sources.PseudoSource`).
    top : int
        Number of images in the HTML report.
    thresholds : Thresholds, optional
        Flag thresholds (default: the documented defaults).
    max_side : int
        Longest thumbnail side.
    min_area : int, optional
        VOC trees without ``SegmentationObject``: class regions smaller than this many pixels
        are not objects (default: that of ``samlabel import-voc``, see
        :class:`~napari_samlabel.curate.sources.VocSource`).
    progress, report_progress : callable
        ``progress(done, total, image_id)`` while assessing and while rendering thumbnails.

    Raises
    ------
    ValueError
        If the source or the ground-truth folder cannot be opened. A broken image (unreadable
        mask, bad ground truth) is skipped and listed in ``CurationResult.skipped`` and in
        ``queue.json`` instead.
    """
    thresholds = thresholds or Thresholds()
    src = open_source(source, weak, min_area)
    truth = GroundTruthFolder(gt) if gt is not None else None
    total = len(src)
    assessed: list[ImageAssessment] = []
    skipped: list[tuple[str, str]] = []
    unannotated = without_gt = 0
    for n, item in enumerate(src.items(), 1):
        if isinstance(item, tuple):
            skipped.append((item[0], str(item[1])))
            progress(n, total, item[0])
            continue
        if src.kind == "project" and item.status is None:
            unannotated += 1
            progress(n, total, item.image_id)
            continue
        try:
            truth_item = truth.get(item.image_id, item.shape) if truth is not None else None
            if truth is not None and truth_item is None:
                without_gt += 1
            parts = [o.object_id for o in item.objects if src.classes.is_part(o.class_id)]
            assessed.append(assess_image(item.image_id, item.shape, item.objects,
                                         gt=truth_item, status=item.status,
                                         thresholds=thresholds, parts=parts))
        except ValueError as exc:
            skipped.append((item.image_id, str(exc)))
        progress(n, total, item.image_id)
    ranked = rank_images(assessed)
    meta = {"source": str(src.folder), "source_kind": src.kind,
            "ground_truth": None if truth is None else str(truth.semantic_dir),
            "skipped": [{"image_id": i, "error": m} for i, m in skipped],
            "unannotated": unannotated, "without_gt": without_gt}
    paths = write_queue(out_dir, ranked, src.classes, thresholds, meta)
    shapes = {a.image_id: a.shape for a in ranked}

    def load_gt(image_id: str) -> GroundTruth | None:
        return truth.get(image_id, shapes[image_id]) if truth is not None else None

    paths["report"] = write_report(out_dir, ranked, src.load, src.classes, top=top,
                                   max_side=max_side, progress=report_progress,
                                   title=f"Curation report: {src.folder.name}",
                                   load_gt=load_gt if truth is not None else None)
    return CurationResult(ranked, paths, skipped, unannotated, without_gt)


__all__ = ["CurationResult", "curate"]

"""A simulated-annotation run over a dataset: locally or one image per dask task; resumable.

Each image's result is written atomically by whoever simulated it (the local process or a
dask worker, so the output folder must be reachable from the workers, as for
``pseudo-label``); a rerun with the same model and settings skips the images whose result
file is complete, so a killed run resumes where it stopped. Workers build the engine once
from its picklable :class:`~napari_samlabel.pseudo.engines.EngineSpec` and keep it
(:func:`napari_samlabel.pseudo.distributed.worker_engine`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_samlabel.annotate.effort.dataset import Dataset, DatasetError, load_ground_truth
from napari_samlabel.annotate.effort.report import RunStore, write_run_tables, write_summary
from napari_samlabel.annotate.effort.simulate import (
    ImageEffort,
    Settings,
    SimulationError,
    simulate_image,
)
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.protocol import Engine, ProposalSource
from napari_samlabel.pseudo.engines import EngineSpec


@dataclass
class RunReport:
    """What a run did: its folder, images simulated now / before, failures, summary row."""

    folder: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def run_image(engine: Engine, dataset: Dataset, image_id: str, path: Path, settings: Settings,
              store: RunStore, source: ProposalSource | None) -> ImageEffort:
    """Read one image and its ground truth, simulate it and write its result file."""
    from napari_samlabel.io.images import ImageReadError, load_image

    try:
        image = load_image(path)
    except (ImageReadError, OSError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None
    result = simulate_image(engine, image, load_ground_truth(dataset, image_id), settings,
                            dataset.classes, source)
    store.write(result)
    return result


def _task(spec: EngineSpec, dataset: Dataset, image_id: str, path: Path, settings: Settings,
          out: str, source: ProposalSource | None) -> tuple[str, str | None]:
    """One image on a dask worker: ``(image_id, error or None)``."""
    from napari_samlabel.pseudo.distributed import worker_engine

    try:
        engine = worker_engine(spec)
        run_image(engine, dataset, image_id, path, settings, RunStore(out, settings), source)
    except Exception as exc:  # noqa: BLE001 - reported per image, the client decides
        return image_id, f"{type(exc).__name__}: {exc}"
    return image_id, None


def simulate_annotation(dataset: Dataset, engine: Engine | EngineSpec,
                        out: str | os.PathLike[str], settings: Settings, *,
                        source: ProposalSource | None = None,
                        costs: dict[str, float] | None = None, scheduler: Any = None,
                        ids: Sequence[str] | None = None,
                        progress: ProgressCallback = no_progress) -> RunReport:
    """Simulate annotating ``dataset`` and write the results and tables into ``out``.

    Parameters
    ----------
    dataset : Dataset
        From :func:`~napari_samlabel.annotate.effort.dataset.open_dataset`.
    engine : Engine or EngineSpec
        Any engine (local runs), or a spec (required with ``scheduler``: workers build it).
    out : path
        Output folder (layout in :mod:`~napari_samlabel.annotate.effort.report`).
    settings : Settings
        Its ``model_id`` must be the engine's identity (it keys the results).
    source : ProposalSource, optional
        Proposals decided on before clicking (picklable for cluster runs).
    costs : dict, optional
        The cost model (default :data:`~napari_samlabel.annotate.effort.report.DEFAULT_COSTS`).
    scheduler : str or distributed.Client, optional
        Run one task per image there.
    ids : sequence of str, optional
        Only these images.
    progress : callable
        ``(done, total, image_id)`` after each image.
    """
    from napari_samlabel.annotate.effort.report import DEFAULT_COSTS

    costs = dict(DEFAULT_COSTS if costs is None else costs)
    if not settings.dataset:
        settings = replace(settings, dataset=str(Path(dataset.root).absolute()))
    store = RunStore(out, settings)
    store.start(str(dataset.root))
    wanted = dict(dataset.images)
    if ids is not None:
        missing = [i for i in ids if i not in wanted]
        if missing:
            raise DatasetError(f"images not in {dataset.root}: {', '.join(missing[:5])}")
        wanted = {i: wanted[i] for i in ids}
    finished = store.finished(list(wanted))
    report = RunReport(store.folder, skipped=sorted(finished))
    todo = [(i, p) for i, p in wanted.items() if i not in finished]
    total, count = len(todo), 0

    def record(image_id: str, error: str | None) -> None:
        nonlocal count
        count += 1
        if error is None:
            report.done.append(image_id)
        else:
            report.failed[image_id] = error
        progress(count, total, image_id)

    if scheduler is not None:
        if not isinstance(engine, EngineSpec):
            raise TypeError("a cluster run needs an EngineSpec (workers build the engine)")
        _on_cluster(scheduler, engine, dataset, todo, settings, store, source, record)
    else:
        # a spec is built only when there is work (a finished rerun loads no model)
        local = engine.build() if isinstance(engine, EngineSpec) and todo else engine
        for image_id, path in todo:
            assert not isinstance(local, EngineSpec)
            try:
                run_image(local, dataset, image_id, path, settings, store, source)
            except (DatasetError, SimulationError) as exc:
                record(image_id, str(exc))
            else:
                record(image_id, None)
    # the whole run (also images of earlier commands with other --images), as OUT/summary
    results = [r for i in dict(dataset.images) if (r := store.read(i)) is not None]
    report.summary = write_run_tables(store, results, costs)
    write_summary(out, costs)
    return report


def _on_cluster(scheduler: Any, spec: EngineSpec, dataset: Dataset,
                todo: Sequence[tuple[str, Path]], settings: Settings, store: RunStore,
                source: ProposalSource | None, record: Any) -> None:
    from napari_samlabel.pseudo.distributed import connect

    client, owned, as_completed = connect(scheduler)
    try:
        out = str(store.out.absolute())
        futures = {client.submit(_task, spec, dataset, i, Path(p).absolute(), settings, out,
                                 source, key=f"samlabel-effort-{i}-{store.folder.name}",
                                 pure=False, retries=0): i for i, p in todo}
        for fut in as_completed(list(futures), loop=client.loop):
            try:
                image_id, error = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost task is one failed image
                image_id, error = futures[fut], f"task failed on the cluster: {exc}"
            record(image_id, error)
            fut.release()
    finally:
        if owned:
            client.close()

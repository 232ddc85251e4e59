"""Pseudo-labelling on a dask.distributed cluster.

Images are tasks; each task labels one image and writes its results itself (atomically,
:mod:`napari_samlabel.pseudo.store`), so the client only receives a small
:class:`~napari_samlabel.pseudo.pipeline.ImageOutcome` per image and the output folder must
be reachable from the workers (a shared file system; on one machine, any folder).

Workers load the model once and keep it: the engine is built from its picklable
:class:`~napari_samlabel.pseudo.engines.EngineSpec` on the first task and stored on the
``distributed.Worker`` object (one engine per spec and worker thread, since an engine holds
the current image and is not thread-safe; start workers with ``--nthreads 1`` so that a
worker holds one model). The client collects outcomes with ``as_completed`` and reports
progress after each image. A task that dies (worker lost, out of memory) is recorded as a
failed image; the run goes on.

Use through :func:`napari_samlabel.pseudo.pipeline.pseudo_label` with ``scheduler=`` an
address (``"tcp://10.0.0.5:8786"``) or a ``distributed.Client``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.engine.policies import Policy
from napari_samlabel.engine.protocol import Engine
from napari_samlabel.io.weak import WeakLabels
from napari_samlabel.pseudo.engines import EngineSpec

_ATTR = "_samlabel_engines"
_LOCK = threading.Lock()


def worker_engine(spec: EngineSpec) -> Engine:
    """The engine of ``spec`` on the current dask worker (and thread), built on first use."""
    from distributed import get_worker

    worker = get_worker()
    key = (spec, threading.get_ident())
    with _LOCK:
        engines = getattr(worker, _ATTR, None)
        if engines is None:
            engines = {}
            setattr(worker, _ATTR, engines)
    engine = engines.get(key)
    if engine is None:
        engine = spec.build()
        engines[key] = engine
    return engine


def _task(spec: EngineSpec, image_id: str, image_path: Path, weak: WeakLabels, policy: Policy,
          classes: ClassTable, out: str, fingerprint: str, loader: Any) -> Any:
    """One image on a worker (engine errors become a failed outcome, like bad images)."""
    from distributed import get_worker

    from napari_samlabel.pseudo.pipeline import ImageOutcome, process_image

    address = get_worker().address
    try:
        engine = worker_engine(spec)
    except Exception as exc:  # noqa: BLE001 - reported per image, the client decides
        return ImageOutcome(image_id, "failed", f"engine {spec.describe()} could not be "
                            f"built: {type(exc).__name__}: {exc}", worker=address)
    return process_image(engine, image_id, image_path, weak, policy, classes, out,
                         fingerprint, loader, worker=address)


def connect(scheduler: Any) -> tuple[Any, bool, Any]:
    """``(client, owned, as_completed)`` for ``scheduler`` (an address or a Client).

    ``owned``: the client was made here and is the caller's to close. dask.distributed is an
    optional extra: without it, a ``ModuleNotFoundError`` that says how to install it.
    """
    try:
        from distributed import Client, as_completed
    except ModuleNotFoundError as exc:  # an optional extra: say how to get it
        raise ModuleNotFoundError(
            "running on a scheduler (--scheduler) needs dask.distributed: "
            "pip install 'napari-samlabel[distributed]'", name="distributed") from exc
    if isinstance(scheduler, Client):
        return scheduler, False, as_completed
    return Client(str(scheduler), set_as_default=False), True, as_completed


def run_on_cluster(scheduler: Any, spec: EngineSpec,
                   todo: Sequence[tuple[str, Path, WeakLabels, str]], policy: Policy,
                   classes: ClassTable, out: Any, loader: Any,
                   record: Callable[[Any], None]) -> None:
    """Submit one task per image and ``record`` each outcome as it completes.

    Parameters
    ----------
    scheduler : str or distributed.Client
        Scheduler address or a connected client.
    spec : EngineSpec
        Picklable engine specification; workers build it once.
    todo : sequence of (image_id, image_path, weak_labels, fingerprint)
    policy, classes, out, loader
        As in :func:`napari_samlabel.pseudo.pipeline.process_image`.
    record : callable
        Called on the client with each :class:`ImageOutcome`, in completion order.
    """
    from napari_samlabel.pseudo.pipeline import ImageOutcome

    client, owned, as_completed = connect(scheduler)
    try:
        futures = {}
        out = str(Path(out).absolute())
        for image_id, path, weak, fp in todo:
            fut = client.submit(_task, spec, image_id, Path(path).absolute(), weak, policy,
                                classes, out, fp, loader, key=f"samlabel-{image_id}-{fp[:12]}",
                                pure=False, retries=0)
            futures[fut] = image_id
        for fut in as_completed(list(futures), loop=client.loop):
            image_id = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost task is one failed image
                outcome = ImageOutcome(image_id, "failed",
                                       f"task failed on the cluster: {type(exc).__name__}: {exc}")
            record(outcome)
            fut.release()
    finally:
        if owned:
            client.close()

"""Self-training: train a segmenter on pseudo labels, predict, refine, retrain.

The seed "SLIC self-training" (``ALGORITHMS.md``, "Superpixel refinement and self-training"):

1. train the network on the current labels with the spatially weighted cross-entropy
   (:mod:`napari_samlabel.learn.losses`);
2. predict the training images; each pixel's label is the argmax class and its confidence the
   max class probability;
3. refine: optionally snap the predicted labels to SLIC superpixels
   (:func:`napari_samlabel.pseudo.refine.slic.snap_to_superpixels`, the SLIC refiner's
   snapping), then the **adaptive threshold**: sort all max-class probabilities of all
   training images, take the value at ``floor(ratio * n)`` as the threshold
   (:func:`napari_samlabel.pseudo.refine.slic.adaptive_threshold`) and mark the pixels below
   it unlabelled (255);
4. the refined labels are the next round's training labels.

``out/`` holds the latest model (``model.pt`` + ``model.json``, see
:mod:`~napari_samlabel.learn.segmenter`), ``rounds/round-<k>/labels/<id>.png`` (each round's
refined labels, VOC palette PNGs) with ``rounds/round-<k>/scores.json`` (their mIoU and the
model's against the ground truth, when given), ``checkpoint.pt`` (model, optimiser and
position, after every epoch) and ``state.json``. Running again on the same ``out/`` resumes
from the last epoch written. Each round continues from the previous round's weights.

Several processes (``torchrun --nproc_per_node=K``, ``WORLD_SIZE > 1``): the network is wrapped
in :class:`~torch.nn.parallel.DistributedDataParallel`, each process trains on its share
(:class:`~torch.utils.data.DistributedSampler`); rank 0 predicts, refines and writes, the
others read its labels after a barrier.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.fsutil import atomic_save, atomic_write_text
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.evaluate.metrics import ConfusionMatrix
from napari_samlabel.io.voc.labelpng import read_label_png, write_label_png
from napari_samlabel.learn.data import DataError, Sample, SegmentationDataset, read_image
from napari_samlabel.learn.losses import IGNORE_INDEX, WEIGHTINGS, weighted_cross_entropy
from napari_samlabel.learn.segmenter import (
    ARCHS,
    SegmenterMeta,
    build_segmenter,
    predict_probs,
    save_model,
)
from napari_samlabel.pseudo.refine.slic import adaptive_threshold, snap_to_superpixels, superpixels

#: No published ratio: about the least confident fifth of the pixels become void (the SLIC
#: refiner's default).
IGNORE_RATIO = 0.2
STATE_FILE = "state.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`self_train` (the command line's options)."""

    arch: str = "deeplabv3"
    rounds: int = 1
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    size: int = 320
    ratio: float = IGNORE_RATIO
    snap: bool = False
    n_segments: int = 100
    weighting: str = "distance"
    pretrained: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got {self.weighting!r}")
        for name in ("rounds", "epochs", "batch_size", "size", "n_segments"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def refine_predictions(probs: Sequence[np.ndarray], ratio: float = IGNORE_RATIO, *,
                       images: Sequence[np.ndarray] | None = None, n_segments: int = 100,
                       ignore_index: int = IGNORE_INDEX) -> list[np.ndarray]:
    """Label maps from class probabilities with the adaptive threshold (module steps 2-3).

    Parameters
    ----------
    probs : sequence of numpy.ndarray
        ``C x H x W`` class probabilities of each image.
    ratio : float
        Position of the threshold in the ascending sorted max-class probabilities of *all*
        images together; pixels strictly below it become ``ignore_index``.
    images : sequence of numpy.ndarray, optional
        The images: when given, the argmax labels are first snapped to their SLIC superpixels
        (``n_segments``), a superpixel taking the label of the majority of its pixels.

    Returns
    -------
    list of numpy.ndarray
        ``H x W`` ``uint8`` label maps.
    """
    labels, confs = [], []
    for k, p in enumerate(probs):
        p = np.asarray(p)
        if p.ndim != 3:
            raise ValueError(f"probabilities must be C x H x W, got shape {p.shape}")
        lab = p.argmax(axis=0).astype(np.uint8)
        if images is not None:
            lab = snap_to_superpixels(lab, superpixels(images[k], n_segments=n_segments),
                                      ignore_index=ignore_index)
        labels.append(lab)
        confs.append(p.max(axis=0).astype(np.float32))
    if not labels:
        return []
    if ratio > 0:
        thr = adaptive_threshold(np.concatenate([c.reshape(-1) for c in confs]), ratio)
        for lab, conf in zip(labels, confs, strict=True):
            lab[conf < thr] = ignore_index
    return labels


# -- distributed ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")))


def _barrier(d: _Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- ground truth ----------------------------------------------------------------------------
def _gt_folder(gt: Path) -> Path:
    for cand in (gt / "SegmentationClass", gt / "VOCdevkit" / "VOC2012" / "SegmentationClass"):
        if cand.is_dir():
            return cand
    if not gt.is_dir():
        raise DataError(f"ground-truth folder not found: {gt}")
    return gt


def _miou(preds: dict[str, np.ndarray], gt: Path, num_classes: int) -> float | None:
    cm = ConfusionMatrix(num_classes)
    for iid, pred in preds.items():
        png = gt / f"{iid}.png"
        if png.is_file():
            cm.update(pred, read_label_png(png), name=str(png))
    return float(cm.scores().miou) if cm.images else None


# -- training ---------------------------------------------------------------------------------
def _state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the training state: {exc}") from exc
    return data if isinstance(data, dict) else {}


def self_train(samples: list[Sample], classes: ClassTable, out: str | os.PathLike[str],
               config: TrainConfig = TrainConfig(), *, gt: str | os.PathLike[str] | None = None,
               device: str = "cpu", progress: ProgressCallback = no_progress,
               log: Any = None) -> dict[str, Any]:
    """Run ``config.rounds`` rounds of train -> predict -> refine (see the module notes).

    Parameters
    ----------
    samples : list of Sample
        Training images and their initial (pseudo) labels; their ``labels`` are replaced by
        each round's refined labels.
    classes : ClassTable
        The class table (its length is the network's output count).
    out : path
        Output folder (created; an existing one with a state of the same settings resumes).
    gt : path, optional
        Ground-truth label PNGs (or a VOC root) to score each round's labels against.
    device : str
        Torch device; under ``torchrun`` with CUDA, each process uses ``cuda:LOCAL_RANK``.
    progress : callable
        ``progress(done, total, message)`` after every epoch (total = rounds x epochs).
    log : callable, optional
        ``log(text)`` for one line per round (the command line prints it).

    Returns
    -------
    dict
        The final state: ``rounds`` (per-round scores), ``model`` (the output folder).
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    out = Path(out)
    d = _init_distributed(device)
    if d.world > 1 and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
        torch.cuda.set_device(device)
    gt_dir = _gt_folder(Path(gt)) if gt is not None else None
    settings = {k: v for k, v in asdict(config).items() if k not in ("rounds",)}
    state = _state(out)
    if state and (state.get("settings") != settings or state.get("classes") != list(classes.names)):
        raise DataError(f"{out / STATE_FILE}: this folder holds a training with other settings "
                        "or classes; use another --out or delete it")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    state = state or {"settings": settings, "classes": list(classes.names), "rounds": []}
    done = len(state["rounds"])
    if done:  # resume: the last written round's labels are the training labels
        labels_dir = out / "rounds" / f"round-{done}" / "labels"
        for s in samples:
            s.labels = read_label_png(labels_dir / f"{s.image_id}.png")
    elif gt_dir is not None:
        state["initial_miou"] = _miou({s.image_id: s.labels for s in samples}, gt_dir,
                                      len(classes))
    torch.manual_seed(config.seed)
    model = build_segmenter(config.arch, len(classes), config.pretrained).to(device)
    ckpt_path = out / CHECKPOINT_FILE
    ckpt = None
    if ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["model"])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise DataError(f"{ckpt_path}: cannot resume from this checkpoint: {exc}") from exc
    net: torch.nn.Module = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[d.local_rank]
                                      if device.startswith("cuda") else None)
    meta = SegmenterMeta(config.arch, list(classes.names), config.size)
    # A map-style dataset by protocol (no torch import in learn.data at module level).
    dataset: Any = SegmentationDataset(samples, config.size, config.weighting, train=True,
                                       seed=config.seed + d.rank)
    sampler: Any = DistributedSampler(dataset, d.world, d.rank, seed=config.seed) \
        if d.world > 1 else None
    drop = len(dataset) // d.world > config.batch_size  # no batch of 1 through BatchNorm
    loader: Any = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None,
                        sampler=sampler, drop_last=drop,
                        generator=torch.Generator().manual_seed(config.seed))
    total = config.rounds * config.epochs
    for rnd in range(done + 1, config.rounds + 1):
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
        start = 1
        if ckpt is not None and ckpt.get("round") == rnd:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            start = int(ckpt["epoch"]) + 1
        ckpt = None
        for epoch in range(start, config.epochs + 1):
            if sampler is not None:
                sampler.set_epoch(epoch + 1000 * rnd)
            loss = _train_epoch(net, loader, opt, device)
            sched.step()
            if d.main:
                payload = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "round": rnd, "epoch": epoch}
                atomic_save(ckpt_path, functools.partial(torch.save, payload))
            if d.main:  # one progress bar, not one per process
                progress((rnd - 1) * config.epochs + epoch, total,
                         f"round {rnd} epoch {epoch} loss {loss:.4f}")
        _recalibrate_batchnorm(model, loader, device)
        record: dict[str, Any] = {"round": rnd}
        if d.main:
            record.update(_refine_round(model, meta, samples, out / "rounds" / f"round-{rnd}",
                                        config, device, gt_dir, len(classes)))
            state["rounds"].append(record)
            meta = SegmenterMeta(config.arch, list(classes.names), config.size, rounds=rnd,
                                 extra={"rounds": state["rounds"],
                                        "initial_miou": state.get("initial_miou")})
            save_model(out, model, meta)
            atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2))
            if log is not None:
                log(_describe(record))
        _barrier(d)
        if not d.main:
            labels_dir = out / "rounds" / f"round-{rnd}" / "labels"
            for s in samples:
                s.labels = read_label_png(labels_dir / f"{s.image_id}.png")
            state["rounds"].append(record)
    state["model"] = str(out)
    return state


def _describe(record: dict[str, Any]) -> str:
    text = f"round {record['round']}: {record.get('void', 0):.1%} of the pixels void"
    for key, what in (("model_miou", "model"), ("labels_miou", "refined labels")):
        if record.get(key) is not None:
            text += f", {what} mIoU {record[key]:.3f}"
    return text


def _train_epoch(net: Any, loader: Any, opt: Any, device: str) -> float:
    net.train()
    total, count = 0.0, 0
    for x, y, w in loader:
        x, y, w = x.to(device), y.to(device), w.to(device)
        loss = weighted_cross_entropy(net(x)["out"], y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
    return total / max(count, 1)


def _recalibrate_batchnorm(model: Any, loader: Any, device: str) -> None:
    """Re-estimate BatchNorm statistics as the plain average over the training images.

    Torchvision's MobileNetV3 moves its running statistics by 1 % a step: after the few
    hundred steps of a small dataset they are still near their initial values and the
    network in eval mode predicts nothing useful. One pass with a cumulative average fixes
    that (the weights do not change).
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x, _, _ in loader:
            model(x.to(device))
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()


def _refine_round(model: Any, meta: SegmenterMeta, samples: list[Sample], folder: Path,
                  config: TrainConfig, device: str, gt_dir: Path | None,
                  num_classes: int) -> dict[str, Any]:
    """Predict the training images, refine, write the labels and their scores."""
    probs, images = [], []
    for i in range(0, len(samples), config.batch_size):
        batch = [read_image(s.image_path) for s in samples[i:i + config.batch_size]]
        probs.extend(predict_probs(model, batch, meta, device))
        if config.snap:
            images.extend(batch)
    raw = {s.image_id: p.argmax(axis=0).astype(np.uint8)
           for s, p in zip(samples, probs, strict=True)}
    refined = refine_predictions(probs, config.ratio, images=images if config.snap else None,
                                 n_segments=config.n_segments)
    labels_dir = folder / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    for s, lab in zip(samples, refined, strict=True):
        write_label_png(labels_dir / f"{s.image_id}.png", lab)
        s.labels = lab
    void = float(np.mean([np.mean(lab == IGNORE_INDEX) for lab in refined]))
    record: dict[str, Any] = {"void": void}
    if gt_dir is not None:
        record["model_miou"] = _miou(raw, gt_dir, num_classes)
        record["labels_miou"] = _miou({s.image_id: s.labels for s in samples}, gt_dir,
                                      num_classes)
    atomic_write_text(folder / "scores.json", json.dumps(record, indent=2))
    return record

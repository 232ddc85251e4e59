"""Training the WPS-SAM prompter from weak boxes or points (``samlabel train-prompter``).

The teachers are SAM's own prompt-encoder embeddings of each weak box (or point)
(:func:`~napari_samlabel.learn.prompter.teacher_tokens`). Per image, the prompter's ``S``
queries are matched one-to-one to the teachers by the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the cost ``alpha * (-p(class)) + beta * L1``
(alpha = 10, beta = 1, the paper's; L1 is the mean absolute difference of the tokens);
the loss is ``lambda_cls * CE + lambda_reg * smooth-L1`` (5 and 20): cross-entropy over the
classes plus "no object" for every query (unmatched queries learn "no object", weighted by
``no_object_weight``, DETR's 0.1, because most of the 25 queries are unmatched), smooth-L1
between matched queries' tokens and their teachers. Adam, learning rate 1e-4.

Before the first epoch the prompter's input standardisation is set to the per-channel mean
and standard deviation of the training images' embeddings (:func:`embedding_stats`; why:
:mod:`napari_samlabel.learn.prompter`).

Embeddings come from the engine's embedding cache (encoded once; every epoch reads them
from memory, or from the disk cache when they do not fit in memory). Images are split into
train and validation by a hash of their id (:func:`~napari_samlabel.learn.prompter_data.
split_of`), so the split survives restarts. After every epoch the state (weights, optimiser,
history) is written atomically to ``OUT.resume``; a run killed at any point continues from
the last finished epoch. The prompter with the lowest validation loss (training loss
without a validation set) is kept in ``OUT``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_samlabel.core.fsutil import atomic_save
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.learn.prompter import (
    Prompter,
    PrompterConfig,
    PrompterInfo,
    config_for,
    save_prompter,
    teacher_tokens,
)
from napari_samlabel.learn.prompter_data import WeakDataset, split_of

PROMPTS = ("box", "point")
RESUME_SUFFIX = ".resume"


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: the paper's, except the epoch count).

    Attributes
    ----------
    epochs : int
        Total epochs (the paper: 150 at 1024 x 1024).
    batch_size : int
        Images per step (the paper: 8).
    lr, weight_decay : float
        Adam's (the paper: 1e-4).
    alpha, beta : float
        Matching cost weights of the class and the L1 terms (10, 1).
    lambda_cls, lambda_reg : float
        Loss weights of the cross-entropy and the smooth-L1 terms (5, 20).
    no_object_weight : float
        Cross-entropy weight of the "no object" class (DETR's 0.1).
    val_fraction : float
        Share of images held out for validation (by a hash of the id).
    seed : int
        Seeds the initial weights, the split, the batch order and dropout.
    prompt : str
        ``"box"`` or ``"point"``: which weak prompt the teachers embed.
    grad_clip : float
        Gradient norm clip (0: none).
    """

    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    alpha: float = 10.0
    beta: float = 1.0
    lambda_cls: float = 5.0
    lambda_reg: float = 20.0
    no_object_weight: float = 0.1
    val_fraction: float = 0.2
    seed: int = 0
    prompt: str = "box"
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {self.prompt!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


# -- matching and loss ---------------------------------------------------------------------------

def match_cost(probs: torch.Tensor, tokens: torch.Tensor, target_classes: torch.Tensor,
               target_tokens: torch.Tensor, alpha: float = 10.0, beta: float = 1.0
               ) -> torch.Tensor:
    """``(S, N)`` cost of giving query ``i`` teacher ``j``: ``alpha * -p_i(c_j) + beta * L1``.

    ``probs`` is ``(S, K + 1)``, ``tokens`` ``(S, T, D)``, ``target_classes`` ``(N,)``
    prompter class indices, ``target_tokens`` ``(N, T, D)``; L1 is the mean absolute
    difference over the ``T * D`` token values.
    """
    cls = -probs[:, target_classes]
    width = tokens.shape[1] * tokens.shape[2]
    l1 = torch.cdist(tokens.flatten(1), target_tokens.flatten(1).to(tokens), p=1) / width
    return alpha * cls + beta * l1


def hungarian_match(cost: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(query indices, teacher indices)`` of the one-to-one assignment of least cost."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().cpu().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost)
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)


def prompter_loss(logits: torch.Tensor, tokens: torch.Tensor,
                  targets: Sequence[tuple[torch.Tensor, torch.Tensor]], config: TrainConfig
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """The matched loss of a batch (see the module docstring).

    Parameters
    ----------
    logits : (B, S, K + 1)
    tokens : (B, S, T, D)
    targets : per image ``(classes (N,), teacher tokens (N, T, D))``; N may be 0.

    Returns
    -------
    loss, parts
        The scalar loss and its ``cls`` / ``reg`` terms as floats.
    """
    b, s, k1 = logits.shape
    no_object = k1 - 1
    target_cls = torch.full((b, s), no_object, dtype=torch.long, device=logits.device)
    pred_matched, tgt_matched = [], []
    with torch.no_grad():
        probs = logits.softmax(-1)
    for i, (classes, teach) in enumerate(targets):
        if len(classes) == 0:
            continue
        classes = classes.to(logits.device)
        cost = match_cost(probs[i], tokens[i].detach(), classes, teach, config.alpha,
                          config.beta)
        rows, cols = hungarian_match(cost)
        target_cls[i, torch.as_tensor(rows, device=logits.device)] = classes[cols]
        pred_matched.append(tokens[i, rows])
        tgt_matched.append(teach[cols].to(tokens))
    weight = torch.ones(k1, device=logits.device)
    weight[no_object] = config.no_object_weight
    ce = F.cross_entropy(logits.reshape(b * s, k1), target_cls.reshape(-1), weight=weight)
    if pred_matched:
        reg = F.smooth_l1_loss(torch.cat(pred_matched), torch.cat(tgt_matched))
    else:
        reg = tokens.sum() * 0.0
    loss = config.lambda_cls * ce + config.lambda_reg * reg
    return loss, {"cls": float(ce.detach()), "reg": float(reg.detach())}


# -- samples -------------------------------------------------------------------------------------

@dataclass(eq=False)
class Sample:
    """One encoded training image: its embedding (or where to read it) and its teachers."""

    image_id: str
    split: str
    classes: torch.Tensor          # (N,) prompter class indices
    teachers: torch.Tensor         # (N, T, D)
    key: str
    features: np.ndarray | None = None  # (1, C, h, w) float16, when kept in memory


class FeatureReader:
    """Embeddings of the samples: from memory, else from the engine's disk cache."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, sample: Sample) -> np.ndarray:
        if sample.features is not None:
            return sample.features
        cache = getattr(self.engine, "cache", None)
        emb = None if cache is None else cache.get(self.engine.model_id, sample.key,
                                                   self.engine.precision)
        if emb is None:
            raise RuntimeError(f"the embedding of {sample.image_id} left the cache during "
                               "training; give a cache with room for every image (--cache)")
        return emb.features


def prepare_samples(engine: Any, data: WeakDataset, config: TrainConfig,
                    progress: ProgressCallback = no_progress,
                    memory_bytes: int = 3 * 1024**3,
                    loader: Callable[[Path], np.ndarray] | None = None
                    ) -> tuple[list[Sample], dict[str, str]]:
    """Encode every image once (through the engine's cache) and embed its teachers.

    Embeddings are kept in memory while they fit in ``memory_bytes``; beyond that they are
    read back from the engine's disk cache every epoch (which then must hold them all).

    Returns
    -------
    samples, failed
        The samples, and ``{image_id: reason}`` for images that could not be read.
    """
    from napari_samlabel.engine.cache import image_key
    from napari_samlabel.io.images import load_image

    loader_fn: Callable[[Path], np.ndarray] = loader or load_image
    samples: list[Sample] = []
    failed: dict[str, str] = {}
    used = 0
    disk = getattr(getattr(engine, "cache", None), "directory", None) is not None
    for n, weak in enumerate(data.images, 1):
        try:
            image = loader_fn(weak.path)
        except (OSError, ValueError) as exc:
            failed[weak.image_id] = f"{weak.path}: {exc}"
            progress(n, len(data.images), weak.image_id)
            continue
        h, w = int(image.shape[0]), int(image.shape[1])
        key = image_key(image)
        emb, _ = engine.encode(image, key)
        features = np.asarray(emb.features, dtype=np.float16)
        keep = not disk or used + features.nbytes <= memory_bytes
        used += features.nbytes if keep else 0
        if len(weak.labels):
            boxes = np.clip(weak.boxes, 0, [w - 1, h - 1, w - 1, h - 1])
            points = np.clip(weak.points, 0, [w - 1, h - 1])
            teach = teacher_tokens(engine, (h, w), boxes_xyxy=boxes) if config.prompt == "box" \
                else teacher_tokens(engine, (h, w), points_xy=points)
        else:
            d = int(features.shape[1])
            teach = torch.zeros((0, 2, d))
        samples.append(Sample(weak.image_id, split_of(weak.image_id, config.val_fraction,
                                                      config.seed),
                              torch.as_tensor(weak.labels - 1, dtype=torch.long), teach, key,
                              features if keep else None))
        progress(n, len(data.images), weak.image_id)
    return samples, failed


# -- the loop ------------------------------------------------------------------------------------

@dataclass
class TrainReport:
    """What a training run did."""

    out: Path
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = float("inf")
    resumed_from: int = 0
    train_images: int = 0
    val_images: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False


def resume_path(out: str | os.PathLike[str]) -> Path:
    """Where the resumable state of a run writing ``out`` lives (``OUT.resume``)."""
    out = Path(out)
    return out.with_name(out.name + RESUME_SUFFIX)


def run_fingerprint(model_id: str, classes: Sequence[str], config: TrainConfig,
                    pconfig: PrompterConfig, samples: Sequence[Sample]) -> str:
    """SHA-256 of what must not change for a run to resume (data, model, settings)."""
    settings = {k: v for k, v in asdict(config).items() if k != "epochs"}
    h = hashlib.sha256(json.dumps({"model_id": model_id, "classes": list(classes),
                                   "config": settings, "prompter": asdict(pconfig)},
                                  sort_keys=True, default=str).encode())
    for s in samples:
        h.update(s.image_id.encode() + s.key.encode() + s.split.encode())
        h.update(s.classes.numpy().tobytes())
        h.update(s.teachers.numpy().astype(np.float32).tobytes())
    return h.hexdigest()


def _batches(samples: Sequence[Sample], batch: int, generator: torch.Generator | None
             ) -> list[list[Sample]]:
    order = torch.randperm(len(samples), generator=generator).tolist() if generator \
        else list(range(len(samples)))
    return [[samples[i] for i in order[j:j + batch]] for j in range(0, len(order), batch)]


def _step_inputs(batch: Sequence[Sample], read: FeatureReader, device: torch.device
                 ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    feats = torch.from_numpy(np.concatenate([read(s) for s in batch]).astype(np.float32))
    return feats.to(device), [(s.classes, s.teachers) for s in batch]


def embedding_stats(samples: Sequence[Sample], read: FeatureReader
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the samples' embeddings.

    Over every image and position (float64 sums, one image in memory at a time). A channel
    that never varies gets standard deviation 1 (it is only centred).
    """
    total = sq = None
    count = 0
    for s in samples:
        f = np.asarray(read(s), np.float64)  # (1, C, h, w)
        x = f.reshape(f.shape[1], -1)
        total = x.sum(1) if total is None else total + x.sum(1)
        sq = (x * x).sum(1) if sq is None else sq + (x * x).sum(1)
        count += x.shape[1]
    if total is None or sq is None:
        raise ValueError("embedding statistics need at least one sample")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def evaluate_loss(model: Prompter, samples: Sequence[Sample], config: TrainConfig,
                  read: FeatureReader, device: torch.device) -> float:
    """Mean loss of ``samples`` (eval mode, no gradients)."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in _batches(samples, config.batch_size, None):
            feats, targets = _step_inputs(batch, read, device)
            logits, tokens = model(feats)
            loss, _ = prompter_loss(logits, tokens, targets, config)
            total += float(loss) * len(batch)
            n += len(batch)
    return total / max(n, 1)


def train(engine: Any, samples: Sequence[Sample], classes: Sequence[str], out: str |
          os.PathLike[str], config: TrainConfig = TrainConfig(),
          prompter_config: PrompterConfig | None = None, *, device: str | None = None,
          resume: bool = True, max_epochs_this_run: int | None = None,
          progress: ProgressCallback = no_progress,
          log: Callable[[str], None] | None = None) -> TrainReport:
    """Train a prompter on prepared samples; write the best to ``out``.

    Parameters
    ----------
    engine : SamEngine
        The frozen SAM (its ``model_id`` goes into the prompter file).
    samples : sequence of Sample
        From :func:`prepare_samples`.
    classes : sequence of str
        The class table's names (background first).
    prompter_config : PrompterConfig, optional
        Default: :func:`~napari_samlabel.learn.prompter.config_for` the engine.
    device : str, optional
        Where the prompter trains (default: the engine's device).
    resume : bool
        Continue from ``OUT.resume`` when it belongs to this run (same data, model and
        settings); False starts over.
    max_epochs_this_run : int, optional
        Stop after this many epochs of this call (the next call resumes).
    progress : callable
        ``progress(epoch, epochs, "loss ... val ...")`` after every epoch.
    log : callable, optional
        One-line messages (resuming, starting over).
    """
    out = Path(out)
    say: Callable[[str], None] = log or (lambda _msg: None)
    dev = torch.device(device) if device else torch.device(getattr(engine, "device", "cpu"))
    pconfig = prompter_config or config_for(engine, len(classes) - 1)
    if pconfig.num_classes != len(classes) - 1:
        raise ValueError(f"the prompter has {pconfig.num_classes} classes, the class list "
                         f"{len(classes) - 1} besides background")
    torch.manual_seed(config.seed)
    model = Prompter(pconfig).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_set = [s for s in samples if s.split == "train"]
    val_set = [s for s in samples if s.split == "val"]
    if not train_set:
        train_set, val_set = list(samples), []
    report = TrainReport(out, train_images=len(train_set), val_images=len(val_set))
    fingerprint = run_fingerprint(str(engine.model_id), classes, config, pconfig, samples)
    state_file = resume_path(out)
    start = 0
    if resume and state_file.is_file():
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
            ok = state.get("fingerprint") == fingerprint
        except Exception as exc:  # noqa: BLE001 - a broken state file: start over
            say(f"cannot read {state_file} ({exc}); starting over")
            ok = False
        if ok:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["epoch"])
            report.history = list(state["history"])
            report.best_epoch = int(state["best_epoch"])
            report.best_loss = float(state["best_loss"])
            report.resumed_from = start
            say(f"resuming after epoch {start} from {state_file}")
        elif state_file.is_file():
            say(f"{state_file} belongs to another run (data, model or settings changed); "
                "starting over")
    info = PrompterInfo(pconfig, _table(classes), str(engine.model_id), config.prompt)
    read = FeatureReader(engine)
    if start == 0:
        model.set_input_stats(*embedding_stats(train_set, read))
    done_now = 0
    for epoch in range(start + 1, config.epochs + 1):
        if max_epochs_this_run is not None and done_now >= max_epochs_this_run:
            report.stopped_early = True
            break
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 100003 + epoch)  # dropout: same on a resumed run
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        model.train()
        total, n = 0.0, 0
        for batch in _batches(train_set, config.batch_size, gen):
            feats, targets = _step_inputs(batch, read, dev)
            logits, tokens = model(feats)
            loss, _ = prompter_loss(logits, tokens, targets, config)
            opt.zero_grad()
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(batch)
            n += len(batch)
        train_loss = total / max(n, 1)
        val_loss = evaluate_loss(model, val_set, config, read, dev) if val_set else train_loss
        entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                 "seconds": time.perf_counter() - t0}
        report.history.append(entry)
        if val_loss < report.best_loss:
            report.best_loss, report.best_epoch = val_loss, epoch
            info.trained = {"epoch": epoch, "val_loss": val_loss, "train_loss": train_loss,
                            "train_images": len(train_set), "val_images": len(val_set),
                            "lr": config.lr}
            save_prompter(out, model, info)
        state = {"fingerprint": fingerprint, "epoch": epoch, "history": report.history,
                 "best_epoch": report.best_epoch, "best_loss": report.best_loss,
                 "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "optimizer": opt.state_dict()}
        _save_state(state_file, state)
        done_now += 1
        progress(epoch, config.epochs, f"loss {train_loss:.4f} val {val_loss:.4f}")
    return report


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resumable state atomically (a kill mid-write keeps the previous one)."""
    atomic_save(path, lambda fh: torch.save(state, fh))


def _table(classes: Sequence[str]) -> Any:
    from napari_samlabel.core.classes import ClassTable

    return classes if isinstance(classes, ClassTable) else ClassTable(tuple(classes))


def train_prompter(source: str | os.PathLike[str] | WeakDataset, engine: Any,
                   out: str | os.PathLike[str], config: TrainConfig = TrainConfig(), *,
                   prompter_config: PrompterConfig | None = None, level: str = "all",
                   classes: Any = None, device: str | None = None, resume: bool = True,
                   max_epochs_this_run: int | None = None,
                   encode_progress: ProgressCallback = no_progress,
                   progress: ProgressCallback = no_progress,
                   log: Callable[[str], None] | None = None) -> TrainReport:
    """Read SOURCE, encode its images once, train, keep the best prompter in ``out``.

    See :func:`~napari_samlabel.learn.prompter_data.read_weak_dataset` for SOURCE and
    ``level``/``classes``, :func:`train` for the rest.
    """
    from napari_samlabel.learn.prompter import sam_model
    from napari_samlabel.learn.prompter_data import read_weak_dataset

    sam_model(engine)  # refuse an unsupported engine before encoding anything
    data = source if isinstance(source, WeakDataset) else \
        read_weak_dataset(source, classes, level)
    samples, failed = prepare_samples(engine, data, config, encode_progress)
    if not samples:
        raise ValueError(f"{data.source}: no readable training image")
    report = train(engine, samples, data.classes.to_list(), out, config, prompter_config,
                   device=device, resume=resume, max_epochs_this_run=max_epochs_this_run,
                   progress=progress, log=log)
    report.failed = {**data.skipped, **failed}
    return report


__all__ = ["PROMPTS", "Sample", "TrainConfig", "TrainReport", "embedding_stats", "evaluate_loss",
           "hungarian_match", "match_cost", "prepare_samples", "prompter_loss", "resume_path",
           "train", "train_prompter"]

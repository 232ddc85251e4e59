"""Class activation maps from CLIP with learned prompts (the CAM half of SAMS, Yang & Gong).

A frozen open_clip model (ViT-B/16 by default; random weights unless the user gives a local
weights file, loaded by open_clip's own loader) and two sets of learnable context vectors of
``N = 16`` tokens, CoOp style (``[SOS] ctx_1 .. ctx_N <class name> . [EOS]``):

- the **classification stream**: one *unified* context shared by all classes, trained with a
  multi-label contrastive loss from the image-level labels: for each present class ``c``,
  ``-log(exp(s_c) / (exp(s_c) + sum over absent j of exp(s_j)))`` with ``s`` the scaled
  image-text cosine similarities (present classes attract the image embedding, absent ones
  repel it);
- the **segmentation stream**: a *class-specific* context per class (with its name), trained
  with a CAM activation loss against coarse seeds: the patch tokens of the image are scored
  against the class texts and CLIP-ES's background texts (softmax over them), and the loss is
  the negative log-probability of each seeded patch's group (its class, or any background
  text). The coarse seeds are the classification stream's CAMs at patch resolution: a patch
  whose strongest present class's normalised CAM is at least ``SEED_HIGH`` takes that class,
  one where every CAM is below ``SEED_LOW`` is background, the rest is not used. (The paper
  does not spell its seeds out; this is our reading.)

CAMs are **Softmax-GradCAM** (CLIP-ES): the gradient of the softmax over the foreground and
the background texts of a present class, taken with respect to the feature map *before the
last attention block*, averaged over the patches as channel weights; the map is the ReLU of
the weighted channel sum, bilinearly resized to the image and divided by its maximum. The
final CAMs use the class-specific (segmentation) texts; the background texts use the unified
context. CLIP-ES's attention-affinity refinement is not applied.

Only the contexts learn (CLIP's parameters have ``requires_grad=False`` and stay bit-identical).
Training follows CoOp's optimiser: SGD, lr 0.002, momentum 0.9, weight decay 5e-4, cosine
decay, one warm-up epoch at a constant 1e-5; batch 16 and 25 epochs per stream as the paper
uses on VOC.

Output (``write_cams``): ``<id>.npy`` (``C x H x W`` float32, one channel per present class,
at image resolution) and ``<id>.json`` (``{"classes": [...], "labels": [...]}``), the format
:mod:`napari_samlabel.io.weak.cams` reads, so they feed ``samlabel pseudo-label --kind cams``
and the SAMS refiner (``samlabel refine --method sams --cams``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_samlabel.core.fsutil import atomic_save, atomic_write_text
from napari_samlabel.core.progress import ProgressCallback, no_progress

if TYPE_CHECKING:
    import torch

#: CLIP-ES's background categories (Lin et al., CVPR 2023, ``clip_text.py``).
BACKGROUND = ("ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water",
              "river", "sea", "railway", "railroad", "keyboard", "helmet", "cloud", "house",
              "mountain", "ocean", "road", "rock", "street", "valley", "bridge", "sign")
MODEL_NAME = "ViT-B-16"
N_CTX = 16
EPOCHS = 25
BATCH_SIZE = 16
#: CoOp's optimiser.
LR = 2e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
WARMUP_EPOCHS = 1
WARMUP_LR = 1e-5
#: Coarse seeds of the segmentation stream (normalised CAM values; our choice, see above).
SEED_HIGH = 0.5
SEED_LOW = 0.2
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
#: A tiny open_clip configuration for tests and benchmarks (random weights, fast on a CPU).
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


class ClipCamError(ValueError):
    """Bad input for the CAM learner (the message names the file and the problem)."""


@dataclass(frozen=True)
class CamConfig:
    """Settings of :func:`learn_prompts` (defaults: the paper's and CoOp's)."""

    n_ctx: int = N_CTX
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LR
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    warmup_epochs: int = WARMUP_EPOCHS
    warmup_lr: float = WARMUP_LR
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_ctx", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


# -- the model -----------------------------------------------------------------------------
def register_config(name: str, config: dict[str, Any]) -> None:
    """Make an open_clip model configuration available under ``name`` (its own loader)."""
    import open_clip

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        open_clip.add_model_config(path)


def build_clip(model_name: str = MODEL_NAME,
               pretrained: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """A frozen open_clip model: random weights, or a local weights file via open_clip.

    Raises
    ------
    ClipCamError
        When open_clip is missing, the weights file does not exist (nothing is downloaded:
        the message says so) or does not fit the model.
    """
    try:
        import open_clip
    except ImportError as exc:
        raise ClipCamError("CLIP CAMs need open_clip: pip install 'napari-samlabel[learn]'"
                           ) from exc
    if pretrained is not None and not Path(pretrained).is_file():
        raise ClipCamError(f"CLIP weights file not found: {pretrained} (nothing is downloaded "
                           "here; give the path of a local open_clip checkpoint, e.g. the "
                           "OpenAI ViT-B-16 .pt, or leave it out for random weights)")
    try:
        model = open_clip.create_model(model_name, pretrained=str(pretrained)
                                       if pretrained is not None else None)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ClipCamError(f"cannot build CLIP {model_name}"
                           f"{f' from {pretrained}' if pretrained else ''}: {exc}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class PromptLearner:
    """Learnable contexts and the frozen CLIP they feed (see the module notes).

    Parameters
    ----------
    clip : torch.nn.Module
        An open_clip CLIP model (frozen).
    model_name : str
        Its open_clip name (for the tokenizer).
    class_names : sequence of str
        Foreground class names (background excluded), in class-table order.
    n_ctx : int
        Context tokens.
    """

    def __init__(self, clip: Any, model_name: str, class_names: Sequence[str],
                 n_ctx: int = N_CTX, seed: int = 0) -> None:
        import open_clip
        import torch

        self.clip = clip
        self.class_names = list(class_names)
        self.n_ctx = n_ctx
        tokenizer = open_clip.get_tokenizer(model_name)
        width = clip.token_embedding.weight.shape[1]
        gen = torch.Generator().manual_seed(seed)
        self.ctx_unified = torch.nn.Parameter(torch.randn(n_ctx, width, generator=gen) * 0.02)
        self.ctx_class = torch.nn.Parameter(
            torch.randn(len(self.class_names), n_ctx, width, generator=gen) * 0.02)
        placeholder = " ".join(["X"] * n_ctx)
        self._fg = self._embed(tokenizer, [f"{placeholder} {n}." for n in self.class_names])
        self._bg = self._embed(tokenizer, [f"{placeholder} {n}." for n in BACKGROUND])

    def _embed(self, tokenizer: Any, prompts: list[str]) -> tuple[Any, Any, Any]:
        import torch

        tokens = tokenizer(prompts)
        with torch.no_grad():
            emb = self.clip.token_embedding(tokens)
        return tokens, emb[:, :1], emb[:, 1 + self.n_ctx:]

    def parameters(self) -> list[torch.nn.Parameter]:
        """The learnable contexts."""
        return [self.ctx_unified, self.ctx_class]

    def _encode(self, part: tuple[Any, Any, Any], ctx: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F
        from open_clip.transformer import text_global_pool

        tokens, prefix, suffix = part
        if ctx.dim() == 2:
            ctx = ctx[None].expand(len(tokens), -1, -1)
        clip = self.clip
        x = torch.cat([prefix, ctx, suffix], dim=1) + clip.positional_embedding
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        x = text_global_pool(x, tokens, clip.text_pool_type,
                             eos_token_id=getattr(clip, "text_eos_id", None))
        proj = clip.text_projection
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)

    def texts(self, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(foreground, background)`` text embeddings of ``"cls"`` or ``"seg"``."""
        fg_ctx = self.ctx_unified if stream == "cls" else self.ctx_class
        return self._encode(self._fg, fg_ctx), self._encode(self._bg, self.ctx_unified)

    def state(self) -> dict[str, Any]:
        """What ``prompts.pt`` stores."""
        return {"ctx_unified": self.ctx_unified.detach().cpu(),
                "ctx_class": self.ctx_class.detach().cpu(), "classes": self.class_names,
                "background": list(BACKGROUND)}


def _visual_tokens(clip: Any, images: torch.Tensor) -> torch.Tensor:
    """The visual tokens before the last attention block (``B x L x W``, batch first)."""
    v = clip.visual
    x = v._embeds(images)
    blocks = v.transformer.resblocks
    first = getattr(v.transformer, "batch_first", True)
    if not first:
        x = x.transpose(0, 1)
    for blk in blocks[:-1]:
        x = blk(x)
    return x if first else x.transpose(0, 1)


def _visual_head(clip: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Last block, pooling and projection: ``(image embedding, projected patch tokens)``."""
    import torch.nn.functional as F

    v = clip.visual
    first = getattr(v.transformer, "batch_first", True)
    x = v.transformer.resblocks[-1](x if first else x.transpose(0, 1))
    x = x if first else x.transpose(0, 1)
    x = v.ln_post(x)  # CLIP ViTs pool the class token after the final norm
    if v.proj is not None:
        x = x @ v.proj
    pooled, tokens = x[:, 0], x
    return F.normalize(pooled, dim=-1), F.normalize(tokens, dim=-1)


def to_clip_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """An ``H x W x 3`` uint8 image resized to ``size`` and normalised for CLIP."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(image[..., :3], dtype=np.uint8)).permute(2, 0, 1).float()
    t = F.interpolate(t[None] / 255.0, size=(size, size), mode="bicubic",
                      align_corners=False)[0]
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def cam_texts(learner: PromptLearner, stream: str = "seg") -> torch.Tensor:
    """The foreground then background text embeddings the CAMs compare against.

    They do not depend on the image: compute them once for a folder (the text encoder is
    most of the cost of one image's CAMs).
    """
    import torch

    with torch.no_grad():
        return torch.cat(learner.texts(stream))


def softmax_gradcam(learner: PromptLearner, images: torch.Tensor, present: Sequence[list[int]],
                    stream: str = "seg", text: torch.Tensor | None = None) -> list[np.ndarray]:
    """Softmax-GradCAM of each image's present classes at patch resolution.

    ``present[b]`` lists foreground indices (0-based in ``learner.class_names``); ``text``
    is :func:`cam_texts` of ``stream`` (computed here when None). Returns one
    ``len(present[b]) x h x w`` float32 array per image, each channel in ``[0, 1]``.
    """
    import torch

    clip = learner.clip
    if text is None:
        text = cam_texts(learner, stream)
    feats = _visual_tokens(clip, images).detach().requires_grad_(True)
    emb, _ = _visual_head(clip, feats)
    probs = torch.softmax(clip.logit_scale.exp() * emb @ text.T, dim=-1)
    n_patch = feats.shape[1] - 1
    side = int(math.isqrt(n_patch))
    out = []
    for b, classes in enumerate(present):
        maps = []
        for k in classes:
            (grad,) = torch.autograd.grad(probs[b, k], feats, retain_graph=True)
            g, f = grad[b, 1:], feats[b, 1:].detach()
            cam = torch.relu((f * g.mean(dim=0)).sum(dim=-1)).reshape(side, side)
            top = cam.max()
            maps.append((cam / top if top > 0 else cam).numpy().astype(np.float32))
        out.append(np.stack(maps) if maps else np.zeros((0, side, side), np.float32))
    return out


def _cls_loss(learner: PromptLearner, images: torch.Tensor, target: torch.Tensor
              ) -> torch.Tensor:
    """The multi-label contrastive loss of the classification stream."""
    import torch

    with torch.no_grad():
        emb, _ = _visual_head(learner.clip, _visual_tokens(learner.clip, images))
    fg, _ = learner.texts("cls")
    s = learner.clip.logit_scale.exp() * emb @ fg.T
    neg = torch.logsumexp(s.masked_fill(target, float("-inf")), dim=1, keepdim=True)
    lse = torch.logaddexp(s, neg)
    return -(s - lse)[target].mean()


def _seg_loss(learner: PromptLearner, images: torch.Tensor, seeds: torch.Tensor
              ) -> torch.Tensor:
    """The CAM activation loss of the segmentation stream against patch seeds.

    ``seeds`` is ``B x P``: a foreground index, -1 for background, -2 for unused.
    """
    import torch

    with torch.no_grad():
        _, patches = _visual_head(learner.clip, _visual_tokens(learner.clip, images))
    fg, bg = learner.texts("seg")
    logits = learner.clip.logit_scale.exp() * patches[:, 1:] @ torch.cat([fg, bg]).T
    logp = torch.log_softmax(logits, dim=-1)
    n_fg = fg.shape[0]
    bg_logp = torch.logsumexp(logp[..., n_fg:], dim=-1)
    fg_idx = seeds.clamp_min(0)
    fg_logp = logp.gather(-1, fg_idx[..., None])[..., 0]
    picked = torch.where(seeds >= 0, fg_logp, bg_logp)
    used = seeds >= -1
    return -(picked[used]).mean() if used.any() else picked.sum() * 0


def _coarse_seeds(cams: list[np.ndarray], present: Sequence[list[int]]) -> np.ndarray:
    seeds = []
    for maps, classes in zip(cams, present, strict=True):
        flat = maps.reshape(len(classes), -1)
        s = np.full(flat.shape[1], -2, np.int64)
        if len(classes):
            top = flat.max(axis=0)
            s[top >= SEED_HIGH] = np.asarray(classes)[flat.argmax(axis=0)][top >= SEED_HIGH]
            s[top < SEED_LOW] = -1
        else:
            s[:] = -1
        seeds.append(s)
    return np.stack(seeds)


def learn_prompts(learner: PromptLearner, images: list[np.ndarray], present: list[list[int]],
                  config: CamConfig = CamConfig(), progress: ProgressCallback = no_progress,
                  ) -> dict[str, list[float]]:
    """Train the classification stream, then the segmentation stream (``epochs`` each).

    Returns the mean loss of every epoch of each stream (``{"cls": [...], "seg": [...]}``).
    """
    import torch

    size = int(learner.clip.visual.image_size[0]) if isinstance(
        learner.clip.visual.image_size, tuple) else int(learner.clip.visual.image_size)
    x_all = torch.stack([to_clip_tensor(im, size) for im in images])
    n_fg = len(learner.class_names)
    target = torch.zeros(len(images), n_fg, dtype=torch.bool)
    for b, ks in enumerate(present):
        target[b, [int(k) for k in ks]] = True
    history: dict[str, list[float]] = {"cls": [], "seg": []}
    gen = torch.Generator().manual_seed(config.seed)
    total = 2 * config.epochs
    seeds: torch.Tensor | None = None
    for stream, param in (("cls", learner.ctx_unified), ("seg", learner.ctx_class)):
        if stream == "seg":
            cams = []
            text = cam_texts(learner, "cls")
            for i in range(0, len(images), config.batch_size):
                cams += softmax_gradcam(learner, x_all[i:i + config.batch_size],
                                        present[i:i + config.batch_size], "cls", text)
            seeds = torch.from_numpy(_coarse_seeds(cams, present))
        opt = torch.optim.SGD([param], lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
        for epoch in range(config.epochs):
            warm = epoch < config.warmup_epochs
            for group in opt.param_groups:
                group["lr"] = config.warmup_lr if warm else sched.get_last_lr()[0]
            order = torch.randperm(len(images), generator=gen)
            losses = []
            for i in range(0, len(images), config.batch_size):
                idx = order[i:i + config.batch_size]
                if stream == "cls":
                    loss = _cls_loss(learner, x_all[idx], target[idx])
                else:
                    assert seeds is not None
                    loss = _seg_loss(learner, x_all[idx], seeds[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            if not warm:
                sched.step()
            history[stream].append(float(np.mean(losses)))
            done = epoch + 1 + (config.epochs if stream == "seg" else 0)
            progress(done, total, f"{stream} epoch {epoch + 1} loss {history[stream][-1]:.4f}")
    return history


def image_cams(learner: PromptLearner, image: np.ndarray, present: list[int],
               text: torch.Tensor | None = None) -> np.ndarray:
    """``len(present) x H x W`` CAMs of one image at its own resolution, each max 1.

    ``text``: :func:`cam_texts` of the segmentation stream, to reuse across images.
    """
    import torch
    import torch.nn.functional as F

    size = learner.clip.visual.image_size
    size = int(size[0]) if isinstance(size, tuple) else int(size)
    low = softmax_gradcam(learner, to_clip_tensor(image, size)[None], [present], "seg",
                          text)[0]
    h, w = image.shape[:2]
    if not len(present):
        return np.zeros((0, h, w), np.float32)
    up = F.interpolate(torch.from_numpy(low)[None], size=(h, w), mode="bilinear",
                       align_corners=False)[0].clamp_min(0)
    top = up.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return (up / top[:, None, None]).numpy().astype(np.float32)


def write_cams(out: str | os.PathLike[str], image_id: str, cams: np.ndarray,
               names: Sequence[str]) -> None:
    """Write ``<id>.npy`` and its ``<id>.json`` class list (atomically, each)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(out / f"{image_id}.npy", lambda f: np.save(f, np.asarray(cams, np.float32)))
    atomic_write_text(out / f"{image_id}.json",
                      json.dumps({"classes": list(names), "labels": list(names)}))


def save_prompts(path: str | os.PathLike[str], learner: PromptLearner, model_name: str,
                 history: dict[str, list[float]]) -> None:
    """Save the learned contexts (``torch.save``, plain tensors, atomic)."""
    import torch

    state = learner.state() | {"model": model_name, "history": history}
    atomic_save(path, lambda f: torch.save(state, f))

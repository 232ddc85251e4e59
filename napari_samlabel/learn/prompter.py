"""The WPS-SAM prompter: a query transformer on SAM's image embedding that emits prompts.

Wu et al. (WPS-SAM, see ``ALGORITHMS.md``, "Part-level labels") replace the annotator's
prompt by a small learned network. SAM stays frozen (image encoder, prompt encoder, mask
decoder); the :class:`Prompter` reads the image embedding (``C x h x w``, 256 x 64 x 64 for
SAM ViT-B) and gives, for each of ``S`` queries (25, the paper's best),

- a class distribution over the project's classes plus "no object", and
- prompt tokens shaped like SAM's sparse prompt embeddings of one box (2 tokens of the
  prompt encoder's width: the two corners; a point prompt is 2 tokens too, the point and
  SAM's padding point).

SAM's own mask decoder turns each query's tokens into a mask (:func:`decode_tokens`), with
the dense "no mask" embedding, as if the annotator had drawn that box.

Layout: a per-channel standardisation of the embedding with the training set's statistics
(:meth:`Prompter.set_input_stats`, kept in the weights; see below), a stem of two 3 x 3
stride-2 convolutions (64 x 64 -> 16 x 16 tokens), a learned
positional embedding, a transformer encoder and decoder (the paper: 6 + 6 layers; smaller
by default so it trains on a CPU), learned queries, a linear class head and an MLP prompt
head.

Why the standardisation (measured, issue 18): SAM's embedding is dominated by a
per-channel offset that is the same at every position (the tiny test SAM: per-channel mean
0.84 r.m.s. against 0.55 of spatial variation; every token's cosine to the image's mean
token is 0.84 on average, 0.91 after the stem and encoder). The decoder's cross-attention
then starts as a plain average over the 16 x 16 tokens, and a small object (a bar covering
1-4 % of the image) hardly moves that average, so its class never gets the gradient to
sharpen the attention: on the synthetic shapes a prompter learned red squares and green
discs but named the blue bar with the same probability on every image, even trained as a
plain multi-label classifier for 1000 steps (held-out 0.69 = always "absent"), while a max
over the same stem's or encoder's tokens found it on every held-out image. With the
embedding standardised per channel (mean and standard deviation over the training images
and positions) the same network names all three classes on every held-out image after 300
steps. Centring alone (0.76) or a per-image normalisation (0.61) does not do it.

A saved prompter (:func:`save_prompter`, :func:`load_prompter`) records the SAM weights it
was trained against (``engine.model_id``) and its class list; :func:`check_engine` refuses
another model, whose prompt embeddings mean something else.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.fsutil import atomic_save

#: ``format`` field of a saved prompter.
FORMAT = "samlabel-prompter"
FORMAT_VERSION = 1
#: Families whose mask decoder takes SAM's sparse/dense prompt embeddings as they are.
SUPPORTED_FAMILIES = ("sam", "mobile_sam")
#: Buffers of the input standardisation (absent from files of older versions).
INPUT_STATS = ("input_mean", "input_std")


class PrompterError(ValueError):
    """A prompter file that cannot be used (unreadable, wrong format, other SAM weights)."""


@dataclass(frozen=True)
class PrompterConfig:
    """Shape of a :class:`Prompter`.

    Attributes
    ----------
    num_classes : int
        Foreground classes (the "no object" class is added on top).
    in_channels : int
        Channels of the image embedding (SAM: 256).
    embed_size : tuple of int
        ``(h, w)`` of the image embedding (SAM: 64 x 64).
    token_dim : int
        Width of a prompt token (SAM's prompt encoder ``embed_dim``, 256).
    tokens : int
        Prompt tokens per query (2: a box's corners, or a point and SAM's padding point).
    queries : int
        ``S``, the number of queries (25 in the paper).
    d_model, heads, encoder_layers, decoder_layers, feedforward, dropout
        The transformer (the paper: 6 + 6 layers).
    """

    num_classes: int
    in_channels: int = 256
    embed_size: tuple[int, int] = (64, 64)
    token_dim: int = 256
    tokens: int = 2
    queries: int = 25
    d_model: int = 128
    heads: int = 8
    encoder_layers: int = 2
    decoder_layers: int = 2
    feedforward: int = 512
    dropout: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "embed_size", tuple(int(v) for v in self.embed_size))
        if self.num_classes < 1:
            raise ValueError(f"a prompter needs at least one class, got {self.num_classes}")
        if self.queries < 1 or self.d_model % self.heads:
            raise ValueError(f"bad prompter shape: {self.queries} queries, d_model "
                             f"{self.d_model} not divisible by {self.heads} heads")

    @property
    def stem_size(self) -> tuple[int, int]:
        """Token grid after the stem (two stride-2 convolutions)."""
        h, w = self.embed_size
        return (h + 3) // 4, (w + 3) // 4

    @classmethod
    def paper(cls, num_classes: int, **kwargs: Any) -> PrompterConfig:
        """The paper's size: 6 + 6 layers of width 256 (slow on a CPU)."""
        base = {"d_model": 256, "encoder_layers": 6, "decoder_layers": 6, "feedforward": 2048}
        return cls(num_classes, **{**base, **kwargs})


class Prompter(nn.Module):
    """The query transformer (see the module docstring).

    ``forward(features)`` takes ``(B, C, h, w)`` image embeddings and returns
    ``(class_logits, tokens)``: ``(B, S, K + 1)`` logits (index ``K`` = no object) and
    ``(B, S, tokens, token_dim)`` prompt tokens.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, config: PrompterConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        # Per-channel input standardisation (identity until set_input_stats).
        self.register_buffer("input_mean", torch.zeros(config.in_channels))
        self.register_buffer("input_std", torch.ones(config.in_channels))
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, d, 3, stride=2, padding=1),
            nn.GroupNorm(8 if d % 8 == 0 else 1, d),
            nn.GELU(),
            nn.Conv2d(d, d, 3, stride=2, padding=1),
        )
        gh, gw = config.stem_size
        self.pos = nn.Parameter(torch.randn(1, gh * gw, d) * 0.02)
        self.query = nn.Parameter(torch.randn(1, config.queries, d) * 0.02)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, config.heads, config.feedforward, config.dropout,
                                       batch_first=True, norm_first=True),
            config.encoder_layers, nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, config.heads, config.feedforward, config.dropout,
                                       batch_first=True, norm_first=True),
            config.decoder_layers, nn.LayerNorm(d))
        self.class_head = nn.Linear(d, config.num_classes + 1)
        out = config.tokens * config.token_dim
        self.token_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d),
                                        nn.GELU(), nn.Linear(d, out))

    def set_input_stats(self, mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray
                        ) -> None:
        """Standardise the embedding's channels with these ``(C,)`` statistics from now on.

        Training sets them from the training images (:func:`~napari_samlabel.learn.
        train_prompter.embedding_stats`); they are saved with the weights.
        """
        mean_t = torch.as_tensor(np.asarray(mean, np.float32)).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, np.float32)).reshape(-1)
        if mean_t.shape != self.input_mean.shape or std_t.shape != self.input_std.shape:
            raise ValueError(f"input statistics must have {self.config.in_channels} channels, "
                             f"got {tuple(mean_t.shape)} and {tuple(std_t.shape)}")
        if not torch.all(std_t > 0):
            raise ValueError("input standard deviations must be positive")
        self.input_mean.copy_(mean_t)
        self.input_std.copy_(std_t)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and prompt tokens of every query (see the class docstring)."""
        cfg = self.config
        if features.ndim != 4 or tuple(features.shape[1:]) != (cfg.in_channels,
                                                                *cfg.embed_size):
            raise ValueError(f"the prompter takes (B, {cfg.in_channels}, {cfg.embed_size[0]}, "
                             f"{cfg.embed_size[1]}) image embeddings, got "
                             f"{tuple(features.shape)}")
        x = (features.float() - self.input_mean[:, None, None]) / self.input_std[:, None, None]
        x = self.stem(x)
        src = x.flatten(2).transpose(1, 2) + self.pos
        tgt = self.query.expand(features.shape[0], -1, -1)
        h = self.decoder(tgt, self.encoder(src))
        logits = self.class_head(h)
        tokens = self.token_head(h).view(h.shape[0], h.shape[1], cfg.tokens, cfg.token_dim)
        return logits, tokens


# -- SAM's frozen parts ------------------------------------------------------------------------

def sam_model(engine: Any) -> Any:
    """The SAM module of ``engine`` (with ``prompt_encoder`` and ``mask_decoder``).

    Raises
    ------
    PrompterError
        If the engine is not a SAM or MobileSAM engine (SAM-HQ and SAM 2 decoders take
        other inputs).
    """
    family = getattr(engine, "family", None)
    model = getattr(engine, "model", None)
    if family not in SUPPORTED_FAMILIES or model is None \
            or not hasattr(model, "prompt_encoder") or not hasattr(model, "mask_decoder"):
        raise PrompterError(
            f"the prompter works on SAM and MobileSAM engines (families "
            f"{', '.join(SUPPORTED_FAMILIES)}), not on {type(engine).__name__} "
            f"(family {family!r})")
    return model


def config_for(engine: Any, num_classes: int, **kwargs: Any) -> PrompterConfig:
    """A :class:`PrompterConfig` whose input and token shapes are ``engine``'s SAM's."""
    pe = sam_model(engine).prompt_encoder
    h, w = (int(v) for v in pe.image_embedding_size)
    return PrompterConfig(num_classes, in_channels=int(pe.embed_dim), embed_size=(h, w),
                          token_dim=int(pe.embed_dim), **kwargs)


def teacher_tokens(engine: Any, original_size: tuple[int, int], boxes_xyxy: np.ndarray | None
                   = None, points_xy: np.ndarray | None = None) -> torch.Tensor:
    """SAM's sparse prompt embeddings of weak boxes or points: the prompter's targets.

    Parameters
    ----------
    engine : SamEngine
        Its prompt encoder embeds the prompts (after the predictor's resize transform).
    original_size : (H, W)
        Size of the image the coordinates refer to.
    boxes_xyxy : ndarray (N, 4), optional
        Boxes ``[x0, y0, x1, y1]`` in image pixels.
    points_xy : ndarray (N, 2), optional
        One positive point ``(x, y)`` per object (used when no boxes are given).

    Returns
    -------
    torch.Tensor
        ``(N, 2, token_dim)`` float32 on the CPU.
    """
    model = sam_model(engine)
    transform = engine.predictor.transform
    device = next(model.prompt_encoder.parameters()).device
    with torch.no_grad():
        if boxes_xyxy is not None:
            b = transform.apply_boxes(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4),
                                      tuple(original_size))
            sparse, _ = model.prompt_encoder(
                points=None, boxes=torch.as_tensor(b, dtype=torch.float32, device=device),
                masks=None)
        elif points_xy is not None:
            p = transform.apply_coords(np.asarray(points_xy, np.float32).reshape(-1, 2),
                                       tuple(original_size))
            coords = torch.as_tensor(p, dtype=torch.float32, device=device)[:, None, :]
            labels = torch.ones((coords.shape[0], 1), dtype=torch.int64, device=device)
            sparse, _ = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        else:
            raise ValueError("teacher_tokens needs boxes or points")
    return sparse.float().cpu()


def decode_tokens(engine: Any, features: torch.Tensor, tokens: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's frozen mask decoder on predicted prompt tokens.

    Parameters
    ----------
    features : Tensor (1, C, h, w)
        The image embedding.
    tokens : Tensor (Q, tokens, token_dim)
        Sparse prompt embeddings, one prompt per row.

    Returns
    -------
    low_res_logits, iou
        ``(Q, 1, 256, 256)`` logits and ``(Q, 1)`` predicted IoU (single-mask output, as
        for a box).
    """
    model = sam_model(engine)
    pe = model.prompt_encoder
    device = next(model.mask_decoder.parameters()).device
    q = int(tokens.shape[0])
    dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
        q, -1, *pe.image_embedding_size)
    with torch.no_grad():
        low_res, iou = model.mask_decoder(
            image_embeddings=features.to(device, torch.float32),
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=tokens.to(device, torch.float32),
            dense_prompt_embeddings=dense,
            multimask_output=False)
    return low_res, iou


# -- files ---------------------------------------------------------------------------------------

@dataclass
class PrompterInfo:
    """What a saved prompter records besides its weights.

    Attributes
    ----------
    config : PrompterConfig
    classes : ClassTable
        The class table it was trained with (background first); prompter class ``k`` is
        table index ``k + 1``.
    model_id : str
        ``engine.model_id`` of the SAM weights it was trained against.
    prompt : str
        ``"box"`` or ``"point"``: the kind of weak prompt it imitates.
    trained : dict
        Training summary (epochs, best validation loss, images ...).
    """

    config: PrompterConfig
    classes: ClassTable
    model_id: str
    prompt: str = "box"
    trained: dict[str, Any] = field(default_factory=dict)


def prompter_payload(model: Prompter, info: PrompterInfo) -> dict[str, Any]:
    """The dictionary :func:`save_prompter` writes."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "config": asdict(info.config), "classes": info.classes.to_list(),
            "model_id": info.model_id, "prompt": info.prompt, "trained": dict(info.trained),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def save_prompter(path: str | os.PathLike[str], model: Prompter, info: PrompterInfo) -> Path:
    """Write a prompter file atomically (a crash leaves the previous file intact)."""
    path = Path(path)
    payload = prompter_payload(model, info)
    atomic_save(path, lambda fh: torch.save(payload, fh))
    return path


def info_from_payload(payload: Any, where: str) -> PrompterInfo:
    """The :class:`PrompterInfo` of a loaded payload; :class:`PrompterError` if malformed."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PrompterError(f"{where} is not a prompter file (written by samlabel "
                            "train-prompter)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise PrompterError(f"{where}: prompter format version {payload.get('format_version')}"
                            f" is not supported (this version reads {FORMAT_VERSION})")
    try:
        return PrompterInfo(PrompterConfig(**payload["config"]),
                            ClassTable(tuple(payload["classes"])), str(payload["model_id"]),
                            str(payload.get("prompt", "box")), dict(payload.get("trained", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise PrompterError(f"{where}: malformed prompter file ({exc})") from None


def load_prompter(path: str | os.PathLike[str], device: str | torch.device = "cpu"
                  ) -> tuple[Prompter, PrompterInfo]:
    """Read a prompter file: ``(model in eval mode on device, info)``.

    Raises
    ------
    PrompterError
        If the file is missing, unreadable or not a prompter (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise PrompterError(f"prompter file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike
        raise PrompterError(f"cannot read prompter file {path}: {exc}") from None
    info = info_from_payload(payload, str(path))
    model = Prompter(info.config)
    try:
        state = dict(payload["state_dict"])
        # Prompters saved before the input standardisation existed: identity statistics.
        for key in INPUT_STATS:
            state.setdefault(key, model.state_dict()[key])
        model.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise PrompterError(f"{path}: weights do not fit the recorded shape ({exc})") from None
    return model.to(device).eval(), info


def check_engine(info: PrompterInfo, engine: Any, where: str = "the prompter") -> None:
    """Refuse an engine whose SAM is not the one the prompter was trained against.

    Raises
    ------
    PrompterError
        Naming both model identities.
    """
    model_id = str(getattr(engine, "model_id", ""))
    if model_id != info.model_id:
        raise PrompterError(
            f"{where} was trained against SAM {info.model_id!r}, but the engine is "
            f"{model_id!r}: prompt embeddings of other weights mean something else; load "
            "that model (--model/--checkpoint) or train a prompter for this one")
    sam_model(engine)


__all__ = ["FORMAT", "Prompter", "PrompterConfig", "PrompterError", "PrompterInfo",
           "check_engine", "config_for", "decode_tokens", "load_prompter", "save_prompter",
           "sam_model", "teacher_tokens"]

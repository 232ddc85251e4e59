"""The SAM engine: segment-anything's ``SamPredictor`` behind the engine protocol.

Typical use::

    from napari_samlabel.engine.sam import load_engine

    engine = load_engine("vit_b")            # checkpoint: explicit > cached > download
    engine.set_image(rgb_uint8)              # encodes once (or reads the embedding cache)
    pred = engine.predict(SamInputs(point_coords=..., point_labels=...))

Fast CPU encoding
-----------------
The image encoder is the only expensive step (ViT-B: 16-18 s per image with stock
segment-anything in float32 on two idle CPU cores). ``benchmarks/bench_engine.py`` measures
every mode below on the machine at hand. Three switches control how it runs; the decoder
(``predict``) always runs in float32 (segment-anything's decoder fails under bfloat16
autocast):

``precise``
    False (default): where the hardware runs bfloat16 natively (CPUs with AVX512-BF16/AMX,
    CUDA GPUs with bf16), the encoder runs under ``torch.autocast(dtype=bfloat16)``: with
    the lean attention below about 2-3x faster than stock on CPU, cosine 0.99996 to the
    float32 embedding (random ViT-B weights). True: float32 always.
``compile``
    ``torch.compile`` the encoder (``dynamic=False``: the input is always 1 x 3 x 1024 x 1024).
    Saves up to a third of the wall time per image, but the first encode pays a one-off
    compilation of 20-60 s per process (measured under load), so it is off by default and
    meant for batch work (``samlabel embed`` turns it on for 20 images or more;
    :meth:`SamEngine.warmup` pays it up front, e.g. in a worker thread). Falls back to
    eager with a warning if compilation fails.
``device``
    cuda > mps > cpu unless given.

Without ``compile``, the encoder's attention layers get a leaner forward
(:func:`_lean_attention_forward`): the same arithmetic as segment-anything's, but the
relative-position terms are added in place and the 4096 x 4096 attention matrices of the
global blocks stay in the encoder's dtype instead of being copied to float32 by autocast.
Measured in CPU time, a global-attention block costs about 30 % less (1.6 s instead of
2.3 s); in float32 the whole encoder is about 25 % cheaper than stock.

Embeddings are cached (:mod:`napari_samlabel.engine.cache`) by image content and
``model_id``: ``set_image`` on an image seen before costs a hash and a file read.
"""

from __future__ import annotations

import contextlib
import os
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.cache import Embedding, EmbeddingCache, image_key
from napari_samlabel.engine.checkpoint import (
    cache_root,
    load_sam,
    resolve_checkpoint,
)
from napari_samlabel.engine.device import choose_device, cpu_supports_bf16
from napari_samlabel.engine.protocol import Prediction, SamInputs

_CACHE_DEFAULT = "auto"


def validate_image(image: Any) -> np.ndarray:
    """Check that ``image`` is an ``H x W x 3`` ``uint8`` RGB array; return it as ndarray.

    Raises
    ------
    ValueError
        With the shape/dtype found and what is expected.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 RGB (H x W x 3), got dtype {arr.dtype}; convert it first "
            "(napari_samlabel.io loads any image as RGB uint8)"
        )
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image is empty: shape {arr.shape}")
    return arr


def _check_inputs(inputs: SamInputs) -> dict[str, Any]:
    """Validate ``inputs`` and return ``SamPredictor.predict`` keyword arguments."""
    if inputs.is_empty:
        raise ValueError("SAM needs at least one point or a box; got neither")
    kwargs: dict[str, Any] = {"multimask_output": bool(inputs.multimask_output)}
    if inputs.point_coords is not None and len(inputs.point_coords) > 0:
        coords = np.array(inputs.point_coords, dtype=np.float32, copy=True)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"point_coords must have shape (N, 2) as (x, y), got {coords.shape}")
        if inputs.point_labels is None:
            raise ValueError("point_labels are required with point_coords")
        labels = np.asarray(inputs.point_labels).astype(np.int32).ravel()
        if labels.shape[0] != coords.shape[0]:
            raise ValueError(
                f"got {coords.shape[0]} points but {labels.shape[0]} point labels"
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"point labels must be 0 (negative) or 1 (positive), got {labels}")
        if not np.isfinite(coords).all():
            raise ValueError("point_coords contain NaN or infinite values")
        kwargs["point_coords"] = coords
        kwargs["point_labels"] = labels
    if inputs.box is not None:
        box = np.array(inputs.box, dtype=np.float32, copy=True).ravel()
        if box.shape != (4,) or not np.isfinite(box).all():
            raise ValueError(f"box must be 4 finite numbers [x0, y0, x1, y1], got {inputs.box}")
        kwargs["box"] = box
    if inputs.mask_input is not None:
        # A private, writable copy: callers may hand in read-only arrays (torch warns on
        # them) and SamPredictor must never write into a caller's logits.
        mask = np.array(inputs.mask_input, dtype=np.float32, copy=True)
        if mask.shape == (256, 256):
            mask = mask[None]
        if mask.shape != (1, 256, 256):
            raise ValueError(
                f"mask_input must be (1, 256, 256) low-res logits, got {mask.shape}"
            )
        kwargs["mask_input"] = mask
    return kwargs


def _lean_attention_forward(self: Any, x: Any) -> Any:
    """``segment_anything.modeling.image_encoder.Attention.forward`` with less memory traffic.

    Same operations in the same order as the original (so float32 results match it), but
    the decomposed relative-position terms are added into the attention matrix in place,
    and under autocast the matrix, its softmax and the product with ``v`` stay in the
    matmul's dtype (bfloat16) instead of round-tripping a 12 x 4096 x 4096 float32 copy.
    """
    import torch
    from segment_anything.modeling.image_encoder import get_rel_pos

    B, H, W, _ = x.shape
    nh = self.num_heads
    qkv = self.qkv(x).reshape(B, H * W, 3, nh, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * nh, H * W, -1).unbind(0)
    with torch.autocast(x.device.type, enabled=False):
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            rh = get_rel_pos(H, H, self.rel_pos_h).to(q.dtype)
            rw = get_rel_pos(W, W, self.rel_pos_w).to(q.dtype)
            r_q = q.reshape(B * nh, H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
            attn5 = attn.view(B * nh, H, W, H, W)
            attn5.add_(rel_h[:, :, :, :, None]).add_(rel_w[:, :, :, None, :])
        attn = attn.softmax(dim=-1)
        out = attn @ v
    out = out.view(B, nh, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def _use_lean_attention(image_encoder: Any) -> None:
    """Give every attention layer of ``image_encoder`` :func:`_lean_attention_forward`."""
    from segment_anything.modeling.image_encoder import Attention

    for module in image_encoder.modules():
        if isinstance(module, Attention):
            module.forward = types.MethodType(_lean_attention_forward, module)


class SamEngine:
    """SAM on ``SamPredictor``, implementing :class:`napari_samlabel.engine.protocol.Engine`.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        A loaded model (see :func:`load_engine`, which also resolves the checkpoint). The
        engine takes it over: it is moved to ``device``, its encoder's forward is replaced
        by the engine's (precision, compile) and, when not compiling, its attention layers
        get :func:`_lean_attention_forward`.
    model_id : str
        Identity of the weights (``"vit_b:ec2df62732614e57"``); keys the embedding cache.
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks cuda > mps > cpu.
    precise : bool
        Encode in float32 even where bfloat16 is available (see the module docstring).
    compile : bool
        ``torch.compile`` the image encoder (first encode is slow; see the module docstring).
    cache : EmbeddingCache or None
        Embedding cache; None keeps only the current image's embedding.

    Attributes
    ----------
    model_id : str
    device : torch.device
    precision : str
        ``"float32"`` or ``"bfloat16"``: how the encoder runs.
    compiled : bool
        Whether the encoder runs through ``torch.compile`` (False after a fallback).
    cache : EmbeddingCache or None
        The embedding cache ``set_image`` and ``encode`` use.
    encode_count : int
        How many times the image encoder ran (cache misses); handy for tests and reports.
    predictor : segment_anything.SamPredictor
        The wrapped predictor (for advanced use; prefer the methods below).

    Notes
    -----
    One engine holds one current image: calls from several threads must be serialised
    (the GUI runs them in one worker). The embedding cache itself is thread-safe.
    """

    def __init__(
        self,
        sam: Any,
        model_id: str,
        device: str | None = None,
        precise: bool = False,
        compile: bool = False,
        cache: EmbeddingCache | None = None,
    ) -> None:
        import torch
        from segment_anything import SamPredictor

        self.device = choose_device(device)
        self.model_id = model_id
        self.cache = cache
        self.precision = "float32" if precise else _fast_precision(self.device)
        sam = sam.to(self.device).eval()
        for p in sam.parameters():  # inference only: no autograd bookkeeping
            p.requires_grad_(False)
        self.predictor = SamPredictor(sam)
        encoder = sam.image_encoder
        if not compile:
            # Eager only: inductor fuses segment-anything's own bias-add + softmax better.
            _use_lean_attention(encoder)  # the engine owns ``sam`` from here on
        self._eager_forward = encoder.forward
        self._encoder = self._eager_forward
        self.compiled = False
        if compile:
            try:
                self._encoder = torch.compile(self._eager_forward, dynamic=False)
                self.compiled = True
            except Exception as exc:  # noqa: BLE001 - any backend failure: stay eager
                warnings.warn(f"torch.compile unavailable ({exc}); encoding eagerly", stacklevel=2)
        # Installed in the model itself, so that every encode takes the fast path, also
        # ``predictor.set_image`` called directly (e.g. for the crops of the automatic
        # mask generator); the output is float32 whatever the precision.
        encoder.forward = self._encoder_forward
        self._current_key: str | None = None
        self.encode_count = 0

    def __repr__(self) -> str:
        return (
            f"SamEngine(model_id={self.model_id!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, compiled={self.compiled})"
        )

    # -- encoding --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        if self.precision == "bfloat16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def _encoder_forward(self, x: Any) -> Any:
        """The image encoder's forward as installed in the model (precision, compile)."""
        try:
            with self._autocast():
                out = self._encoder(x)
        except Exception as exc:
            if not self.compiled:
                raise
            # A compiled graph that fails (missing compiler, unsupported op) must not
            # break labelling: fall back to eager for the rest of the session.
            warnings.warn(
                f"compiled encoder failed ({type(exc).__name__}: {exc}); encoding eagerly",
                stacklevel=2,
            )
            self._encoder = self._eager_forward
            self.compiled = False
            with self._autocast():
                out = self._encoder(x)
        return out.float()

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        """Run SAM's preprocessing and image encoder on ``image`` (no cache)."""
        import torch

        transform = self.predictor.transform
        resized = transform.apply_image(image)  # long side -> 1024, as SamPredictor does
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        model = self.predictor.model
        with torch.inference_mode():
            x = model.preprocess(x.float())  # normalise and pad to 1024 x 1024
            features = model.image_encoder(x).cpu().numpy()
        self.encode_count += 1
        return Embedding(
            features=features,
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(resized.shape[0]), int(resized.shape[1])),
            model_id=self.model_id,
        )

    def encode(self, image: np.ndarray, key: str | None = None) -> tuple[Embedding, bool]:
        """Return ``(embedding, from_cache)`` for ``image`` without making it current.

        Looks the embedding up in the cache first; a new embedding is stored there.
        ``key`` is the image's :func:`~napari_samlabel.engine.cache.image_key` if the caller
        already computed it.
        """
        image = validate_image(image)
        key = key or image_key(image)
        if self.cache is not None:
            hit = self.cache.get(self.model_id, key)
            if hit is not None:
                return hit, True
        emb = self._run_encoder(image)
        if self.cache is not None:
            emb = self.cache.put(key, emb)
        return emb, False

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` (``H x W x 3`` ``uint8`` RGB) current, encoding it unless cached.

        Raises
        ------
        ValueError
            If ``image`` is not ``H x W x 3`` ``uint8``.
        """
        image = validate_image(image)
        key = image_key(image)
        emb, _ = self.encode(image, key)
        self.set_embedding(emb)
        self._current_key = key

    def set_embedding(self, emb: Embedding) -> None:
        """Install a precomputed embedding as the current image (no encoding).

        Raises
        ------
        ValueError
            If the embedding was made by other weights (``model_id`` differs).
        """
        import torch

        if emb.model_id != self.model_id:
            raise ValueError(
                f"embedding was computed by {emb.model_id!r}, this engine is {self.model_id!r}"
            )
        p = self.predictor
        p.reset_image()
        p.features = torch.from_numpy(np.ascontiguousarray(emb.features)).to(
            self.device, torch.float32
        )
        p.original_size = tuple(emb.original_size)
        p.input_size = tuple(emb.input_size)
        p.is_image_set = True
        self._current_key = None

    def get_embedding(self) -> Embedding:
        """The current image's embedding (to save or to hand to another engine instance).

        Raises
        ------
        RuntimeError
            If no image is set.
        """
        p = self.predictor
        if not p.is_image_set:
            raise RuntimeError("no image set: call set_image() or set_embedding() first")
        return Embedding(
            features=p.features.detach().float().cpu().numpy(),
            original_size=tuple(p.original_size),
            input_size=tuple(p.input_size),
            model_id=self.model_id,
        )

    @property
    def is_image_set(self) -> bool:
        """True once an image or embedding is installed."""
        return bool(self.predictor.is_image_set)

    def reset_image(self) -> None:
        """Forget the current image."""
        self.predictor.reset_image()
        self._current_key = None

    def warmup(self) -> None:
        """Encode a blank image once, so a compiled encoder pays its compilation now.

        Nothing is cached and the current image is unchanged.
        """
        self._run_encoder(np.zeros((64, 64, 3), dtype=np.uint8))
        self.encode_count -= 1

    # -- decoding --------------------------------------------------------------------------

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image (see the protocol).

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If ``inputs`` has neither points nor a box, or arrays have wrong shapes.
        """
        import torch

        if not self.predictor.is_image_set:
            raise RuntimeError("no image set: call set_image() before predict()")
        kwargs = _check_inputs(inputs)
        with torch.inference_mode():
            masks, iou, low_res = self.predictor.predict(**kwargs)
        return Prediction(
            masks=np.asarray(masks, dtype=bool),
            iou_predictions=np.asarray(iou, dtype=np.float32),
            low_res_logits=np.asarray(low_res, dtype=np.float32),
            logits_threshold=float(self.predictor.model.mask_threshold),
        )


def _fast_precision(device: Any) -> str:
    """The fastest precision that keeps the embedding within cosine 0.999 on ``device``."""
    import torch

    if device.type == "cpu":
        return "bfloat16" if cpu_supports_bf16() else "float32"
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "float32"


def default_embedding_cache(
    cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> EmbeddingCache:
    """The embedding cache in ``<cache root>/embeddings`` (see the checkpoint module)."""
    return EmbeddingCache(cache_root(cache_dir) / "embeddings", **kwargs)


def load_engine(
    model_type: str = "vit_b",
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | None = None,
    precise: bool = False,
    compile: bool = False,
    cache: EmbeddingCache | str | os.PathLike[str] | None = _CACHE_DEFAULT,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressCallback = no_progress,
) -> SamEngine:
    """Resolve, load and wrap a SAM checkpoint: the one way to get a :class:`SamEngine`.

    Parameters
    ----------
    model_type : str
        ``"vit_b"`` (default), ``"vit_l"``, ``"vit_h"``, or ``"vit_tiny_test"`` (tests only).
    checkpoint : path, optional
        Local checkpoint file; otherwise the cached official file, downloaded if needed.
    device : str, optional
        Torch device; default cuda > mps > cpu.
    precise : bool
        Encode in float32 (default: bfloat16 where the hardware supports it).
    compile : bool
        ``torch.compile`` the encoder (faster per image, ~30 s once per process).
    cache : EmbeddingCache, path, "auto" or None
        ``"auto"``: disk cache in ``<cache root>/embeddings``; a path: disk cache there;
        an :class:`EmbeddingCache`: used as is; None: memory only.
    cache_dir : path, optional
        Cache root for checkpoints (and the ``"auto"`` embedding cache); default
        ``$SAMLABEL_CACHE_DIR`` or the user cache directory.
    download : bool
        Allow downloading the official checkpoint.
    progress : callable
        Download progress callback ``(done_bytes, total_bytes, message)``.

    Raises
    ------
    napari_samlabel.engine.checkpoint.CheckpointError
        Missing/corrupt/wrong checkpoint, or offline without a cached file.
    KeyError
        Unknown model type.
    ValueError
        Unavailable device.
    """
    resolved = resolve_checkpoint(
        model_type, checkpoint, cache_dir=cache_dir, download=download, progress=progress
    )
    sam = load_sam(model_type, resolved.path)
    if isinstance(cache, EmbeddingCache):
        emb_cache: EmbeddingCache | None = cache
    elif cache is None:
        emb_cache = EmbeddingCache(None)
    elif isinstance(cache, str) and cache == _CACHE_DEFAULT:
        emb_cache = default_embedding_cache(cache_dir)
    else:
        emb_cache = EmbeddingCache(Path(cache))
    return SamEngine(
        sam,
        model_id=resolved.model_id,
        device=device,
        precise=precise,
        compile=compile,
        cache=emb_cache,
    )

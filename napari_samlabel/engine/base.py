"""What every engine shares: the embedding cache, encoder precision and compilation.

:class:`CachedEngine` implements the per-image half of the engine protocol once:
``set_image`` looks the image up in the embedding cache (keyed by content, ``model_id`` and
encoder precision) and encodes only on a miss; ``encode`` does the same without changing the
current image (the GUI prefetches the next image with it on another thread). Subclasses
say how to run their encoder (:meth:`CachedEngine._run_encoder`), how to install an
embedding in their predictor (:meth:`CachedEngine.set_embedding`) and how to decode.

The image encoder's ``forward`` is replaced in the model itself by
:meth:`CachedEngine._encoder_forward` (bfloat16 autocast where the hardware supports it,
``torch.compile`` when asked, float32 output), so every encode takes the fast path, also
the predictor's own ``set_image`` called directly (e.g. for the crops of SAM's automatic
mask generator).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from napari_samlabel.engine.cache import PRECISIONS, Embedding, EmbeddingCache, image_key
from napari_samlabel.engine.device import (
    PRECISION_ENV,
    choose_device,
    expected_cpu_precision,
    precision_forced,
)
from napari_samlabel.engine.protocol import Prediction, SamInputs


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


def fast_precision(device: Any) -> str:
    """The precision an encoder runs with on ``device`` unless float32 is asked for.

    On a CPU: bfloat16 where it has native bfloat16 matrix instructions, else int8 linears
    where it has VNNI and oneDNN's int8 linear works, else float32. On CUDA: bfloat16
    where supported. ``$SAMLABEL_PRECISION`` (``float32``, ``bfloat16``, ``int8``) overrides
    the choice (int8 only on a CPU). Each mode's accuracy against float32 is checked by
    ``benchmarks/bench_engine.py`` and ``samlabel embed --check-precision``.

    Raises
    ------
    ValueError
        If ``$SAMLABEL_PRECISION`` names no precision, or int8 on another device.
    """
    import torch

    forced = precision_forced()
    if forced:
        if forced not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={forced!r}: expected one of "
                             f"{', '.join(PRECISIONS)} or auto")
        if forced == "int8" and device.type != "cpu":
            raise ValueError(f"{PRECISION_ENV}=int8: int8 encoders run on the CPU only, "
                             f"not on {device.type}")
        return forced
    if device.type == "cpu":
        choice = expected_cpu_precision()
        if choice == "int8":
            from napari_samlabel.engine.int8 import int8_available

            return "int8" if int8_available() else "float32"
        return choice
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "float32"


_PROGRESS = threading.local()


@contextlib.contextmanager
def encode_progress(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Report ``callback(blocks done, blocks)`` after each encoder block, in this thread.

    Every encoder pass run by this thread inside the context reports its progress (the
    blocks of the encoder's largest ``ModuleList``: the ViT's or Hiera's transformer blocks).
    The GUI shows a determinate bar with it; an animated one kept a software-rendered window
    repainting and took 11 % of the CPU from the encode (measured, napari under Xvfb).
    """
    previous = getattr(_PROGRESS, "callback", None)
    _PROGRESS.callback = callback
    try:
        yield
    finally:
        _PROGRESS.callback = previous


def _encoder_blocks(encoder: Any) -> list[Any]:
    """The encoder's transformer blocks: the children of its largest ``ModuleList``."""
    import torch

    lists = [list(m) for m in encoder.modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=len) if lists else []


@contextlib.contextmanager
def _reporting_blocks(encoder: Any) -> Iterator[None]:
    """Inside :func:`encode_progress`: hooks that report each block of ``encoder``."""
    callback: Callable[[int, int], None] | None = getattr(_PROGRESS, "callback", None)
    blocks = _encoder_blocks(encoder) if callback is not None else []
    if callback is None or not blocks:
        yield
        return
    total = len(blocks)
    report_to = callback

    def hook(index: int) -> Callable[..., None]:
        def report(*_: Any) -> None:
            report_to(index + 1, total)
        return report

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    try:
        report_to(0, total)
        yield
    finally:
        for h in handles:
            h.remove()


def to_float32(out: Any) -> Any:
    """``out`` with every floating tensor in it cast to float32 (tensors, lists, dicts)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: to_float32(v) for k, v in out.items()}
    if isinstance(out, list | tuple):
        return type(out)(to_float32(v) for v in out)
    return out


class CachedEngine:
    """Base of the engines: cache, precision and compilation of one model's image encoder.

    Parameters
    ----------
    model : torch.nn.Module
        A loaded model with an ``image_encoder`` submodule. The engine takes it over: it is
        moved to ``device``, gradients are switched off, and the encoder's forward is
        replaced by the engine's.
    model_id : str
        Identity of the weights (``"vit_b:ec2df62732614e57"``); keys the embedding cache.
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks cuda > mps > cpu.
    precise : bool
        Encode in float32 even where a faster precision is available.
    compile : bool
        ``torch.compile`` the image encoder (first encode is slow).
    cache : EmbeddingCache or None
        Embedding cache; None keeps only the current image's embedding.

    Attributes
    ----------
    model_id : str
    family : str
        Model family (:mod:`napari_samlabel.engine.families`).
    device : torch.device
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"int8"`` (int8 linears, the rest float32): how
        the encoder runs (also a cache key part; see :func:`fast_precision`).
    compiled : bool
        Whether the encoder runs through ``torch.compile`` (False after a fallback).
    cache : EmbeddingCache or None
    encode_count : int
        How many times the image encoder ran (cache misses).
    logits_frame : str
        Geometry of the low-resolution logits (``"pad"`` or ``"stretch"``, see
        :func:`napari_samlabel.engine.quality.logits_to_image`).
    predictor : object
        The family's own predictor around the model (set by subclasses).
    """

    family = "sam"
    logits_frame = "pad"
    predictor: Any

    def __init__(self, model: Any, model_id: str, device: str | None = None,
                 precise: bool = False, compile: bool = False,
                 cache: EmbeddingCache | None = None) -> None:
        import torch

        self.device = choose_device(device)
        self.model_id = model_id
        self.cache = cache
        self.precision = "float32" if precise else fast_precision(self.device)
        model = model.to(self.device).eval()
        for p in model.parameters():  # inference only: no autograd bookkeeping
            p.requires_grad_(False)
        self.model = model
        encoder = model.image_encoder
        if self.precision == "int8" and not precision_forced() and not self._int8_pays(encoder):
            self.precision = "float32"
        #: Set by subclasses whose encoder runs with weights of this dtype (no autocast).
        self._encoder_dtype: Any = None
        self._prepare_encoder(encoder, compile)
        if self.precision == "int8":
            from napari_samlabel.engine.int8 import quantize_linears

            # Linears the family's own preparation left alone (all of them for SAM 2's
            # Hiera and SAM 3's ViT; none that run for SAM's lean blocks).
            quantize_linears(encoder)
        self._eager_forward = encoder.forward
        self._encoder = self._eager_forward
        self.compiled = False
        if compile:
            try:
                self._encoder = torch.compile(self._eager_forward, dynamic=False)
                self.compiled = True
            except Exception as exc:  # noqa: BLE001 - any backend failure: stay eager
                warnings.warn(f"torch.compile unavailable ({exc}); encoding eagerly", stacklevel=2)
        encoder.forward = self._encoder_forward
        self.encode_count = 0

    def _prepare_encoder(self, encoder: Any, compile: bool) -> None:
        """Hook for subclasses to adjust the encoder before its forward is wrapped."""

    def _int8_pays(self, encoder: Any) -> bool:
        """Hook: whether int8 linears make this encoder faster (else it runs float32)."""
        return True

    def _encoder_context(self) -> contextlib.AbstractContextManager[Any]:
        """Hook: a context every encoder pass runs in (e.g. reused attention buffers)."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, compiled={self.compiled})"
        )

    # -- encoding --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        if self.precision == "bfloat16" and self._encoder_dtype is None:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def _encoder_forward(self, x: Any) -> Any:
        """The image encoder's forward as installed in the model (precision, compile)."""
        if self._encoder_dtype is not None:
            x = x.to(self._encoder_dtype)
        # Progress hooks only on the eager path (hooks would make a compiled graph recompile).
        report = (contextlib.nullcontext() if self.compiled
                  else _reporting_blocks(self.model.image_encoder))
        try:
            with self._autocast(), self._encoder_context(), report:
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
            with self._autocast(), self._encoder_context():
                out = self._encoder(x)
        # Decoders run in float32 (several fail on bfloat16 inputs).
        return to_float32(out)

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        """Encode ``image`` (no cache, current image unchanged); subclasses implement it."""
        raise NotImplementedError

    def encode(self, image: np.ndarray, key: str | None = None) -> tuple[Embedding, bool]:
        """Return ``(embedding, from_cache)`` for ``image`` without making it current.

        Looks the embedding up in the cache first; a new embedding is stored there.
        ``key`` is the image's :func:`~napari_samlabel.engine.cache.image_key` if the caller
        already computed it. Safe to call from another thread than ``predict``'s.
        """
        image = validate_image(image)
        key = key or image_key(image)
        if self.cache is not None:
            hit = self.cache.get(self.model_id, key, self.precision)
            if hit is not None:
                return hit, True
        emb = self._run_encoder(image)
        self.encode_count += 1
        if self.cache is not None:
            emb = self.cache.put(key, emb)
        return emb, False

    def is_cached(self, image: np.ndarray) -> bool:
        """True when ``image``'s embedding would come from the cache (nothing is read)."""
        return self.cache is not None and self.cache.contains(
            self.model_id, image_key(validate_image(image)), self.precision)

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` (``H x W x 3`` ``uint8`` RGB) current, encoding it unless cached.

        Raises
        ------
        ValueError
            If ``image`` is not ``H x W x 3`` ``uint8``.
        """
        emb, _ = self.encode(image)
        self.set_embedding(emb)

    def _check_embedding(self, emb: Embedding) -> None:
        if emb.model_id != self.model_id:
            raise ValueError(
                f"embedding was computed by {emb.model_id!r}, this engine is {self.model_id!r}"
            )

    def set_embedding(self, emb: Embedding) -> None:
        """Install a precomputed embedding as the current image (no encoding)."""
        raise NotImplementedError

    # -- decoding --------------------------------------------------------------------------

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image; subclasses implement it."""
        raise NotImplementedError

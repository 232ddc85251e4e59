"""The SAM engine: ``SamPredictor`` behind the engine protocol, and :func:`load_engine`.

Typical use::

    from napari_samlabel.engine.sam import load_engine

    engine = load_engine("vit_b")            # checkpoint: explicit > cached > download
    engine.set_image(rgb_uint8)              # encodes once (or reads the embedding cache)
    pred = engine.predict(SamInputs(point_coords=..., point_labels=...))

:class:`SamEngine` serves the three families that share segment-anything's predictor API:
SAM itself, MobileSAM (``vit_t``: a TinyViT encoder in front of SAM's decoder) and SAM-HQ
(``sam_hq_*``: SAM's encoder, whose early ViT features also feed an HQ decoder; it returns
one refined mask per prompt). SAM 2 has its own engine
(:class:`napari_samlabel.engine.sam2.Sam2Engine`); :func:`load_engine` picks the right one
from the model type.

Fast CPU encoding
-----------------
The image encoder is the only expensive step. ``benchmarks/bench_engine.py`` measures every
mode on the machine at hand, each in its own process; on two CPU cores (AMD EPYC with
AVX512-BF16), ViT-B, a 500 x 375 image, random weights, one run (fastest of 4 rounds,
median in brackets): this engine in its default bfloat16 mode 3.46 s (3.79 s; cosine
0.99994 to the float32 embedding), in float32 8.6 s (9.4 s); stock segment-anything in
float32 took 16-18 s on quiet days and 35 s that day, when page faults were slow on the
host. ``torch.compile`` + bfloat16 took 6.3 s in an earlier run. Three switches control
how it runs; the decoder (``predict``) always runs in float32 (segment-anything's decoder
fails on bfloat16):

``precise``
    False (default): where the hardware runs bfloat16 natively (CPUs with AVX512-BF16/AMX,
    CUDA GPUs with bf16), the encoder runs in bfloat16 (a ViT with bfloat16 weights; other
    encoders under ``torch.autocast``). True: float32 always.
``compile``
    ``torch.compile`` the encoder (``dynamic=False``: the input is always 1 x 3 x 1024 x
    1024), with segment-anything's own attention. With torch 2.14 on CPU it is slower than
    the eager path below and its first encode pays a compilation of 10-70 s, so it is off
    by default (``samlabel embed --compile on`` turns it on; :meth:`SamEngine.warmup` pays
    the compilation up front). Falls back to eager with a warning if compilation fails.
``device``
    cuda > mps > cpu unless given.

Without ``compile``, the encoder's ViT blocks get a leaner forward
(:mod:`napari_samlabel.engine.lean_vit`: the same arithmetic in fewer passes over the
4096 x 4096 attention matrices of the global blocks, no ``qkv`` work on window padding,
and on the CPU oneDNN linears with the GELU and the residual adds fused in; in bfloat16 the
GELU is its tanh form, which differs by less than bfloat16's resolution), every encoder pass
reuses attention buffers that the engine keeps (:meth:`SamEngine.release_workspace` frees
them), and the ``samlabel`` command and the plugin ask PyTorch for transparent huge pages
and glibc to keep freed memory for reuse (:func:`napari_samlabel.engine.device.tune_memory`),
which removes most of the cost of touching fresh memory on every pass.

Embeddings are cached (:mod:`napari_samlabel.engine.cache`) by image content and
``model_id``: ``set_image`` on an image seen before costs a hash and a file read.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.base import CachedEngine, validate_image
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
from napari_samlabel.engine.checkpoint import (
    cache_root,
    load_model,
    resolve_checkpoint,
)
from napari_samlabel.engine.lean_vit import (
    attention_workspace,
    fused_linear_available,
    use_lean_vit,
)
from napari_samlabel.engine.protocol import Prediction, SamInputs

_CACHE_DEFAULT = "auto"

__all__ = ["SamEngine", "default_embedding_cache", "load_engine", "validate_image"]


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


class SamEngine(CachedEngine):
    """A SAM-family model on its ``SamPredictor``, implementing the engine protocol.

    Parameters
    ----------
    sam : torch.nn.Module
        A loaded ``Sam`` model of segment-anything, MobileSAM or SAM-HQ (see
        :func:`load_engine`, which also resolves the checkpoint). The engine takes it over:
        it is moved to ``device``, its encoder's forward is replaced by the engine's
        (precision, compile) and, when not compiling, its ViT attention layers get
        :func:`_lean_attention_forward`.
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
    family : str
        ``"sam"``, ``"mobile_sam"`` or ``"sam_hq"``: whose predictor wraps the model.

    Attributes
    ----------
    predictor : SamPredictor
        The family's wrapped predictor (for advanced use; prefer the methods below).

    Notes
    -----
    One engine holds one current image: calls from several threads must be serialised
    (the GUI runs them in one worker), except :meth:`encode`, which leaves the current
    image alone. The embedding cache itself is thread-safe. See
    :class:`~napari_samlabel.engine.base.CachedEngine` for the other attributes.
    """

    def __init__(
        self,
        sam: Any,
        model_id: str,
        device: str | None = None,
        precise: bool = False,
        compile: bool = False,
        cache: EmbeddingCache | None = None,
        family: str = "sam",
    ) -> None:
        from napari_samlabel.engine.families import make_predictor

        self.family = family
        # Attention buffers kept between encoder passes, per thread (lean_vit).
        self._workspaces = threading.local()
        super().__init__(sam, model_id, device=device, precise=precise, compile=compile,
                         cache=cache)
        self.predictor = make_predictor(family, self.model)

    def _prepare_encoder(self, encoder: Any, compile: bool) -> None:
        if compile:
            return  # inductor fuses segment-anything's own bias-add + softmax better
        import torch

        bf16 = self.precision == "bfloat16"
        fused = fused_linear_available(self.device, torch.bfloat16 if bf16 else torch.float32)
        if use_lean_vit(encoder, self.family, fused=fused, pack=fused and bf16, bfloat16=bf16) \
                and bf16:
            # A ViT whose weights are bfloat16 runs without autocast's casts and with a
            # bfloat16 residual stream: 2-5 % faster, cosine 0.99994 to the float32
            # embedding (random ViT-B weights; autocast: 0.99997).
            encoder.to(torch.bfloat16)
            self._encoder_dtype = torch.bfloat16

    def _encoder_context(self) -> contextlib.AbstractContextManager[Any]:
        store = getattr(self._workspaces, "buffers", None)
        if store is None:
            store = self._workspaces.buffers = {}
        return attention_workspace(store)

    def release_workspace(self) -> None:
        """Free the attention buffers kept for the next encode (400 MB for ViT-B in bfloat16).

        The next encode allocates them again. A thread's buffers are also freed when the
        thread ends.
        """
        self._workspaces = threading.local()

    # -- encoding --------------------------------------------------------------------------

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        """Run the predictor's preprocessing and the image encoder on ``image``."""
        import torch

        transform = self.predictor.transform
        resized = transform.apply_image(image)  # long side -> 1024, as SamPredictor does
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            x = self.model.preprocess(x.float())  # normalise and pad to 1024 x 1024
            out = self.model.image_encoder(x)
        extras: dict[str, np.ndarray] = {}
        if self.family == "sam_hq":
            # (features, interm): the HQ decoder reads only the first intermediate map.
            out, interm = out
            extras["interm_0"] = interm[0].cpu().numpy()
        return Embedding(
            features=out.cpu().numpy(),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(resized.shape[0]), int(resized.shape[1])),
            model_id=self.model_id,
            precision=self.precision,
            extras=extras,
        )

    def set_embedding(self, emb: Embedding) -> None:
        """Install a precomputed embedding as the current image (no encoding).

        Raises
        ------
        ValueError
            If the embedding was made by other weights (``model_id`` differs) or lacks a
            feature map this model needs.
        """
        import torch

        self._check_embedding(emb)
        if self.family == "sam_hq" and "interm_0" not in emb.extras:
            raise ValueError("a SAM-HQ embedding needs its 'interm_0' feature map")

        def tensor(arr: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32)

        p = self.predictor
        p.reset_image()
        p.features = tensor(emb.features)
        if self.family == "sam_hq":
            p.interm_features = [tensor(emb.extras["interm_0"])]
        p.original_size = tuple(emb.original_size)
        p.input_size = tuple(emb.input_size)
        p.is_image_set = True

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
        extras = {}
        if self.family == "sam_hq":
            extras["interm_0"] = p.interm_features[0].detach().float().cpu().numpy()
        return Embedding(
            features=p.features.detach().float().cpu().numpy(),
            original_size=tuple(p.original_size),
            input_size=tuple(p.input_size),
            model_id=self.model_id,
            precision=self.precision,
            extras=extras,
        )

    @property
    def is_image_set(self) -> bool:
        """True once an image or embedding is installed."""
        return bool(self.predictor.is_image_set)

    def reset_image(self) -> None:
        """Forget the current image."""
        self.predictor.reset_image()

    # -- decoding --------------------------------------------------------------------------

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image (see the protocol).

        SAM and MobileSAM return three masks with ``multimask_output``; SAM-HQ returns one
        (its HQ mask refines the best of SAM's three).

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
            logits_frame=self.logits_frame,
        )


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
) -> CachedEngine:
    """Resolve, load and wrap a checkpoint: the one way to get an engine of any model.

    Parameters
    ----------
    model_type : str
        A registered model type (``samlabel models`` lists them): ``"vit_b"`` (default),
        ``"vit_l"``, ``"vit_h"``, ``"vit_t"`` (MobileSAM), ``"sam_hq_vit_b"`` ...,
        ``"sam2.1_hiera_tiny"`` ..., or a ``*_test`` model (tests only).
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

    Returns
    -------
    SamEngine or napari_samlabel.engine.sam2.Sam2Engine
        Whichever serves the model's family.

    Raises
    ------
    napari_samlabel.engine.checkpoint.CheckpointError
        Missing/corrupt/wrong checkpoint, offline without a cached file, or the model
        family's optional package missing
        (:class:`~napari_samlabel.engine.errors.ModelUnavailableError`, with the pip
        command).
    KeyError
        Unknown model type.
    ValueError
        Unavailable device.
    """
    from napari_samlabel.engine.registry import get_model_spec

    spec = get_model_spec(model_type)
    resolved = resolve_checkpoint(
        model_type, checkpoint, cache_dir=cache_dir, download=download, progress=progress
    )
    model = load_model(spec.name, resolved.path)
    if isinstance(cache, EmbeddingCache):
        emb_cache: EmbeddingCache | None = cache
    elif cache is None:
        emb_cache = EmbeddingCache(None)
    elif isinstance(cache, str) and cache == _CACHE_DEFAULT:
        emb_cache = default_embedding_cache(cache_dir)
    else:
        emb_cache = EmbeddingCache(Path(cache))
    if spec.family == "sam2":
        from napari_samlabel.engine.sam2 import Sam2Engine

        return Sam2Engine(model, model_id=resolved.model_id, device=device, precise=precise,
                          compile=compile, cache=emb_cache)
    return SamEngine(model, model_id=resolved.model_id, device=device, precise=precise,
                     compile=compile, cache=emb_cache, family=spec.family)

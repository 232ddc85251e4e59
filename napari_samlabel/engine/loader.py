"""Loading an engine for a model type: :func:`load_engine`, the one way to get a real engine.

Typical use::

    from napari_samlabel.engine.loader import load_engine

    engine = load_engine("vit_b")            # checkpoint: explicit > cached > download
    engine.set_image(rgb_uint8)              # encodes once (or reads the embedding cache)
    pred = engine.predict(SamInputs(point_coords=..., point_labels=...))

The model type names its family (:mod:`napari_samlabel.engine.registry`); the family's
module (:mod:`napari_samlabel.engine.families`) gives the engine class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import EmbeddingCache
from napari_samlabel.engine.checkpoint import cache_root, load_model, resolve_checkpoint
from napari_samlabel.engine.families import get_family
from napari_samlabel.engine.registry import get_model_spec

_CACHE_DEFAULT = "auto"

__all__ = ["default_embedding_cache", "load_engine"]


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
    CachedEngine
        The engine class of the model's family (:attr:`Family.engine
        <napari_samlabel.engine.families.Family>`): ``SamEngine``, ``SamHqEngine`` or
        ``Sam2Engine``; an :class:`~napari_samlabel.engine.protocol.EncodingEngine`.

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
    engine = get_family(spec.family).engine
    return engine(model, model_id=resolved.model_id, device=device, precise=precise,
                  compile=compile, cache=emb_cache)

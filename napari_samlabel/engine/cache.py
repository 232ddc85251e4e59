"""Embedding cache: encode an image once per model, reopen it in milliseconds.

Two levels, both keyed by ``(model_id, precision, image_key(image))``:

- memory: a bounded LRU of the last ``memory_items`` embeddings (per process);
- disk: one ``.npz`` file per image, model and encoder precision, in
  ``<directory>/<model dir>/<image key>.npz``, where ``<model dir>`` is ``model_id`` with
  ``:`` replaced by ``-`` (``vit_b-ec2df6273261...``), followed by ``-bf16`` for embeddings
  computed by a bfloat16 encoder and ``-int8`` for an encoder with int8 linears, and
  ``<image key>`` is the SHA-256 of the image's shape, dtype and pixel bytes.

Why precision is part of the key: ``--precise`` asks for float32 encoder output, and must
not be served an embedding a faster encoder made earlier. The other way round is fine, so a
bfloat16 engine also accepts a cached float32 embedding, and an int8 engine a float32 or
bfloat16 one (see :meth:`EmbeddingCache.get`).

Disk format (format version 2), readable with plain ``numpy.load``:

==================  ===========================  ============================================
key                 dtype / shape                meaning
==================  ===========================  ============================================
``embedding``       float16, ``(1, C, h, w)``    the image embedding (SAM: ``(1, 256, 64, 64)``,
                                                 ``SamPredictor.features``)
``extra__<name>``   float16, any shape           further feature maps a model needs besides
                                                 the embedding (SAM 2: ``extra__high_res_0``
                                                 ``(1, 32, 256, 256)`` and ``extra__high_res_1``
                                                 ``(1, 64, 128, 128)``; SAM-HQ:
                                                 ``extra__interm_0``, the ViT features after
                                                 the first global-attention block)
``original_size``   int64, ``(2,)``              ``(H, W)`` of the image given to ``set_image``
``input_size``      int64, ``(2,)``              ``(h, w)`` of the resized encoder input
``model_id``        str, ``()``                  ``"<model type>:<checkpoint sha256[:16]>"``
``precision``       str, ``()``                  ``"float32"``, ``"bfloat16"`` or ``"int8"``
``format_version``  int64, ``()``                2
==================  ===========================  ============================================

Files of format version 1 (no precision recorded) are treated as a miss and replaced.

The embedding is stored as float16 (2 MB instead of 4 MB per SAM image; the cosine to the
float32 embedding is above 0.99999, far below the bf16 encoder's own error). The engine
installs the float16-rounded embedding even right after encoding, so masks are identical
whether an embedding came from the encoder or from the cache.

The disk cache is bounded by ``max_disk_bytes`` (oldest files by modification time are
removed first; a hit refreshes the time). Files are written to a temporary name and renamed
(:mod:`napari_samlabel.core.fsutil`), so concurrent writers of the same key are safe (the
last rename wins, both contents are valid) and readers never see half a file. A file that
cannot be read is reported with a warning, deleted, and recomputed by the caller.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import re
import threading
import time
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from napari_samlabel.core.fsutil import atomic_save

FORMAT_VERSION = 2
EMBEDDING_SHAPE = (1, 256, 64, 64)  # SAM, MobileSAM, SAM-HQ and SAM 2 (256 channels)
PRECISIONS = ("float32", "bfloat16", "int8")
_EXTRA_PREFIX = "extra__"
DEFAULT_MEMORY_ITEMS = 8
DEFAULT_MAX_DISK_BYTES = 4 * 1024**3
_STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class Embedding:
    """One image's embedding and the sizes the model's predictor needs to use it.

    Attributes
    ----------
    features : numpy.ndarray
        ``(1, C, h, w)`` image embedding (SAM: ``(1, 256, 64, 64)``), float16 or float32.
    original_size : tuple of int
        ``(H, W)`` of the original image.
    input_size : tuple of int
        ``(h, w)`` of the resized image fed to the encoder (SAM: long side 1024; SAM 2:
        1024 x 1024).
    model_id : str
        Identity of the weights that produced it.
    precision : str
        How the encoder ran: ``"float32"`` or ``"bfloat16"`` (autocast).
    extras : Mapping[str, numpy.ndarray]
        Further feature maps the model's decoder needs (SAM 2's high-resolution features,
        SAM-HQ's early ViT features); empty for SAM and MobileSAM.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str
    precision: str = "float32"
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = tuple(self.features.shape)
        if len(shape) != 4 or shape[0] != 1:
            raise ValueError(
                f"embedding must have shape (1, C, h, w), e.g. SAM's {EMBEDDING_SHAPE}, "
                f"got {shape}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in self.extras:
            if not name.isidentifier():
                raise ValueError(f"extra feature names must be identifiers, got {name!r}")
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature arrays."""
        return int(self.features.nbytes + sum(a.nbytes for a in self.extras.values()))


def image_key(image: np.ndarray) -> str:
    """SHA-256 (hex) of an image's shape, dtype and pixel bytes: its cache key."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    digest.update(arr.data.cast("B"))
    return digest.hexdigest()


def _model_dir_name(model_id: str, precision: str = "float32") -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", model_id.replace(":", "-"))
    return name + {"float32": "", "bfloat16": "-bf16"}.get(precision, f"-{precision}")


def _acceptable(precision: str) -> tuple[str, ...]:
    """Precisions an engine encoding at ``precision`` accepts, preferred first."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    # A fast engine takes a more precise embedding too (int8 is the least precise: its
    # cosine to float32 is 0.9999, bfloat16's 0.99995, on ViT-B).
    return {"bfloat16": ("bfloat16", "float32"),
            "int8": ("int8", "float32", "bfloat16")}.get(precision, ("float32",))


class EmbeddingCache:
    """Memory LRU plus on-disk ``.npz`` cache of SAM embeddings (see the module docstring).

    Parameters
    ----------
    directory : path or None
        Root of the disk cache; None keeps embeddings in memory only.
    memory_items : int
        How many embeddings the memory LRU keeps (0 disables it).
    max_disk_bytes : int
        Upper bound of the disk cache's total size.
    dtype : str
        Storage dtype of embeddings, ``"float16"`` (default) or ``"float32"``.

    Notes
    -----
    Thread-safe: the GUI may read from one thread while a worker writes from another.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        memory_items: int = DEFAULT_MEMORY_ITEMS,
        max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES,
        dtype: str = "float16",
    ) -> None:
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        if memory_items < 0 or max_disk_bytes < 0:
            raise ValueError("memory_items and max_disk_bytes must be >= 0")
        self.directory = None if directory is None else Path(directory)
        self.memory_items = memory_items
        self.max_disk_bytes = max_disk_bytes
        self.dtype = np.dtype(dtype)
        self._memory: collections.OrderedDict[tuple[str, str, str], Embedding] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"EmbeddingCache(directory={self.directory!r}, memory_items={self.memory_items}, "
            f"max_disk_bytes={self.max_disk_bytes}, dtype={self.dtype.name!r})"
        )

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, model_id: str, key: str, precision: str = "float32") -> Path | None:
        """The ``.npz`` file of ``(model_id, precision, key)``; None without a disk cache."""
        if self.directory is None:
            return None
        return self.directory / _model_dir_name(model_id, precision) / f"{key}.npz"

    # -- lookup ----------------------------------------------------------------------------

    def contains(self, model_id: str, key: str, precision: str = "float32") -> bool:
        """True if an acceptable embedding is in memory or on disk (not read).

        ``precision`` is the encoder precision of the asking engine: a ``"bfloat16"``
        engine accepts float32 embeddings too, a ``"float32"`` engine only float32 ones.
        """
        for prec in _acceptable(precision):
            with self._lock:
                if (model_id, prec, key) in self._memory:
                    return True
            path = self.path_for(model_id, key, prec)
            if path is not None and path.is_file():
                return True
        return False

    def get(self, model_id: str, key: str, precision: str = "float32") -> Embedding | None:
        """Return a cached embedding acceptable at ``precision``, or None.

        An unreadable file counts as a miss (with a warning, and is removed).
        """
        for prec in _acceptable(precision):
            with self._lock:
                hit = self._memory.get((model_id, prec, key))
                if hit is not None:
                    self._memory.move_to_end((model_id, prec, key))
                    return hit
            path = self.path_for(model_id, key, prec)
            if path is None or not path.is_file():
                continue
            emb = self._read(path, model_id, prec)
            if emb is None:
                continue
            with contextlib.suppress(OSError):  # mark as recently used for eviction
                os.utime(path)
            self._remember(key, emb)
            return emb
        return None

    def _read(self, path: Path, model_id: str, precision: str) -> Embedding | None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                version = int(npz["format_version"])
                if version < FORMAT_VERSION:
                    # Older files do not record the encoder precision: recompute silently.
                    with contextlib.suppress(OSError):
                        path.unlink()
                    return None
                if version != FORMAT_VERSION:
                    raise ValueError(f"format version {version}, expected {FORMAT_VERSION}")
                stored_id = str(npz["model_id"])
                if stored_id != model_id:
                    raise ValueError(f"model_id {stored_id!r}, expected {model_id!r}")
                stored_precision = str(npz["precision"])
                if stored_precision != precision:
                    raise ValueError(f"precision {stored_precision!r}, expected {precision!r}")
                emb = Embedding(
                    features=np.asarray(npz["embedding"]),
                    original_size=_pair(npz["original_size"]),
                    input_size=_pair(npz["input_size"]),
                    model_id=stored_id,
                    precision=stored_precision,
                    extras={name[len(_EXTRA_PREFIX):]: np.asarray(npz[name])
                            for name in npz.files if name.startswith(_EXTRA_PREFIX)},
                )
        except FileNotFoundError:  # evicted by another process meanwhile
            return None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            warnings.warn(
                f"ignoring unreadable embedding cache file {path} ({type(exc).__name__}: "
                f"{exc}); it will be recomputed",
                stacklevel=3,
            )
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return emb

    # -- store -----------------------------------------------------------------------------

    def to_storage(self, emb: Embedding) -> Embedding:
        """Return ``emb`` with every feature map in the cache's storage dtype."""
        arrays = [emb.features, *emb.extras.values()]
        if all(a.dtype == self.dtype for a in arrays):
            return emb
        return Embedding(
            features=emb.features.astype(self.dtype),
            original_size=emb.original_size,
            input_size=emb.input_size,
            model_id=emb.model_id,
            precision=emb.precision,
            extras={k: v.astype(self.dtype) for k, v in emb.extras.items()},
        )

    def put(self, key: str, emb: Embedding) -> Embedding:
        """Store ``emb`` under ``(emb.model_id, emb.precision, key)``; return the stored copy.

        The returned embedding has the storage dtype, so callers install exactly what a
        later cache hit would give.
        """
        emb = self.to_storage(emb)
        self._remember(key, emb)
        path = self.path_for(emb.model_id, key, emb.precision)
        if path is not None:
            arrays: dict[str, Any] = {
                "embedding": emb.features,
                **{_EXTRA_PREFIX + k: v for k, v in emb.extras.items()},
                "original_size": np.asarray(emb.original_size, dtype=np.int64),
                "input_size": np.asarray(emb.input_size, dtype=np.int64),
                "model_id": np.asarray(emb.model_id),
                "precision": np.asarray(emb.precision),
                "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
            }
            try:
                atomic_save(path, lambda fh: np.savez(fh, **arrays))
            except OSError as exc:
                # A full or read-only cache must not stop labelling: the embedding is
                # still in memory and simply recomputed next time.
                warnings.warn(
                    f"cannot write embedding cache file {path} ({exc}); continuing without "
                    "the disk cache for this image",
                    stacklevel=2,
                )
                return emb
            self._evict(keep=path)
        return emb

    def _remember(self, key: str, emb: Embedding) -> None:
        if self.memory_items == 0:
            return
        entry = (emb.model_id, emb.precision, key)
        with self._lock:
            self._memory[entry] = emb
            self._memory.move_to_end(entry)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        """Forget the in-memory embeddings (the disk cache stays)."""
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        """Number of embeddings held in memory."""
        with self._lock:
            return len(self._memory)

    # -- size bound ------------------------------------------------------------------------

    def disk_usage(self) -> int:
        """Total size in bytes of the ``.npz`` files in the disk cache."""
        return sum(size for _, _, size in self._scan())

    def _scan(self) -> list[tuple[float, Path, int]]:
        """``(mtime, path, size)`` of every cache file; removes stale temporary files."""
        if self.directory is None or not self.directory.is_dir():
            return []
        files: list[tuple[float, Path, int]] = []
        now = time.time()
        for sub in os.scandir(self.directory):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.endswith(".npz"):
                    files.append((st.st_mtime, Path(entry.path), st.st_size))
                elif entry.name.endswith(".tmp") and now - st.st_mtime > _STALE_TMP_SECONDS:
                    # left behind by a killed writer (live writers rename within seconds)
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        return files

    def _evict(self, keep: Path | None = None) -> None:
        files = sorted(self._scan())
        total = sum(size for _, _, size in files)
        for _, path, size in files:
            if total <= self.max_disk_bytes:
                break
            if keep is not None and path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size


def _pair(value: np.ndarray) -> tuple[int, int]:
    arr = np.asarray(value).ravel()
    if arr.shape != (2,):
        raise ValueError(f"expected 2 sizes, got shape {arr.shape}")
    return int(arr[0]), int(arr[1])

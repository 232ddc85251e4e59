"""Finding, downloading, verifying and loading SAM checkpoints.

Resolution order (:func:`resolve_checkpoint`):

1. an explicit path given by the user (``--checkpoint PATH``), used as is;
2. the official file in the checkpoint cache, ``<cache root>/checkpoints/<file name>``;
3. a download of the official file into that cache, with progress, SHA-256 verified.

The cache root is, in order: the ``cache_dir`` argument, the ``SAMLABEL_CACHE_DIR``
environment variable, ``platformdirs.user_cache_dir("napari-samlabel")``.

Downloads go to a temporary name in the cache directory and are renamed to the real file
name only after the SHA-256 matched, so an interrupted or corrupt download never looks like
a valid checkpoint. Every problem raises :class:`CheckpointError` with a message naming the
file, the model type and what to do.

The model identity ``model_id = f"{model_type}:{sha256[:16]}"`` keys embedding caches and
provenance. Hashing a 2.5 GB file takes seconds, so SHA-256 sums of local files are
remembered in ``<cache root>/sha256-index.json`` by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.registry import ModelSpec, get_model_spec, model_names

CACHE_ENV_VAR = "SAMLABEL_CACHE_DIR"
_SHA_INDEX = "sha256-index.json"


class CheckpointError(Exception):
    """A checkpoint is missing, cannot be downloaded, or does not fit its model type."""


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file ready to load.

    Attributes
    ----------
    model_type : str
        Registered model type (``"vit_b"``).
    path : pathlib.Path
        The checkpoint file.
    sha256 : str
        SHA-256 of the file (hex).
    source : str
        ``"explicit"``, ``"cache"`` or ``"download"``.
    """

    model_type: str
    path: Path
    sha256: str
    source: str

    @property
    def model_id(self) -> str:
        """Identity of these weights: ``"<model_type>:<first 16 hex digits of SHA-256>"``."""
        return make_model_id(self.model_type, self.sha256)


def make_model_id(model_type: str, sha256: str) -> str:
    """Return the model identity used to key embedding caches."""
    return f"{model_type}:{sha256[:16]}"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache root: ``cache_dir`` > ``$SAMLABEL_CACHE_DIR`` > the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-samlabel"))


def checkpoint_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory where downloaded checkpoints are kept."""
    return cache_root(cache_dir) / "checkpoints"


def cached_checkpoint_path(
    model_type: str, cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """Where the official checkpoint of ``model_type`` is (or would be) cached; None if none."""
    spec = get_model_spec(model_type)
    return None if spec.filename is None else checkpoint_dir(cache_dir) / spec.filename


# --- SHA-256 -------------------------------------------------------------------------------


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """SHA-256 (hex) of a file, remembered by path, size and mtime in the cache root.

    The index is only an optimisation: if it cannot be read or written, the hash is
    simply computed.
    """
    path = Path(path).resolve()
    st = path.stat()
    index_path = cache_root(cache_dir) / _SHA_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    entry = index.get(str(path))
    if (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    sha = _hash_file(path)
    index[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    try:
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
    except OSError:  # read-only cache: the hash is still right, just not remembered
        pass
    return sha


# --- resolution and download ---------------------------------------------------------------


def _how_to_pass(spec: ModelSpec) -> str:
    return (
        f"pass a local copy with --checkpoint PATH (Python: checkpoint=PATH), "
        f"e.g. --model {spec.name} --checkpoint /path/to/{spec.filename or 'checkpoint.pth'}"
    )


def resolve_checkpoint(
    model_type: str,
    checkpoint: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressCallback = no_progress,
) -> ResolvedCheckpoint:
    """Find the checkpoint of ``model_type``: explicit path > cached file > download.

    Parameters
    ----------
    model_type : str
        A registered model type (see :func:`napari_samlabel.engine.registry.model_names`).
    checkpoint : path, optional
        A local checkpoint file; used as is (fine-tuned weights are allowed, so its
        SHA-256 is recorded but not compared with the official one).
    cache_dir : path, optional
        Cache root (see the module docstring).
    download : bool
        Download the official file when it is not cached.
    progress : callable
        ``progress(done_bytes, total_bytes, message)`` during a download.

    Raises
    ------
    CheckpointError
        Missing explicit file, no download possible (offline, or a test model), or a
        download whose SHA-256 does not match.
    KeyError
        Unknown model type.
    """
    spec = get_model_spec(model_type)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint file {path} for model type {model_type!r} does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
            )
        return ResolvedCheckpoint(model_type, path, file_sha256(path, cache_dir), "explicit")

    if spec.url is None or spec.filename is None or spec.sha256 is None:
        raise CheckpointError(
            f"model type {model_type!r} has no downloadable checkpoint: {spec.description}. "
            + _how_to_pass(spec)
        )
    target = checkpoint_dir(cache_dir) / spec.filename
    if target.is_file():
        sha = file_sha256(target, cache_dir)
        if sha == spec.sha256:
            return ResolvedCheckpoint(model_type, target, sha, "cache")
        # Only verified files are ever renamed into place, so this is damage on disk.
        warnings.warn(
            f"cached checkpoint {target} has SHA-256 {sha}, expected {spec.sha256}; "
            "removing it and downloading it again",
            stacklevel=2,
        )
        target.unlink(missing_ok=True)
    if not download:
        raise CheckpointError(_missing_message(spec, target, reason="downloads are disabled"))
    _download(spec, target, progress)
    return ResolvedCheckpoint(model_type, target, file_sha256(target, cache_dir), "download")


def _missing_message(spec: ModelSpec, target: Path, reason: str) -> str:
    return (
        f"checkpoint {spec.filename} for model type {spec.name!r} is not available: {reason}. "
        f"It is downloaded from {spec.url} and cached as {target}. "
        f"Download it on a machine with internet access and either copy it to {target} or "
        + _how_to_pass(spec)
    )


class _CallbackBar:
    """The tqdm-like object pooch drives, forwarding to a progress callback."""

    def __init__(self, progress: ProgressCallback, name: str) -> None:
        self._progress = progress
        self._name = name
        self.total: int | None = None
        self.n = 0

    def update(self, n: int) -> None:
        self.n += int(n)
        total = self.total or None
        self._progress(min(self.n, total) if total else self.n, total, self._name)

    def reset(self) -> None:
        self.n = 0

    def close(self) -> None:
        pass


def _download(spec: ModelSpec, target: Path, progress: ProgressCallback) -> None:
    """Download ``spec``'s checkpoint to ``target`` (temporary name, verified, renamed)."""
    import pooch
    import requests

    assert spec.url is not None and spec.sha256 is not None  # checked by the caller
    target.parent.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(
        progressbar=_CallbackBar(progress, spec.filename or spec.name),
        chunk_size=1 << 20,
        timeout=30,
    )
    try:
        # pooch streams to a temporary file in target's directory, checks the hash and
        # only then moves it to ``target``; on any failure the temporary file is removed.
        pooch.retrieve(
            url=spec.url,
            known_hash=f"sha256:{spec.sha256}",
            fname=target.name,
            path=target.parent,
            downloader=downloader,
            progressbar=False,
        )
    except requests.exceptions.RequestException as exc:
        raise CheckpointError(
            _missing_message(spec, target, reason=f"the download failed ({exc})")
        ) from exc
    except ValueError as exc:  # pooch: hash mismatch
        raise CheckpointError(
            f"downloaded checkpoint for model type {spec.name!r} from {spec.url} failed "
            f"SHA-256 verification (expected {spec.sha256}); nothing was saved to {target}. "
            f"Details: {exc}"
        ) from exc


# --- loading -------------------------------------------------------------------------------


def _guess_model_type(state_dict: Any) -> str | None:
    """Guess which registered model a state dict belongs to, from the encoder's shapes."""
    try:
        width = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
        depth = 1 + max(
            int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")
        )
    except (KeyError, ValueError, AttributeError, IndexError, TypeError):
        return None
    for name in model_names():
        cfg = get_model_spec(name).config
        if cfg["encoder_embed_dim"] == width and cfg["encoder_depth"] == depth:
            return name
    return None


def load_sam(model_type: str, path: str | os.PathLike[str]) -> Any:
    """Build ``model_type``'s architecture and load the checkpoint at ``path`` into it.

    ``torch.load(path, map_location="cpu", weights_only=True)`` then
    ``load_state_dict(strict=True)``: no pickled code runs, and every key and shape must
    match the architecture.

    Returns
    -------
    segment_anything.modeling.Sam
        The model on the CPU, in eval mode.

    Raises
    ------
    CheckpointError
        The file is missing, not a PyTorch file, not a state dict, or belongs to another
        architecture (the message names the file, the expected model type, and the model
        type the file looks like when it can tell).
    """
    import pickle
    import zipfile

    import torch

    spec = get_model_spec(model_type)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} for model type {model_type!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        AttributeError,
        TypeError,
    ) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path} (expected a {model_type!r} SAM state dict): the "
            f"file is corrupt, truncated or not a PyTorch weights file ({type(exc).__name__}: "
            f"{_first_line(exc)})"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} is not a state dict of tensors (found {type(state).__name__}); "
            f"expected the weights of a {model_type!r} SAM"
        )
    sam = spec.build()
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        guess = _guess_model_type(state)
        hint = (
            f"; it looks like a {guess!r} checkpoint: use --model {guess}"
            if guess and guess != model_type
            else ""
        )
        raise CheckpointError(
            f"checkpoint {path} does not fit model type {model_type!r} (missing, unexpected "
            f"or differently shaped weights){hint}. Details: {_summarise(str(exc))}"
        ) from exc
    return sam.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _summarise(message: str, limit: int = 600) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + " ..."

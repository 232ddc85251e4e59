"""Finding, downloading, verifying and loading model checkpoints (every model family).

Resolution order (:func:`resolve_checkpoint`):

1. an explicit path given by the user (``--checkpoint PATH``), used as is;
2. the official file in the checkpoint cache, ``<cache root>/checkpoints/<file name>``;
3. a download of the official file into that cache, with progress, SHA-256 verified.

Models whose checkpoint is a Hugging Face folder (SAM 3, ``ModelSpec.hub_repo``) resolve
the same way with the hub's own cache: ``--checkpoint DIR`` (a ``save_pretrained`` folder or
the hub snapshot), the snapshot in the hub cache (``$HF_HUB_CACHE``), then a download with
``huggingface_hub`` and the user's token (the repository is gated). Offline, or without
access, the message says what to download, where it goes and which option takes it.

The cache root is, in order: the ``cache_dir`` argument, the ``SAMLABEL_CACHE_DIR``
environment variable, ``platformdirs.user_cache_dir("napari-samlabel")``.

Downloads go to a temporary name in the cache directory and are renamed to the real file
name only after the published checksum (SHA-256, or MD5 where no SHA-256 is published)
matched, so an interrupted or corrupt download never looks like
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
from napari_samlabel.engine.errors import CheckpointError, ModelUnavailableError
from napari_samlabel.engine.families import get_family, require_family, state_fingerprint
from napari_samlabel.engine.registry import ModelSpec, get_model_spec, model_names

CACHE_ENV_VAR = "SAMLABEL_CACHE_DIR"
_SHA_INDEX = "sha256-index.json"


__all__ = [
    "CheckpointError",
    "ModelUnavailableError",
    "ResolvedCheckpoint",
    "cache_root",
    "cached_checkpoint_path",
    "checkpoint_cached",
    "checkpoint_dir",
    "file_digest",
    "file_sha256",
    "folder_sha256",
    "hub_repo_dir",
    "hub_snapshot",
    "load_model",
    "load_sam",
    "make_model_id",
    "resolve_checkpoint",
]


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
    if spec.hub_repo:
        return hub_snapshot(spec.hub_repo) or hub_repo_dir(spec.hub_repo)
    return None if spec.filename is None else checkpoint_dir(cache_dir) / spec.filename


def checkpoint_cached(model_type: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the official checkpoint of ``model_type`` is cached (file, or hub snapshot)."""
    spec = get_model_spec(model_type)
    if spec.hub_repo:
        return hub_snapshot(spec.hub_repo) is not None
    path = cached_checkpoint_path(model_type, cache_dir)
    return path is not None and path.is_file()


# --- SHA-256 -------------------------------------------------------------------------------


def _hash_file(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """SHA-256 (hex) of a file, remembered by path, size and mtime (see :func:`file_digest`)."""
    return file_digest(path, "sha256", cache_dir)


def file_digest(
    path: str | os.PathLike[str], algorithm: str = "sha256",
    cache_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Hex digest of a file, remembered by path, size and mtime in the cache root.

    Hashing a 2.5 GB checkpoint takes seconds, so digests are kept in
    ``<cache root>/sha256-index.json``. ``algorithm="md5"`` serves checkpoints whose
    publishers give no SHA-256. The index is only an optimisation: if it cannot be read or
    written, the digest is simply computed.
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
    if not (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
    ):
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if isinstance(entry.get(algorithm), str):
        return entry[algorithm]
    entry[algorithm] = _hash_file(path, algorithm)
    index[str(path)] = entry
    try:
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
    except OSError:  # read-only cache: the hash is still right, just not remembered
        pass
    return entry[algorithm]


def _matches_published(path: Path, spec: ModelSpec, cache_dir: Any) -> tuple[bool, str]:
    """Whether ``path`` has ``spec``'s published checksum; also returns what was found."""
    if spec.sha256:
        found = file_sha256(path, cache_dir)
        return found == spec.sha256, f"SHA-256 {found}, expected {spec.sha256}"
    assert spec.md5 is not None  # downloadable specs have one of the two
    found = file_digest(path, "md5", cache_dir)
    return found == spec.md5, f"MD5 {found}, expected {spec.md5}"


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
    model_type = spec.name  # aliases resolve to one identity (model_id, cache folders)
    if spec.hub_repo or _is_folder_family(spec):
        return _resolve_folder(spec, checkpoint, cache_dir, download)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint file {path} for model type {model_type!r} does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
            )
        return ResolvedCheckpoint(model_type, path, file_sha256(path, cache_dir), "explicit")

    if not spec.downloadable:
        raise CheckpointError(
            f"model type {model_type!r} has no downloadable checkpoint: {spec.description}. "
            + _how_to_pass(spec)
        )
    assert spec.filename is not None
    target = checkpoint_dir(cache_dir) / spec.filename
    if target.is_file():
        ok, found = _matches_published(target, spec, cache_dir)
        if ok:
            return ResolvedCheckpoint(model_type, target, file_sha256(target, cache_dir),
                                      "cache")
        # Only verified files are ever renamed into place, so this is damage on disk.
        warnings.warn(
            f"cached checkpoint {target} has {found}; removing it and downloading it again",
            stacklevel=2,
        )
        target.unlink(missing_ok=True)
    if not download:
        raise CheckpointError(_missing_message(spec, target, reason="downloads are disabled"))
    _download(spec, target, progress)
    return ResolvedCheckpoint(model_type, target, file_sha256(target, cache_dir), "download")


# --- Hugging Face folders (SAM 3) ------------------------------------------------------------


def _is_folder_family(spec: ModelSpec) -> bool:
    return get_family(spec.family).load_pretrained is not None


def hub_repo_dir(repo: str) -> Path:
    """Where the Hugging Face hub cache keeps ``repo`` (``$HF_HUB_CACHE/models--org--name``)."""
    try:
        from huggingface_hub import constants

        base = Path(constants.HF_HUB_CACHE)
    except ImportError:  # the [sam3] extra is not installed: the hub's default place
        base = Path(os.environ.get("HF_HUB_CACHE")
                    or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    return base.expanduser() / ("models--" + repo.replace("/", "--"))


def hub_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder of ``repo`` with its config and weights, or None."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    from napari_samlabel.engine.families.sam3 import HUB_FILES

    try:
        path = Path(snapshot_download(repo, allow_patterns=list(HUB_FILES),
                                      local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if _folder_complete(path) else None


def _folder_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def folder_sha256(folder: Path, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """One SHA-256 of a checkpoint folder: of its config and weight files' SHA-256 sums."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + [folder / "config.json"]:
        digest.update(f"{path.name}:{file_sha256(path, cache_dir)}\n".encode())
    return digest.hexdigest()


def _how_to_get_hub(spec: ModelSpec) -> str:
    repo = spec.hub_repo or "the model's repository"
    return (
        f"The weights of {spec.name!r} are the Hugging Face repository {repo}, which is "
        f"gated: accept its licence at https://huggingface.co/{repo}, log in with "
        f"`hf auth login` (or set HF_TOKEN) and run again to download it into the hub cache "
        f"({hub_repo_dir(repo) if spec.hub_repo else '~/.cache/huggingface/hub'}); or, on a "
        f"machine with access, run `hf download {repo} --local-dir DIR`, copy DIR here and "
        f"pass it with --checkpoint DIR (Python: checkpoint=DIR), e.g. --model {spec.name} "
        "--checkpoint /path/to/sam3"
    )


def _resolve_folder(spec: ModelSpec, checkpoint: str | os.PathLike[str] | None,
                    cache_dir: str | os.PathLike[str] | None,
                    download: bool) -> ResolvedCheckpoint:
    """Explicit folder > hub cache > download with the user's token (SAM 3)."""
    require_family(spec.family, spec.name)  # transformers (and huggingface_hub) installed
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_file() and _folder_complete(path.parent):
            path = path.parent  # config.json or a weights file inside the folder
        if not path.is_dir():
            raise CheckpointError(
                f"checkpoint {path} for model type {spec.name!r} "
                + ("does not exist" if not path.exists() else "is a file")
                + f": {spec.name!r} takes a folder (a save_pretrained copy or the hub "
                "snapshot, with config.json and *.safetensors). " + _how_to_get_hub(spec))
        if not _folder_complete(path):
            raise CheckpointError(
                f"checkpoint folder {path} for model type {spec.name!r} lacks config.json or "
                "*.safetensors weights. " + _how_to_get_hub(spec))
        return ResolvedCheckpoint(spec.name, path, folder_sha256(path, cache_dir), "explicit")
    if not spec.hub_repo:
        raise CheckpointError(
            f"model type {spec.name!r} has no downloadable checkpoint: {spec.description}. "
            f"Pass a folder with --checkpoint DIR (Python: checkpoint=DIR)")
    cached = hub_snapshot(spec.hub_repo)
    if cached is not None:
        return ResolvedCheckpoint(spec.name, cached, folder_sha256(cached, cache_dir), "cache")
    if not download:
        raise CheckpointError(
            f"SAM 3 weights for model type {spec.name!r} are not in the hub cache and "
            "downloads are disabled. " + _how_to_get_hub(spec))
    path = _hub_download(spec)
    return ResolvedCheckpoint(spec.name, path, folder_sha256(path, cache_dir), "download")


def _hub_download(spec: ModelSpec) -> Path:
    """Download ``spec``'s hub snapshot (config, processor, safetensors) with the user's token."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    from napari_samlabel.engine.families.sam3 import HUB_FILES

    assert spec.hub_repo is not None
    try:
        path = Path(snapshot_download(spec.hub_repo, allow_patterns=list(HUB_FILES)))
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise CheckpointError(
            f"the hub refused {spec.hub_repo} for model type {spec.name!r}: no access with "
            f"this machine's token ({type(exc).__name__}). " + _how_to_get_hub(spec)) from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise CheckpointError(
            f"cannot download {spec.hub_repo} for model type {spec.name!r}: offline "
            f"({type(exc).__name__}). " + _how_to_get_hub(spec)) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(
            f"cannot download {spec.hub_repo} for model type {spec.name!r} "
            f"({type(exc).__name__}: {_first_line(exc)}). " + _how_to_get_hub(spec)) from exc
    if not _folder_complete(path):
        raise CheckpointError(f"the download of {spec.hub_repo} into {path} is incomplete "
                              "(no config.json or weights); run again")
    return path


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

    assert spec.url is not None and spec.known_hash is not None  # checked by the caller
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the checkpoint cache folder {target.parent} ({exc.strerror}); "
            f"set {CACHE_ENV_VAR} to a writable folder, or " + _how_to_pass(spec)
        ) from exc
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
            known_hash=spec.known_hash,
            fname=target.name,
            path=target.parent,
            downloader=downloader,
            progressbar=False,
        )
    except requests.exceptions.RequestException as exc:
        raise CheckpointError(
            _missing_message(spec, target, reason=f"the download failed ({_why(exc)})")
        ) from exc
    except ValueError as exc:  # pooch: hash mismatch
        algorithm = "SHA-256" if spec.sha256 else "MD5"
        raise CheckpointError(
            f"downloaded checkpoint for model type {spec.name!r} from {spec.url} failed "
            f"{algorithm} verification (expected {spec.known_hash}); nothing was saved to "
            f"{target}. Details: {exc}"
        ) from exc
    except OSError as exc:  # disk full, permissions: pooch removed its temporary file
        raise CheckpointError(
            f"cannot write checkpoint {target} for model type {spec.name!r} "
            f"({exc.strerror or exc}); nothing was saved. Free some space or set "
            f"{CACHE_ENV_VAR} to another folder, or " + _how_to_pass(spec)
        ) from exc


# --- loading -------------------------------------------------------------------------------


def _guess_model_type(state_dict: Any) -> str | None:
    """Guess which registered model a state dict belongs to (family and encoder size).

    Every family reads its own fingerprint from the state dict
    (:attr:`~napari_samlabel.engine.families.Family.state_fingerprint`) and from each
    registered config (:attr:`~napari_samlabel.engine.families.Family.architecture_key`).
    """
    found = state_fingerprint(state_dict)
    if found is None:
        return None
    for name in model_names():
        spec = get_model_spec(name)
        if get_family(spec.family).architecture_key(spec.config) == found:
            return name
    return None


def _unwrap_state(state: Any, spec: ModelSpec) -> Any:
    """The state dict inside a checkpoint file (SAM 2 keeps it under ``"model"``)."""
    key = get_family(spec.family).checkpoint_key or "model"
    # Fine-tuning scripts of every family also save {"model": state_dict, ...}.
    if isinstance(state, dict) and isinstance(state.get(key), dict):
        return state[key]
    return state


def load_model(model_type: str, path: str | os.PathLike[str]) -> Any:
    """Build ``model_type``'s architecture and load the checkpoint at ``path`` into it.

    ``torch.load(path, map_location="cpu", weights_only=True)`` then
    ``load_state_dict(strict=True)``: no pickled code runs, and every key and shape must
    match the architecture (so a plain SAM checkpoint does not pass for SAM-HQ with random
    HQ layers, as the HQ package's own non-strict loader would allow).

    Returns
    -------
    torch.nn.Module
        The model on the CPU, in eval mode (``segment_anything.modeling.Sam``, its
        MobileSAM/SAM-HQ counterparts, or ``sam2.modeling.sam2_base.SAM2Base``).

    Raises
    ------
    CheckpointError
        The file is missing, not a PyTorch file, not a state dict, or belongs to another
        architecture (the message names the file, the expected model type, and the model
        type the file looks like when it can tell).
    ModelUnavailableError
        The model family's optional package is not installed (a :class:`CheckpointError`
        too; the message has the pip command).
    """
    import torch

    spec = get_model_spec(model_type)
    model_type = spec.name
    path = Path(path)
    load_pretrained = get_family(spec.family).load_pretrained
    if load_pretrained is not None:  # a Hugging Face folder (SAM 3)
        require_family(spec.family, model_type)
        if not path.is_dir():
            raise CheckpointError(
                f"checkpoint {path} for model type {model_type!r} is not a folder")
        return load_pretrained(path).eval()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} for model type {model_type!r} not found")
    # Fail on a missing package before reading a large file.
    require_family(spec.family, model_type)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle is a bad file
        # torch raises many types on damaged files (UnpicklingError, RuntimeError,
        # IndexError, KeyError, EOFError ...); none of them is ours to re-raise.
        raise CheckpointError(
            f"cannot read checkpoint {path} (expected a {model_type!r} state dict): the "
            f"file is corrupt, truncated or not a PyTorch weights file ({type(exc).__name__}: "
            f"{_first_line(exc)})"
        ) from exc
    state = _unwrap_state(state, spec)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} is not a state dict of tensors (found {type(state).__name__}); "
            f"expected the weights of a {model_type!r} model"
        )
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
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
    return model.eval()


#: The loader's former name (it loaded SAM only); same function.
load_sam = load_model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _summarise(message: str, limit: int = 600) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + " ..."


def _why(exc: Exception) -> str:
    """Why a download failed, in a few words (requests' text nests urllib3's retry report)."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return "no connection to the server: offline, or the host name cannot be resolved"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the server did not answer in time"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    return type(exc).__name__

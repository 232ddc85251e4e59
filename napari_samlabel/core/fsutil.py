"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Temporary files and folders come from :mod:`tempfile`, which creates them private (0600 and
0700). What ends up in place gets the permissions a plain ``open()`` / ``mkdir()`` would have
given it instead: the existing file's mode when one is replaced, else ``0666`` / ``0777``
minus the process umask, so a shared project or dataset stays readable by the group.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


class WriteError(OSError):
    """Writing failed; the message names the file and says what was left unchanged."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def write_error(path: str | os.PathLike[str], exc: OSError, unchanged: str) -> WriteError:
    """A :class:`WriteError` for ``exc`` raised while writing ``path``.

    ``unchanged`` completes the message ("nothing was changed", ...). An error that is
    already a :class:`WriteError` is returned as is (it names its file).
    """
    if isinstance(exc, WriteError):
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"cannot write {path}: {reason}; {unchanged}", exc.errno)


def why_missing(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be used, in words.

    A symbolic-link loop, a broken link, no permission, or simply "not found".
    """
    p = Path(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{p} is a symbolic link loop (it points back to itself)"
        if p.is_symlink():
            return f"{p} is a broken symbolic link (to {os.readlink(p)})"
        if isinstance(exc, PermissionError):
            return f"{p} cannot be accessed: permission denied"
        return f"{p} not found"
    return f"{p} is not a folder" if not p.is_dir() else f"{p} is a folder"


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:  # Linux: reading it is race-free; setting and restoring is not, with threads
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permission bits ``mkdir()`` (``directory``) or ``open()`` gives a new entry."""
    return (0o777 if directory else 0o666) & ~current_umask()


def owner_tag() -> str:
    """``<pid>@<host>``, in the names of temporary folders.

    A later run can then tell a killed run's leftovers (:func:`remove_leftovers`) from a
    live run's work.
    """
    return f"{os.getpid()}@{socket.gethostname()}"


def make_temp_dir(parent: str | os.PathLike[str], prefix: str, suffix: str) -> Path:
    """Create a hidden temporary folder in ``parent`` with ``mkdir()``'s permissions.

    For trees built aside and renamed into place: the folder that ends up in place must not
    keep :func:`tempfile.mkdtemp`'s private 0700. Its name is ``<prefix><owner_tag>.<random>
    <suffix>``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}.", suffix=suffix, dir=parent))
    os.chmod(tmp, default_mode(directory=True))
    return tmp


#: A leftover of a writer on another host (whose pid cannot be probed) or of an older
#: version (no owner in its name) is removed once older than this (seconds).
LEFTOVER_AGE_S = 6 * 3600.0


def remove_leftovers(parent: str | os.PathLike[str], prefix: str,
                     suffixes: tuple[str, ...]) -> list[Path]:
    """Delete temporary folders ``<prefix>...<suffix>`` in ``parent`` left by killed runs.

    A folder made by :func:`make_temp_dir` on this host is removed when its process is gone;
    one from another host, or without an owner in its name, when older than
    :data:`LEFTOVER_AGE_S`. A live run's folder is never touched. Returns what was removed.
    """
    from napari_samlabel.core.filelock import pid_alive

    removed: list[Path] = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    host = socket.gethostname()
    for p in entries:
        name = p.name
        suffix = next((s for s in suffixes if name.endswith(s)), None)
        if not name.startswith(prefix) or suffix is None or not p.is_dir():
            continue
        tag = name[len(prefix):-len(suffix)].rsplit(".", 1)[0]
        pid, at, where = tag.partition("@")
        if at and pid.isdigit() and where == host:
            stale = not pid_alive(int(pid)) and int(pid) != os.getpid()
        else:
            try:
                stale = time.time() - p.stat().st_mtime > LEFTOVER_AGE_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            if not p.exists():
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` on success.

    The temporary file lives in the same directory (so the rename is atomic on POSIX),
    is flushed and fsync'ed before the rename, and is removed if the block raises. The
    result has the mode of the file it replaces, or ``open()``'s for a new file.

    Raises
    ------
    WriteError
        (an ``OSError``) on a write failure (disk full, file too large...), naming ``path``
        and saying that the previous file is unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open supports modes 'w' and 'wb' only")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        perms = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        perms = default_mode()
    existed = target.exists()
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise _unchanged(target, exc, existed) from exc
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes to fix
                os.fchmod(fh.fileno(), perms)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _unchanged(target, exc, existed) from exc
        raise


def temp_prefix(name: str) -> str:
    """Prefix of this process's temporary files for ``name``: ``.<name>.<pid>-`` (+ random).

    The pid in the name lets a cleanup remove only its own writer's leftovers
    (:func:`is_own_temp`), never another process's file that is being written.
    """
    return f".{name}.{os.getpid()}-"


def is_own_temp(filename: str) -> bool:
    """True if ``filename`` is a temporary file of this process (:func:`temp_prefix`)."""
    return filename.startswith(".") and filename.endswith(".tmp") \
        and f".{os.getpid()}-" in filename


def _unchanged(target: Path, exc: OSError, existed: bool) -> WriteError:
    return write_error(target, exc, "the previous version of the file is unchanged" if existed
                       else "the file was not created")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_save(path: str | os.PathLike[str], writer: Callable[[IO], None]) -> None:
    """Call ``writer(fh)`` on a binary temporary file, then move it to ``path``.

    For libraries that write to a file object (``PIL.Image.save``, ``numpy.savez``):
    ``atomic_save(p, lambda fh: image.save(fh, format="PNG"))``.
    """
    with atomic_open(path, "wb") as fh:
        writer(fh)

"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Temporary files and folders come from :mod:`tempfile`, which creates them private (0600 and
0700). What ends up in place gets the permissions a plain ``open()`` / ``mkdir()`` would have
given it instead: the existing file's mode when one is replaced, else ``0666`` / ``0777``
minus the process umask, so a shared project or dataset stays readable by the group.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


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


def make_temp_dir(parent: str | os.PathLike[str], prefix: str, suffix: str) -> Path:
    """Create a hidden temporary folder in ``parent`` with ``mkdir()``'s permissions.

    For trees built aside and renamed into place: the folder that ends up in place must not
    keep :func:`tempfile.mkdtemp`'s private 0700.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(tmp, default_mode(directory=True))
    return tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` on success.

    The temporary file lives in the same directory (so the rename is atomic on POSIX),
    is flushed and fsync'ed before the rename, and is removed if the block raises. The
    result has the mode of the file it replaces, or ``open()``'s for a new file.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open supports modes 'w' and 'wb' only")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        perms = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        perms = default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes to fix
                os.fchmod(fh.fileno(), perms)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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

"""A lock file for folders shared by several processes (and machines), without a server.

``with FileLock(path): ...`` creates ``path`` exclusively (``O_CREAT | O_EXCL``, atomic on
local disks and on NFS v3+) holding who holds it (host, pid, since) and removes it on exit.
Locks are held briefly (a read-modify-write of one small file), so a waiting process polls.

A lock left by a killed process is taken over: when its holder is on this host and its pid
is not alive, or when the file is older than ``stale_after`` seconds (a holder on another
host cannot be probed; a live holder never keeps a lock that long). Taking over renames the
stale file to a unique name first, so of two processes that find the same stale lock only one
wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from napari_samlabel.core.fsutil import write_error

#: Seconds after which a lock file is stale whoever holds it.
STALE_AFTER_S = 60.0


class LockTimeout(TimeoutError):
    """The lock stayed held by another live process; the message names it and the holder."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "lock timeout"


def pid_alive(pid: int) -> bool:
    """True unless process ``pid`` of this host is known not to exist."""
    if pid <= 0:
        return False
    if os.name != "posix":  # no cheap probe: rely on the age of the lock
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def holder_text(info: dict[str, Any], when: str = "since") -> str:
    """``host <h>, pid <p>, since <time>`` from a lock or (``when="at"``) a ``saved_by``."""
    label = when
    since = info.get("since", info.get("time"))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) \
        if isinstance(since, (int, float)) else "?"
    return f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, {label} {stamp}"


def me() -> dict[str, Any]:
    """Who is writing: ``{"host", "pid", "time"}`` of this process."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


class FileLock:
    """An exclusive lock file (see the module docstring). Not re-entrant.

    Parameters
    ----------
    path : path
        The lock file (its folder must exist).
    timeout : float
        Seconds to wait for a live holder before raising :class:`LockTimeout`.
    stale_after : float
        Age (seconds) after which any lock file is taken over.
    what : str
        What the lock protects, for the timeout message.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 20.0,
                 stale_after: float = STALE_AFTER_S, what: str = "") -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.stale_after = stale_after
        self.what = what or str(self.path)
        self._token = ""

    def read(self) -> dict[str, Any] | None:
        """The holder record of the lock file, ``{}`` if unreadable, None if there is none."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: judged by its age

    def is_stale(self, info: dict[str, Any] | None) -> bool:
        """True if the lock file (holder ``info``) is left by a dead process or too old."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > self.stale_after:
            return True
        if info and info.get("host") == socket.gethostname() \
                and isinstance(info.get("pid"), int) and not pid_alive(info["pid"]):
            return True
        return False

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` for a live holder; take over stale ones."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        info = me()
        self._token = uuid.uuid4().hex
        payload = json.dumps({"host": info["host"], "pid": info["pid"], "since": info["time"],
                              "token": self._token}).encode()
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = self.read()
                if self.is_stale(holder):
                    self._take_over(holder)
                    continue
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{self.what} is locked by another session "
                                      f"({holder_text(holder or {})}); lock file "
                                      f"{self.path}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            except OSError as exc:  # a read-only folder, a full disk
                raise write_error(self.path, exc, f"{self.what} was not changed") from exc
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
            return

    def _take_over(self, judged: dict[str, Any] | None) -> None:
        """Move the stale lock file aside (one process wins the rename) and delete it.

        If what was moved is not the file judged stale (another process took the lock over
        in between and made a fresh one), it is put back (``link`` fails if a lock exists).
        """
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:12]}")
        try:
            os.replace(self.path, aside)
        except OSError:
            return
        try:
            data = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if judged and data and data.get("token") != judged.get("token"):
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        with contextlib.suppress(OSError):
            aside.unlink()

    def release(self) -> None:
        """Remove the lock file if it is still ours (a taken-over lock is left alone)."""
        info = self.read()
        if info is not None and info.get("token") == self._token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

"""A reader that closes the pipe early (``samlabel models | head -1``) causes no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_samlabel.cli import BROKEN_PIPE_EXIT

ROOT = Path(__file__).resolve().parents[2]


def _run_into_closed_pipe(*args: str) -> tuple[int, str]:
    """Run ``python -m napari_samlabel ARGS`` with stdout a pipe whose reader is gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader closes before the command writes anything
    env = dict(os.environ, PYTHONPATH=str(ROOT), SAMLABEL_CACHE_DIR=os.devnull + "-unused")
    try:
        proc = subprocess.run([sys.executable, "-m", "napari_samlabel", *args],
                              stdout=write_end, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=120, check=False)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("args", [("models", "--all"), ("--help",), ("export", "--help")])
def test_closed_stdout_gives_no_traceback(args: tuple[str, ...]) -> None:
    code, stderr = _run_into_closed_pipe(*args)
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipeError" not in stderr, stderr
    assert code in (0, BROKEN_PIPE_EXIT)


def test_closed_stdout_is_reported_as_sigpipe_exit() -> None:
    code, _ = _run_into_closed_pipe("models", "--all")
    assert code == BROKEN_PIPE_EXIT


def test_closed_pipe_for_both_streams_gives_no_message():
    """``samlabel models 2>&1 | head -1``: stdout and stderr are the same closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run([sys.executable, "-m", "napari_samlabel", "models", "--all"],
                              stdout=write_end, stderr=write_end, env=env, timeout=120,
                              check=False)
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE_EXIT

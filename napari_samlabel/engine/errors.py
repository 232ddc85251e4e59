"""Why a model cannot be loaded: one exception family for every engine loader.

Callers (the CLI, the GUI) catch :class:`CheckpointError` and show its message: it always
names the file or model type and says what to do.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint is missing, cannot be downloaded, or does not fit its model type."""


class ModelUnavailableError(CheckpointError, ImportError):
    """The optional package a model family needs is not installed (message: pip command)."""

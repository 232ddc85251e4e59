"""Picklable engine specifications: build an engine where it is needed (a dask worker).

An engine object holds a model (hundreds of MB, possibly on a GPU) and cannot be sent to
another process. An :class:`EngineSpec` names a factory by import path and its keyword
arguments; :meth:`EngineSpec.build` imports and calls it. Workers build each spec once and keep
the engine (see :mod:`napari_samlabel.pseudo.distributed`).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from napari_samlabel.engine.protocol import Engine

_SAM_FACTORY = "napari_samlabel.engine.loader:load_engine"


@dataclass(frozen=True)
class EngineSpec:
    """How to build an engine: ``factory`` (``"package.module:callable"``) and its kwargs.

    Attributes
    ----------
    factory : str
        Import path of a callable returning an engine.
    kwargs : tuple of (str, value)
        Keyword arguments (kept as sorted pairs so the spec is hashable).
    """

    factory: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def create(cls, factory: str, **kwargs: Any) -> EngineSpec:
        """Build a spec from keyword arguments."""
        if ":" not in factory:
            raise ValueError(f"engine factory {factory!r} must look like 'package.module:name'")
        return cls(factory, tuple(sorted(kwargs.items())))

    @classmethod
    def sam(cls, model_type: str = "vit_b", checkpoint: str | os.PathLike[str] | None = None,
            **kwargs: Any) -> EngineSpec:
        """A SAM engine (:func:`napari_samlabel.engine.loader.load_engine` arguments)."""
        return cls.create(_SAM_FACTORY, model_type=model_type,
                          checkpoint=None if checkpoint is None else str(checkpoint), **kwargs)

    @classmethod
    def fake(cls, name: str = "disk", **kwargs: Any) -> EngineSpec:
        """A fake engine of :mod:`napari_samlabel.testing.fakes` (tests, dry runs)."""
        return cls.create("napari_samlabel.testing.fakes:engine_from_name", name=name, **kwargs)

    def build(self) -> Engine:
        """Import the factory and call it.

        Raises
        ------
        ImportError, AttributeError
            When the factory cannot be found (the message names it).
        """
        module_name, _, attr = self.factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise type(exc)(f"cannot find engine factory {self.factory!r}: {exc}") from exc
        return factory(**dict(self.kwargs))

    def model_id(self) -> str:
        """The identity of the weights this spec builds, for resume fingerprints.

        For SAM (:meth:`sam`) the checkpoint is resolved, not loaded: explicit path >
        cached official file > download (as ``load_engine`` would, so a later build finds it
        in place), and the id is ``model_type:sha256[:16]``. It does not depend on the
        checkpoint's path, the cache folder or the device, and it changes when other weights
        are put at the same path. Other factories have no such resolution; their id is
        :meth:`describe` (the factory and its arguments).

        Raises
        ------
        napari_samlabel.engine.checkpoint.CheckpointError
            When the SAM checkpoint cannot be found (or downloaded).
        """
        if self.factory != _SAM_FACTORY:
            return self.describe()
        from napari_samlabel.engine.checkpoint import resolve_checkpoint

        kw = dict(self.kwargs)
        return resolve_checkpoint(kw.get("model_type", "vit_b"), kw.get("checkpoint"),
                                  cache_dir=kw.get("cache_dir"),
                                  download=kw.get("download", True)).model_id

    def describe(self) -> str:
        """One line for logs."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        return f"{self.factory}({args})"

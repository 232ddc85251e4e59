"""The models a user can pick, with what they need to know to pick one.

One row per registered model type: its family, whether the family's optional package is
installed (and the pip command when not), whether its checkpoint is cached, and its
measured CPU encode time. ``samlabel models`` prints these rows; the napari model picker
lists them. Nothing here imports torch or a model package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from napari_samlabel.engine.checkpoint import cached_checkpoint_path, checkpoint_cached
from napari_samlabel.engine.device import expected_cpu_precision
from napari_samlabel.engine.families import get_family, install_hint, missing_modules
from napari_samlabel.engine.registry import DEFAULT_MODEL, get_model_spec, model_names


@dataclass(frozen=True)
class ModelChoice:
    """One model type as offered to the user.

    Attributes
    ----------
    name : str
        Model type (``--model`` value).
    family_title : str
        ``"Segment Anything"``, ``"MobileSAM"``, ``"SAM-HQ"`` or ``"SAM 2"``.
    description : str
        The registry's one-line description.
    installed : bool
        The family's package is importable.
    install_hint : str
        The pip command that installs it (shown when not installed).
    checkpoint : pathlib.Path or None
        Where the official checkpoint is (or would be) cached; None for test models.
    cached : bool
        The checkpoint file is in the cache.
    cpu_encode_s : float or None
        Measured seconds per image embedding on two CPU cores, for the precision this CPU's
        encoder runs in (``cpu_precision``); None where not measured.
    cpu_precision : str
        That precision (``"bfloat16"``, ``"int8"`` or ``"float32"``).
    default : bool
        The default model type.
    """

    name: str
    family_title: str
    description: str
    installed: bool
    install_hint: str
    checkpoint: Path | None
    cached: bool
    cpu_encode_s: float | None
    default: bool = False
    cpu_precision: str = "bfloat16"

    @property
    def label(self) -> str:
        """A one-line label for pickers: name, family, speed, and what is missing."""
        speed = (f" · ~{self.cpu_encode_s:.1f} s/image on CPU ({self.cpu_precision})"
                 if self.cpu_encode_s else "")
        state = "" if self.installed else " · not installed"
        if self.installed and self.checkpoint is not None and not self.cached:
            state = " · downloads on first use"
        return f"{self.name} — {self.family_title}{speed}{state}"


def model_choices(cache_dir: str | os.PathLike[str] | None = None,
                  include_tests: bool = False) -> list[ModelChoice]:
    """One :class:`ModelChoice` per registered model type, in registry order."""
    precision = expected_cpu_precision()
    rows = []
    for name in model_names(include_tests=include_tests):
        spec = get_model_spec(name)
        own = "float32" if precision == "int8" and not spec.int8 else precision
        path = cached_checkpoint_path(name, cache_dir)
        rows.append(ModelChoice(
            name=name,
            family_title=get_family(spec.family).title,
            description=spec.description,
            installed=not missing_modules(spec.family),
            install_hint=install_hint(spec.family),
            checkpoint=path,
            cached=path is not None and checkpoint_cached(name, cache_dir),
            cpu_encode_s=spec.cpu_seconds(own),
            default=name == DEFAULT_MODEL,
            cpu_precision=own,
        ))
    return rows

"""Which model the annotator uses: the load options, the list to pick from, the state in words.

The Model tab and ``samlabel annotate`` are views of these; loading itself runs in a worker
thread of the GUI (:meth:`EngineOptions.load` is what it runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_samlabel.engine.catalogue import ModelChoice
    from napari_samlabel.engine.protocol import EncodingEngine, Engine


@dataclass(frozen=True)
class EngineOptions:
    """How to load the model (``samlabel annotate`` options)."""

    model: str = "vit_b"
    checkpoint: str | None = None
    precise: bool = False
    cache_dir: str | None = None

    def load(self) -> EncodingEngine:
        """Load the engine (slow: imports torch and reads the checkpoint)."""
        from napari_samlabel.engine.loader import load_engine

        return load_engine(self.model, self.checkpoint, precise=self.precise,
                           cache_dir=self.cache_dir)


def model_list(current: str, cache_dir: str | None = None) -> list[ModelChoice]:
    """The models to pick from; ``current`` is among them even when it is a test model.

    A test model (or an alias) given on the command line is listed too, so the picker can
    show what is loaded.
    """
    from napari_samlabel.engine.catalogue import model_choices

    choices = model_choices(cache_dir)
    if current not in {c.name for c in choices}:
        choices += [c for c in model_choices(cache_dir, include_tests=True)
                    if c.name == current]
    return choices


def model_state_text(engine: Engine | None, loading: str | None = None) -> str:
    """Which model is loaded (and which is loading), in words.

    ``precision`` and ``device`` are shown when the engine has them (SAM-family engines).
    """
    if loading is not None:
        return f"loading {loading}…" + (
            f" ({engine.model_id} in use meanwhile)" if engine is not None else "")
    if engine is None:
        return "no model loaded (see the status line)"
    return (f"loaded: {engine.model_id} ({getattr(engine, 'precision', '?')} encoder on "
            f"{getattr(engine, 'device', 'cpu')})")

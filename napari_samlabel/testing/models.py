"""Tiny models for tests: each family's own modules, random weights, small encoders.

FOR TESTS ONLY. Their masks are meaningless; they exist so that tests exercise the real
code path of every model family (encoder, prompt encoder, mask decoder, the family's own
predictor, our checkpoint loader) in a fraction of a second, without pretrained weights
(which cannot be downloaded on CI machines).

=========================  ==========  ===================================================
model type                 family      what is small
=========================  ==========  ===================================================
``vit_tiny_test``          sam         ViT with 32 channels and 2 blocks (SAM's decoder)
``mobile_sam_tiny_test``   mobile_sam  TinyViT with one block per stage, small decoder
``sam_hq_tiny_test``       sam_hq      ViT with 32 channels and 2 blocks (HQ decoder)
``sam2_tiny_test``         sam2        Hiera with 8 channels, 5 blocks, 32-wide heads
=========================  ==========  ===================================================

The configurations are the families' own (``TinyModel`` records in
:mod:`napari_samlabel.engine.families`); the registry lists them as ``*_test`` model types.
Each keeps the real input size (1024), so embeddings, low-resolution logits and masks have
the real shapes (only channel counts shrink where the architecture allows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_samlabel.engine.families import FAMILIES, get_family, tiny_models
from napari_samlabel.engine.families import mobile_sam as _mobile_sam
from napari_samlabel.engine.families import sam as _sam
from napari_samlabel.engine.families import sam2 as _sam2
from napari_samlabel.engine.families import sam_hq as _sam_hq

TINY_MODEL_TYPE = _sam.TINY_MODEL_TYPE
MOBILE_SAM_TINY_MODEL_TYPE = _mobile_sam.TINY_MODEL_TYPE
SAM_HQ_TINY_MODEL_TYPE = _sam_hq.TINY_MODEL_TYPE
SAM2_TINY_MODEL_TYPE = _sam2.TINY_MODEL_TYPE

#: model type -> (family, config) of every tiny test model.
TINY_MODELS: dict[str, tuple[str, dict[str, Any]]] = tiny_models()


def build_tiny_model(model_type: str = TINY_MODEL_TYPE, seed: int = 0) -> Any:
    """Build the tiny random-weight model ``model_type`` (see :data:`TINY_MODELS`).

    Seeded, so two builds with one seed are identical; parameters are redrawn from a
    normal distribution where the family's :class:`~napari_samlabel.engine.families.TinyModel`
    says so (also the ones the packages initialise to zero, such as relative-position
    tables), so that the whole network is exercised.
    """
    import torch

    from napari_samlabel.engine.families import build_model

    family, config = TINY_MODELS[model_type]
    tiny = next(t for t in FAMILIES[family].tiny if t.model_type == model_type)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(family, config, model_type)
        if tiny.redraw:
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0.0, 0.05)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


def build_tiny_sam(seed: int = 0) -> Any:
    """Build the tiny random-weight SAM (a ``segment_anything.modeling.Sam``)."""
    return build_tiny_model(TINY_MODEL_TYPE, seed)


def save_tiny_checkpoint(path: str | Path, seed: int = 0,
                         model_type: str = TINY_MODEL_TYPE) -> Path:
    """Save a tiny model's weights as a checkpoint file laid out like the official ones.

    SAM 2 checkpoints keep the state dict under ``"model"``; the others are the state dict.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = build_tiny_model(model_type, seed).state_dict()
    key = get_family(TINY_MODELS[model_type][0]).checkpoint_key
    torch.save({key: state} if key else state, path)
    return path

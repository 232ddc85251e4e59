"""A tiny SAM for tests: segment-anything's own modules, random weights, small encoder.

FOR TESTS ONLY. Its masks are meaningless; it exists so that tests exercise the real
SAM code path (encoder, prompt encoder, mask decoder, SamPredictor) in a fraction of a
second, without pretrained weights (which cannot be downloaded on CI machines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_MODEL_TYPE = "vit_tiny_test"

# Small ViT (32 channels, 2 blocks); the prompt encoder and mask decoder are SAM's own
# (256-channel), so embeddings, logits and masks have exactly SAM's shapes.
TINY_CONFIG: dict[str, Any] = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}


def build_tiny_sam(seed: int = 0) -> Any:
    """Build the tiny random-weight SAM (a ``segment_anything.modeling.Sam``)."""
    import torch
    from segment_anything.build_sam import _build_sam

    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sam = _build_sam(checkpoint=None, **TINY_CONFIG)
    finally:
        torch.random.set_rng_state(gen_state)
    return sam.eval()


def save_tiny_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Save the tiny SAM's ``state_dict`` as a checkpoint file, like the official ones."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_sam(seed).state_dict(), path)
    return path

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

Each keeps the real input size (1024), so embeddings, low-resolution logits and masks have
the real shapes (only channel counts shrink where the architecture allows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_MODEL_TYPE = "vit_tiny_test"
MOBILE_SAM_TINY_MODEL_TYPE = "mobile_sam_tiny_test"
SAM_HQ_TINY_MODEL_TYPE = "sam_hq_tiny_test"
SAM2_TINY_MODEL_TYPE = "sam2_tiny_test"

# Small ViT (32 channels, 2 blocks); the prompt encoder and mask decoder are SAM's own
# (256-channel), so embeddings, logits and masks have exactly SAM's shapes.
TINY_CONFIG: dict[str, Any] = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}

# TinyViT needs four stages and a last stage of 320, 448 or 576 channels (its patch
# merging only keeps the 64 x 64 grid for those); the neck always gives 256 channels.
MOBILE_SAM_TINY_CONFIG: dict[str, Any] = {
    "embed_dims": [8, 16, 32, 320],
    "depths": [1, 1, 1, 1],
    "num_heads": [1, 1, 1, 1],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 1.0,
    "mbconv_expand_ratio": 1.0,
    "decoder_depth": 1,
    "decoder_mlp_dim": 32,
    "iou_head_depth": 1,
    "iou_head_hidden_dim": 16,
    "mask_in_chans": 4,
}

# SAM 2.1 tiny's YAML with everything shrunk: Hiera 8 channels (stages 1/1/2/1; a global
# block must not open a stage), 32-wide neck and SAM heads (a multiple of 16), 16-wide
# memory. Dot-list overrides of ``configs/sam2.1/sam2.1_hiera_t.yaml``.
_E, _D, _MEM = 8, 32, 16
SAM2_TINY_CONFIG: dict[str, Any] = {
    "config_file": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "overrides": [
        f"model.image_encoder.trunk.embed_dim={_E}",
        "model.image_encoder.trunk.num_heads=1",
        "model.image_encoder.trunk.stages=[1,1,2,1]",
        "model.image_encoder.trunk.global_att_blocks=[3]",
        "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
        f"model.image_encoder.neck.d_model={_D}",
        f"model.image_encoder.neck.backbone_channel_list=[{8 * _E},{4 * _E},{2 * _E},{_E}]",
        f"model.image_encoder.neck.position_encoding.num_pos_feats={_D}",
        f"model.memory_attention.d_model={_D}",
        "model.memory_attention.num_layers=1",
        f"model.memory_attention.layer.d_model={_D}",
        "model.memory_attention.layer.dim_feedforward=32",
        f"model.memory_attention.layer.self_attention.embedding_dim={_D}",
        f"model.memory_attention.layer.cross_attention.embedding_dim={_D}",
        f"model.memory_attention.layer.cross_attention.kv_in_dim={_MEM}",
        f"model.memory_encoder.out_dim={_MEM}",
        f"model.memory_encoder.in_dim={_D}",
        f"model.memory_encoder.position_encoding.num_pos_feats={_MEM}",
        f"model.memory_encoder.mask_downsampler.embed_dim={_D}",
        f"model.memory_encoder.fuser.layer.dim={_D}",
        "model.memory_encoder.fuser.num_layers=1",
    ],
}

#: model type -> (family, config) of every tiny test model.
TINY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    TINY_MODEL_TYPE: ("sam", TINY_CONFIG),
    MOBILE_SAM_TINY_MODEL_TYPE: ("mobile_sam", MOBILE_SAM_TINY_CONFIG),
    SAM_HQ_TINY_MODEL_TYPE: ("sam_hq", TINY_CONFIG),
    SAM2_TINY_MODEL_TYPE: ("sam2", SAM2_TINY_CONFIG),
}


def build_tiny_model(model_type: str = TINY_MODEL_TYPE, seed: int = 0) -> Any:
    """Build the tiny random-weight model ``model_type`` (see :data:`TINY_MODELS`).

    Every parameter is redrawn from a seeded normal distribution (also the ones the
    packages initialise to zero, such as relative-position tables), so the whole network
    is exercised and two builds with one seed are identical.
    """
    import torch

    from napari_samlabel.engine.families import build_model

    family, config = TINY_MODELS[model_type]
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(family, config, model_type)
        if family != "sam":  # the SAM tiny model keeps its historical initialisation
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

    from napari_samlabel.engine.families import get_family

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = build_tiny_model(model_type, seed).state_dict()
    key = get_family(TINY_MODELS[model_type][0]).checkpoint_key
    torch.save({key: state} if key else state, path)
    return path

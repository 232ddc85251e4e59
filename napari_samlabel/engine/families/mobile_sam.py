"""The MobileSAM family (``mobile_sam``): SAM's decoder behind a small TinyViT encoder.

MobileSAM keeps segment-anything's predictor API, so its engine is
:class:`~napari_samlabel.engine.families.sam.SamEngine`. Its TinyViT builder also serves
Light HQ-SAM (:mod:`~napari_samlabel.engine.families.sam_hq`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from napari_samlabel.engine.families import Family, TinyModel, quiet_imports
from napari_samlabel.engine.families.sam import HQ_TOKEN_KEY, SamEngine

__all__ = ["FAMILY", "TINY_CONFIG", "TINY_MODEL_TYPE", "build_tinyvit_sam"]


def build_tinyvit_sam(package: str, config: dict[str, Any]) -> Any:
    """A SAM with a TinyViT encoder (MobileSAM, Light HQ-SAM) from ``package``'s modules.

    ``config`` keys: ``embed_dims``, ``depths``, ``num_heads``, ``window_sizes``,
    ``mlp_ratio``, ``mbconv_expand_ratio``, and for the decoder ``decoder_depth``,
    ``decoder_mlp_dim``, ``iou_head_depth``, ``iou_head_hidden_dim``, ``mask_in_chans``
    (the official values are in the registry). The neck always gives 256 channels and the
    input is 1024 x 1024 (TinyViT's forward hard-codes the 64 x 64 grid).
    """
    with quiet_imports():
        modeling = importlib.import_module(f"{package}.modeling")
    hq = package == "segment_anything_hq"
    prompt_dim, image_size = 256, 1024
    encoder = modeling.TinyViT(
        img_size=image_size, in_chans=3, num_classes=1000,
        embed_dims=list(config["embed_dims"]), depths=list(config["depths"]),
        num_heads=list(config["num_heads"]), window_sizes=list(config["window_sizes"]),
        mlp_ratio=float(config.get("mlp_ratio", 4.0)), drop_rate=0.0, drop_path_rate=0.0,
        use_checkpoint=False, mbconv_expand_ratio=float(config.get("mbconv_expand_ratio", 4.0)),
        local_conv_size=3, layer_lr_decay=0.8,
    )
    transformer = modeling.TwoWayTransformer(
        depth=int(config.get("decoder_depth", 2)), embedding_dim=prompt_dim,
        mlp_dim=int(config.get("decoder_mlp_dim", 2048)), num_heads=8)
    decoder_args = dict(num_multimask_outputs=3, transformer=transformer,
                        transformer_dim=prompt_dim,
                        iou_head_depth=int(config.get("iou_head_depth", 3)),
                        iou_head_hidden_dim=int(config.get("iou_head_hidden_dim", 256)))
    if hq:
        # Light HQ-SAM feeds the output of TinyViT's second stage to the HQ decoder.
        decoder = modeling.MaskDecoderHQ(vit_dim=int(config["embed_dims"][2]), **decoder_args)
    else:
        decoder = modeling.MaskDecoder(**decoder_args)
    grid = image_size // 16
    return modeling.Sam(
        image_encoder=encoder,
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=int(config.get("mask_in_chans", 16))),
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build(config: dict[str, Any]) -> Any:
    """MobileSAM from a registry config (TinyViT sizes, see :func:`build_tinyvit_sam`)."""
    return build_tinyvit_sam("mobile_sam", config)


def predictor(model: Any) -> Any:
    """MobileSAM's ``SamPredictor`` (segment-anything's API) around ``model``."""
    with quiet_imports():
        from mobile_sam import SamPredictor
    return SamPredictor(model)


def tinyvit_architecture_key(family: str, config: dict[str, Any]) -> tuple[Any, ...] | None:
    """``("tiny_vit", family, embed_dims, depths)`` of a TinyViT config, else None."""
    if "embed_dims" not in config:
        return None
    return ("tiny_vit", family, tuple(config["embed_dims"]), tuple(config["depths"]))


def tinyvit_fingerprint(family: str, state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``("tiny_vit", family, embed_dims, depths)`` of a state dict with a TinyViT encoder."""
    keys = list(state)
    if not any(k.startswith("image_encoder.layers.") for k in keys):
        return None
    dims, depths = [], []
    for i in range(4):
        prefix = f"image_encoder.layers.{i}.blocks."
        blocks = {int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)}
        depths.append(len(blocks))
    dims.append(int(state["image_encoder.patch_embed.seq.2.c.weight"].shape[0]))
    for i in range(1, 4):
        w = state.get(f"image_encoder.layers.{i - 1}.downsample.conv3.c.weight")
        dims.append(int(w.shape[0]) if w is not None else -1)
    return ("tiny_vit", family, tuple(dims), tuple(depths))


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A MobileSAM state dict: a TinyViT encoder and SAM's own decoder (no HQ token)."""
    if HQ_TOKEN_KEY in state:
        return None
    return tinyvit_fingerprint("mobile_sam", state)


TINY_MODEL_TYPE = "mobile_sam_tiny_test"
# TinyViT needs four stages and a last stage of 320, 448 or 576 channels (its patch
# merging only keeps the 64 x 64 grid for those); the neck always gives 256 channels.
TINY_CONFIG: dict[str, Any] = {
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

FAMILY = Family(
    "mobile_sam", "MobileSAM", ("mobile_sam", "timm"), "mobilesam",
    "mobilesam-mirror (the MobileSAM code) and timm",
    build=build,
    engine=functools.partial(SamEngine, family="mobile_sam"),
    predictor=predictor,
    architecture_key=lambda config: tinyvit_architecture_key("mobile_sam", config),
    state_fingerprint=state_fingerprint,
    tiny=(TinyModel(TINY_MODEL_TYPE, TINY_CONFIG),),
)

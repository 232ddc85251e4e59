"""The SAM-HQ family (``segment_anything_hq``) and :class:`SamHqEngine`.

SAM-HQ keeps SAM's encoder (a ViT, or MobileSAM's TinyViT for Light HQ-SAM) and adds an HQ
output token to the decoder, which also reads an early encoder feature map: the engine
caches that map with the embedding (extra ``interm_0``) and returns one refined mask per
prompt. SAM-HQ's own builders are not used to load weights: they load non-strictly, so a
plain SAM checkpoint would "load" with random HQ layers
(:func:`napari_samlabel.engine.checkpoint.load_model` is strict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_samlabel.engine.cache import Embedding
from napari_samlabel.engine.families import Family, TinyModel, quiet_imports
from napari_samlabel.engine.families import sam as _sam
from napari_samlabel.engine.families.mobile_sam import (
    build_tinyvit_sam,
    tinyvit_architecture_key,
    tinyvit_fingerprint,
)

__all__ = ["FAMILY", "TINY_MODEL_TYPE", "SamHqEngine"]

_INTERM = "interm_0"


class SamHqEngine(_sam.SamEngine):
    """SAM-HQ on its ``SamPredictor``, implementing the engine protocol.

    A :class:`~napari_samlabel.engine.families.sam.SamEngine` plus the early feature map the
    HQ decoder reads (stored as the embedding's ``interm_0``).

    Parameters
    ----------
    model, model_id, device, precise, compile, cache
        As for :class:`~napari_samlabel.engine.families.sam.SamEngine`.
    """

    def __init__(self, model: Any, model_id: str, **kwargs: Any) -> None:
        super().__init__(model, model_id, family="sam_hq", **kwargs)

    def _split_encoder_output(self, out: Any) -> tuple[Any, dict[str, np.ndarray]]:
        # (features, interm): the HQ decoder reads only the first intermediate map.
        features, interm = out
        return features, {_INTERM: interm[0].cpu().numpy()}

    def _check_embedding(self, emb: Embedding) -> None:
        super()._check_embedding(emb)
        if _INTERM not in emb.extras:
            raise ValueError("a SAM-HQ embedding needs its 'interm_0' feature map")

    def _install_extras(self, emb: Embedding) -> None:
        self.predictor.interm_features = [self._tensor(emb.extras[_INTERM])]

    def _current_extras(self) -> dict[str, np.ndarray]:
        return {_INTERM: self.predictor.interm_features[0].detach().float().cpu().numpy()}


def build(config: dict[str, Any]) -> Any:
    """SAM-HQ from a registry config: a ViT one, or Light HQ-SAM (``encoder="tiny_vit"``)."""
    with quiet_imports():
        from segment_anything_hq.build_sam import _build_sam
    if config.get("encoder") == "tiny_vit":
        return build_tinyvit_sam("segment_anything_hq", config)
    return _build_sam(checkpoint=None, **config)


def predictor(model: Any) -> Any:
    """SAM-HQ's ``SamPredictor`` around ``model``."""
    with quiet_imports():
        from segment_anything_hq import SamPredictor
    return SamPredictor(model)


def vit_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """SAM-HQ's copies of segment-anything's ViT ``Attention`` and ``Block`` classes."""
    with quiet_imports():
        from segment_anything_hq.modeling import image_encoder
    return (image_encoder.Attention,), (image_encoder.Block,)


def architecture_key(config: dict[str, Any]) -> tuple[Any, ...] | None:
    """The fingerprint of a SAM-HQ config: ViT or TinyViT sizes."""
    return (_sam.vit_architecture_key("sam_hq", config)
            or tinyvit_architecture_key("sam_hq", config))


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A SAM-HQ state dict: one whose decoder has the HQ token."""
    if _sam.HQ_TOKEN_KEY not in state:
        return None
    return tinyvit_fingerprint("sam_hq", state) or _sam.vit_fingerprint("sam_hq", state)


TINY_MODEL_TYPE = "sam_hq_tiny_test"

FAMILY = Family(
    "sam_hq", "SAM-HQ", ("segment_anything_hq", "timm"), "hq", "segment-anything-hq and timm",
    build=build,
    engine=SamHqEngine,
    predictor=predictor,
    architecture_key=architecture_key,
    state_fingerprint=state_fingerprint,
    vit_classes=vit_classes,
    # SAM's tiny ViT, with SAM-HQ's decoder.
    tiny=(TinyModel(TINY_MODEL_TYPE, _sam.TINY_CONFIG),),
)

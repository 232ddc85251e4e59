"""The SAM 2 family (``sam2``) and its engine: SAM 2.1 image prediction behind the protocol.

SAM 2's image path differs from SAM's in three ways the engine hides:

- the encoder input is the whole image *stretched* to 1024 x 1024 (no aspect-preserving
  resize, no padding), so the ``256 x 256`` low-resolution logits cover the whole image
  (``logits_frame = "stretch"``);
- the decoder needs two high-resolution feature maps besides the ``(1, 256, 64, 64)``
  embedding (``(1, 32, 256, 256)`` and ``(1, 64, 128, 128)`` for the official models); the
  embedding cache stores them as the extras ``high_res_0`` and ``high_res_1`` (8 MB per
  image in float16 instead of SAM's 2 MB);
- the image embedding gets the model's ``no_mem_embed`` added (single images have no
  memory), as ``SAM2ImagePredictor.set_image`` does.

Encoding runs on the model directly (:meth:`Sam2Engine._run_encoder` repeats
``set_image``'s steps), so :meth:`~napari_samlabel.engine.base.CachedEngine.encode` can
prefetch another image on another thread without touching the predictor's current image.
Decoding is the predictor's own ``predict`` with pixel coordinates (``normalize_coords``).
Encode and decode times: ``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
from napari_samlabel.engine.families import Family, TinyModel, make_predictor, quiet_imports
from napari_samlabel.engine.protocol import Prediction, SamInputs

__all__ = ["FAMILY", "TINY_CONFIG", "TINY_MODEL_TYPE", "Sam2Engine"]

_HIGH_RES = ("high_res_0", "high_res_1")


class Sam2Engine(CachedEngine):
    """SAM 2 on ``SAM2ImagePredictor``, implementing the engine protocol.

    Parameters
    ----------
    model : sam2.modeling.sam2_base.SAM2Base
        A loaded model (see :func:`napari_samlabel.engine.loader.load_engine`).
    model_id, device, precise, compile, cache
        As for :class:`~napari_samlabel.engine.base.CachedEngine`.

    Attributes
    ----------
    predictor : sam2.sam2_image_predictor.SAM2ImagePredictor
        The wrapped predictor.
    """

    family = "sam2"
    logits_frame = "stretch"

    def __init__(self, model: Any, model_id: str, device: str | None = None,
                 precise: bool = False, compile: bool = False,
                 cache: EmbeddingCache | None = None) -> None:
        super().__init__(model, model_id, device=device, precise=precise, compile=compile,
                         cache=cache)
        self.predictor = make_predictor("sam2", self.model)
        size = int(self.model.image_size)
        # SAM2ImagePredictor hard-codes the feature sizes of a 1024 input.
        self.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8),
                                         (size // 16, size // 16)]

    # -- encoding --------------------------------------------------------------------------

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        """``SAM2ImagePredictor.set_image``'s computation, leaving the predictor alone."""
        import torch

        model, p = self.model, self.predictor
        if not image.flags.writeable:  # SAM 2's ToTensor warns on read-only arrays
            image = image.copy()
        with torch.inference_mode():
            x = p._transforms(image)[None].to(self.device)  # stretch to 1024^2, normalise
            backbone_out = model.forward_image(x)
            _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            # (HW, 1, C) token maps -> (1, C, H, W), finest level first.
            feats = [feat.permute(1, 2, 0).reshape(1, -1, *size)
                     for feat, size in zip(vision_feats, p._bb_feat_sizes, strict=True)]
        arrays = [f.float().cpu().numpy() for f in feats]
        size = int(model.image_size)
        return Embedding(
            features=arrays[-1],
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(size, size),
            model_id=self.model_id,
            precision=self.precision,
            extras=dict(zip(_HIGH_RES, arrays[:-1], strict=True)),
        )

    def set_embedding(self, emb: Embedding) -> None:
        """Install a precomputed embedding as the current image (no encoding).

        Raises
        ------
        ValueError
            If the embedding was made by other weights or lacks the high-resolution maps.
        """
        import torch

        self._check_embedding(emb)
        missing = [k for k in _HIGH_RES if k not in emb.extras]
        if missing:
            raise ValueError(f"a SAM 2 embedding needs its {', '.join(missing)} feature maps")

        def tensor(arr: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32)

        p = self.predictor
        p.reset_predictor()
        p._features = {"image_embed": tensor(emb.features),
                       "high_res_feats": [tensor(emb.extras[k]) for k in _HIGH_RES]}
        p._orig_hw = [tuple(emb.original_size)]
        p._is_batch = False
        p._is_image_set = True

    def get_embedding(self) -> Embedding:
        """The current image's embedding.

        Raises
        ------
        RuntimeError
            If no image is set.
        """
        p = self.predictor
        if not p._is_image_set:
            raise RuntimeError("no image set: call set_image() or set_embedding() first")
        feats = p._features
        size = int(self.model.image_size)
        return Embedding(
            features=feats["image_embed"].detach().float().cpu().numpy(),
            original_size=(int(p._orig_hw[0][0]), int(p._orig_hw[0][1])),
            input_size=(size, size),
            model_id=self.model_id,
            precision=self.precision,
            extras={k: f.detach().float().cpu().numpy()
                    for k, f in zip(_HIGH_RES, feats["high_res_feats"], strict=True)},
        )

    @property
    def is_image_set(self) -> bool:
        """True once an image or embedding is installed."""
        return bool(self.predictor._is_image_set)

    def reset_image(self) -> None:
        """Forget the current image."""
        self.predictor.reset_predictor()

    # -- decoding --------------------------------------------------------------------------

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image (see the protocol).

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If ``inputs`` has neither points nor a box, or arrays have wrong shapes.
        """
        import torch

        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image() before predict()")
        kwargs = inputs.predictor_kwargs()
        with torch.inference_mode():
            masks, iou, low_res = self.predictor.predict(normalize_coords=True, **kwargs)
        return Prediction(
            masks=np.asarray(masks) > 0.5,  # bool-valued floats from SAM 2
            iou_predictions=np.asarray(iou, dtype=np.float32),
            low_res_logits=np.asarray(low_res, dtype=np.float32),
            logits_threshold=float(self.predictor.mask_threshold),
            logits_frame=self.logits_frame,
        )


# --- the family ----------------------------------------------------------------------------

# build_sam2's post-processing defaults (apply_postprocessing=True): fall back to the
# multimask output when the single mask is unstable.
_POSTPROCESSING = (
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)


def build(config: dict[str, Any]) -> Any:
    """SAM 2 from its packaged YAML config plus ``config["overrides"]`` (dot-list).

    The YAML is read with OmegaConf and instantiated with ``hydra.utils.instantiate``,
    bypassing Hydra's global config search that ``sam2.build_sam.build_sam2`` relies on
    (it breaks when anything else in the process initialised Hydra first).
    """
    import importlib.resources

    with quiet_imports():
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        path = importlib.resources.files("sam2") / config["config_file"]
        cfg = OmegaConf.load(str(path))
        dots = [*_POSTPROCESSING, *config.get("overrides", ())]
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dots)))
        OmegaConf.resolve(cfg)
        return instantiate(cfg.model, _recursive_=True)


def predictor(model: Any) -> Any:
    """``SAM2ImagePredictor`` around ``model``."""
    with quiet_imports():
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        # TorchScript is deprecated in torch 2.x and only speeds up the transforms.
        return SAM2ImagePredictor(model, disable_torch_jit=True)


def architecture_key(config: dict[str, Any]) -> tuple[Any, ...] | None:
    """``("hiera", width, blocks)`` of a SAM 2 config (YAML plus overrides), without torch."""
    import importlib.resources

    try:
        from omegaconf import OmegaConf

        yaml = OmegaConf.load(str(importlib.resources.files("sam2") / config["config_file"]))
        merged = OmegaConf.merge(
            yaml, OmegaConf.from_dotlist(list(config.get("overrides", ()))))
        trunk = merged.model.image_encoder.trunk
        return ("hiera", int(trunk.embed_dim), int(sum(trunk.stages)))
    except Exception:  # noqa: BLE001 - sam2 missing or unreadable: no guess for it
        return ("hiera", -1, -1)


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``("hiera", width, blocks)`` of a state dict with a Hiera trunk, else None."""
    keys = list(state)
    if not any(k.startswith("image_encoder.trunk.") for k in keys):
        return None
    width = int(state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
    blocks = 1 + max(int(k.split(".")[3]) for k in keys
                     if k.startswith("image_encoder.trunk.blocks."))
    return ("hiera", width, blocks)


TINY_MODEL_TYPE = "sam2_tiny_test"
# SAM 2.1 tiny's YAML with everything shrunk: Hiera 8 channels (stages 1/1/2/1; a global
# block must not open a stage), 32-wide neck and SAM heads (a multiple of 16), 16-wide
# memory. Dot-list overrides of ``configs/sam2.1/sam2.1_hiera_t.yaml``.
_E, _D, _MEM = 8, 32, 16
TINY_CONFIG: dict[str, Any] = {
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

FAMILY = Family(
    "sam2", "SAM 2", ("sam2", "hydra", "omegaconf"), "sam2",
    "rf-sam-2 (Meta's SAM 2 code as a wheel), hydra-core and omegaconf",
    build=build,
    engine=Sam2Engine,
    predictor=predictor,
    architecture_key=architecture_key,
    state_fingerprint=state_fingerprint,
    logits_frame="stretch",
    checkpoint_key="model",
    tiny=(TinyModel(TINY_MODEL_TYPE, TINY_CONFIG),),
)

"""The SAM 2 engine: SAM 2.1 image prediction (``SAM2ImagePredictor``) behind the protocol.

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
Measured on two CPU cores with random weights: Hiera-T 3.2 s per image in float32, 1.9 s
under bfloat16 autocast; Hiera-B+ 6.4 s and 3.3 s; a decode 50-100 ms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
from napari_samlabel.engine.protocol import Prediction, SamInputs

_HIGH_RES = ("high_res_0", "high_res_1")


class Sam2Engine(CachedEngine):
    """SAM 2 on ``SAM2ImagePredictor``, implementing the engine protocol.

    Parameters
    ----------
    model : sam2.modeling.sam2_base.SAM2Base
        A loaded model (see :func:`napari_samlabel.engine.sam.load_engine`).
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
        from napari_samlabel.engine.families import make_predictor

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
            original_size=tuple(int(v) for v in p._orig_hw[0]),
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

        from napari_samlabel.engine.sam import _check_inputs

        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image() before predict()")
        kwargs = _check_inputs(inputs)
        with torch.inference_mode():
            masks, iou, low_res = self.predictor.predict(normalize_coords=True, **kwargs)
        return Prediction(
            masks=np.asarray(masks) > 0.5,  # bool-valued floats from SAM 2
            iou_predictions=np.asarray(iou, dtype=np.float32),
            low_res_logits=np.asarray(low_res, dtype=np.float32),
            logits_threshold=float(self.predictor.mask_threshold),
            logits_frame=self.logits_frame,
        )

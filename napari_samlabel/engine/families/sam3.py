"""The SAM 3 family (``sam3``): concept prompts and point refinement on one image encoding.

SAM 3 (Meta, 2025) finds *every* instance of a concept (a noun phrase such as
``"potted plant"``, example boxes, or both) and also segments one object from points, boxes
and a previous mask like SAM 1 and 2. This module runs it through Hugging Face
transformers, which runs on CPU and CUDA (the ``sam3`` PyPI package hard-codes CUDA and
imports triton):

- ``Sam3Model`` (the *detector*) answers concept prompts: its DETR decoder proposes up to
  200 instances, each with a box, a mask and a score (detection x presence probability,
  as ``Sam3Processor.post_process_instance_segmentation`` computes it);
- ``Sam3TrackerModel`` (the *tracker*, SAM 2's prompt encoder and mask decoder) refines
  one object from points, a box and the previous low-resolution logits (``mask_input``).

Both read the same ViT (the 1008 x 1008 perception encoder, 72 x 72 tokens), each through
its own FPN neck. The ViT is run once per image: :class:`Sam3Engine` caches its output
(``(1, 1024, 72, 72)``, 10 MB in float16) in the embedding cache, keyed by model identity
and precision like every family, and runs the two necks (about a second on a CPU) when the
image is made current. One ViT module serves both: the tracker's copy is replaced by the
detector's when the model is assembled.

The checkpoint is a Hugging Face folder: the hub snapshot of ``facebook/sam3`` (gated:
accept the licence on the hub, then log in) or any ``save_pretrained`` copy of it, laid out
as ``Sam3VideoModel`` saves it (``config.json`` of type ``sam3_video``, ``detector_model.*``,
``tracker_model.*`` and ``tracker_neck.*`` weights, the processor's tokenizer files).
:func:`load_pretrained` loads it strictly: every weight the two models use must be there
with its shape (the tracker's memory modules, for video, are not used and not loaded).

Geometry: the image is stretched to 1008 x 1008 (no padding), so the tracker's 288 x 288
low-resolution logits cover the whole image (``logits_frame = "stretch"``, as SAM 2). They
are handed out resized to the protocol's 256 x 256 and resized back by the model when they
return as ``mask_input``. Encode and decode times: ``benchmarks/README.md`` (SAM 3).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.prompts import Box
from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
from napari_samlabel.engine.families import Family, TinyModel
from napari_samlabel.engine.families._sam3_model import (
    HUB_REPO,
    build,
    default_processor,
    load_pretrained,
)
from napari_samlabel.engine.protocol import LOW_RES_SHAPE, Prediction, SamInputs

__all__ = [
    "FAMILY",
    "HUB_REPO",
    "TINY_CONFIG",
    "TINY_MODEL_TYPE",
    "Sam3Engine",
    "build",
    "load_pretrained",
    "save_tiny_pretrained",
]

#: What a SAM 3 folder needs (the hub repository also holds Meta's original ``sam3.pt``,
#: 3.4 GB more, which is not downloaded).
HUB_FILES = ("*.json", "*.safetensors", "*.txt")
_TEXT_CACHE_ITEMS = 64
_LOW = LOW_RES_SHAPE[1:]


# --- the engine ----------------------------------------------------------------------------


@dataclass
class _Current:
    """The current image's features: the detector's and the tracker's."""

    original_size: tuple[int, int]
    vision: Any          # Sam3VisionEncoderOutput for the detector
    tracker_maps: list[Any]  # 3 tracker feature maps, finest first, as Sam3TrackerModel has


class Sam3Engine(CachedEngine):
    """SAM 3 behind the engine protocol, with concept prompts (:meth:`find_all`).

    A :class:`~napari_samlabel.engine.protocol.ConceptEngine`: :meth:`predict` refines
    one object with the tracker (points, box, previous logits), :meth:`find_all` finds
    every instance of a phrase or exemplar boxes with the detector, on one encoding.

    Parameters
    ----------
    model : Sam3Pair
        From :func:`load_pretrained` or :func:`build`.
    model_id, device, precise, compile, cache
        As for :class:`~napari_samlabel.engine.base.CachedEngine`.
    """

    family = "sam3"
    logits_frame = "stretch"

    def __init__(self, model: Any, model_id: str, device: str | None = None,
                 precise: bool = False, compile: bool = False,
                 cache: EmbeddingCache | None = None) -> None:
        from transformers import Sam3TrackerProcessor

        super().__init__(model, model_id, device=device, precise=precise, compile=compile,
                         cache=cache)
        self.size = int(model.detector.config.vision_config.image_size)
        self.processor = model.processor if model.processor is not None else (
            default_processor(self.size))
        self.tracker_processor = Sam3TrackerProcessor(
            image_processor=self.processor.image_processor)
        self.predictor = model.tracker
        self._current: _Current | None = None
        self._text: OrderedDict[str, Any] = OrderedDict()

    # -- encoding --------------------------------------------------------------------------

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        import torch

        if not image.flags.writeable:  # torch warns on read-only arrays (loaded images)
            image = image.copy()
        pixels = self.processor.image_processor(
            images=image, size={"height": self.size, "width": self.size}, return_tensors="pt")
        x = pixels["pixel_values"].to(self.device)
        with torch.inference_mode():
            tokens = self.model.image_encoder(x)  # (1, h*w, C)
        side = self.size // int(self.model.detector.config.vision_config.backbone_config
                                .patch_size)
        spatial = tokens.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        return Embedding(
            features=spatial.float().cpu().numpy(),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(self.size, self.size),
            model_id=self.model_id,
            precision=self.precision,
        )

    def set_embedding(self, emb: Embedding) -> None:
        """Install a cached ViT output: run the detector's and the tracker's necks on it."""
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        self._check_embedding(emb)
        det, trk = self.model.detector, self.model.tracker
        with torch.inference_mode(), self._autocast():  # the necks are ~300 GFLOP
            spatial = torch.from_numpy(np.ascontiguousarray(emb.features)).to(
                self.device, torch.float32)
            fpn, pos = det.vision_encoder.neck(spatial)
            vision = Sam3VisionEncoderOutput(
                last_hidden_state=spatial.flatten(2).transpose(1, 2),
                fpn_hidden_states=fpn, fpn_position_encoding=pos)
            maps = list(trk.vision_encoder.neck(spatial)[0][:3])
            maps[0] = trk.mask_decoder.conv_s0(maps[0])
            maps[1] = trk.mask_decoder.conv_s1(maps[1])
            # single images have no memory: SAM 2's "no memory" token, as the tracker adds it
            maps[2] = maps[2] + trk.no_memory_embedding.reshape(1, -1, 1, 1)
        # the decoders run in float32, as every family's
        fpn, pos, maps = (tuple(t.float() for t in fpn), tuple(t.float() for t in pos),
                          [t.float() for t in maps])
        vision.fpn_hidden_states, vision.fpn_position_encoding = fpn, pos
        self._current = _Current(tuple(emb.original_size), vision, maps)  # type: ignore[arg-type]

    def get_embedding(self) -> Embedding:
        """The current image's ViT output (as cached).

        Raises
        ------
        RuntimeError
            If no image is set.
        """
        cur = self._require_image()
        tokens = cur.vision.last_hidden_state
        side = self.size // int(self.model.detector.config.vision_config.backbone_config
                                .patch_size)
        return Embedding(
            features=tokens.transpose(1, 2).reshape(1, -1, side, side).float().cpu().numpy(),
            original_size=cur.original_size, input_size=(self.size, self.size),
            model_id=self.model_id, precision=self.precision)

    @property
    def is_image_set(self) -> bool:
        """True once an image or embedding is installed."""
        return self._current is not None

    def reset_image(self) -> None:
        """Forget the current image."""
        self._current = None

    def _require_image(self) -> _Current:
        if self._current is None:
            raise RuntimeError("no image set: call set_image() first")
        return self._current

    # -- point refinement (tracker) --------------------------------------------------------

    def tracker_inputs(self, inputs: SamInputs) -> dict[str, Any]:
        """The tracker's prompt tensors for ``inputs`` (pixels to 1008-space by the processor)."""
        cur = self._require_image()
        ok = inputs.checked()
        kwargs: dict[str, Any] = {"original_sizes": [list(cur.original_size)],
                                  "return_tensors": "pt"}
        if ok.point_coords is not None and len(ok.point_coords) > 0:
            assert ok.point_labels is not None
            kwargs["input_points"] = [[ok.point_coords.tolist()]]
            kwargs["input_labels"] = [[ok.point_labels.astype(int).tolist()]]
        if ok.box is not None:
            kwargs["input_boxes"] = [[ok.box.tolist()]]
        if len(kwargs) == 2:
            raise ValueError("SamInputs needs points or a box")
        enc = self.tracker_processor(**kwargs)
        out = {k: enc[k].to(self.device) for k in ("input_points", "input_labels",
                                                    "input_boxes") if k in enc}
        if ok.mask_input is not None:
            out["input_masks"] = _tensor(ok.mask_input[None], self.device)  # (1, 1, 256, 256)
        return out

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image with SAM 3's tracker.

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If ``inputs`` has neither points nor a box, or arrays have wrong shapes.
        """
        import torch
        import torch.nn.functional as F

        cur = self._require_image()
        prompts = self.tracker_inputs(inputs)
        multimask = bool(inputs.multimask_output)
        with torch.inference_mode():
            out = self.model.tracker(image_embeddings=cur.tracker_maps,
                                     multimask_output=multimask, **prompts)
            logits = out.pred_masks[0, 0].float()  # (K, 288, 288)
            masks = F.interpolate(logits[None], size=cur.original_size, mode="bilinear",
                                  align_corners=False)[0] > 0
            low = F.interpolate(logits[None], size=_LOW, mode="bilinear",
                                align_corners=False)[0]
        return Prediction(
            masks=masks.cpu().numpy(),
            iou_predictions=out.iou_scores[0, 0].float().cpu().numpy().astype(np.float32),
            low_res_logits=low.cpu().numpy().astype(np.float32),
            logits_threshold=0.0,
            logits_frame=self.logits_frame,
        )

    # -- concept prompts (detector) --------------------------------------------------------

    def _text_features(self, phrase: str) -> tuple[Any, Any]:
        """``(text features, attention mask)`` of ``phrase``, remembered per phrase."""
        import torch

        hit = self._text.get(phrase)
        if hit is None:
            enc = self.processor(text=phrase, return_tensors="pt")
            ids = enc["input_ids"].to(self.device)
            mask = enc["attention_mask"].to(self.device)
            with torch.inference_mode(), self._autocast():
                feats = self.model.detector.get_text_features(input_ids=ids,
                                                              attention_mask=mask)
            feats.pooler_output = feats.pooler_output.float()
            hit = (feats, mask)
            self._text[phrase] = hit
            while len(self._text) > _TEXT_CACHE_ITEMS:
                self._text.popitem(last=False)
        self._text.move_to_end(phrase)
        return hit

    def concept_inputs(self, text: str | None, exemplars: Sequence[Box],
                       negatives: Sequence[Box]) -> dict[str, Any]:
        """The detector's prompt tensors: the phrase's tokens and the boxes in ``[0, 1]``."""
        cur = self._require_image()
        boxes = [*exemplars, *negatives]
        labels = [1] * len(exemplars) + [0] * len(negatives)
        kwargs: dict[str, Any] = {"original_sizes": [list(cur.original_size)],
                                  "return_tensors": "pt"}
        if boxes:
            kwargs["input_boxes"] = [[_xyxy(b) for b in boxes]]
            kwargs["input_boxes_labels"] = [labels]
        # Without a phrase the processor uses SAM 3's placeholder phrase "visual".
        enc = self.processor(text=text, **kwargs)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "input_boxes",
                                    "input_boxes_labels") if k in enc}

    def find_all(self, text: str | None = None, exemplars: Sequence[Box] = (),
                 negatives: Sequence[Box] = (), threshold: float = 0.5) -> list[Candidate]:
        """Every instance of the concept on the current image scoring at least ``threshold``.

        Scores are SAM 3's detection probability times its presence probability (as
        ``Sam3Processor.post_process_instance_segmentation``); masks are the detector's
        288 x 288 mask logits above 0 resized to the image; each candidate's logits (resized
        to 256 x 256, ``"stretch"`` frame) seed its refinement.

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If neither ``text`` nor ``exemplars`` is given.
        """
        import torch
        import torch.nn.functional as F

        phrase = (text or "").strip() or None
        if phrase is None and not exemplars:
            raise ValueError("find_all needs a phrase (text) or at least one exemplar box")
        cur = self._require_image()
        prompts = self.concept_inputs(phrase, exemplars, negatives)
        feats, mask = self._text_features(phrase or "visual")
        det = self.model.detector
        kwargs = {k: prompts[k].to(self.device) for k in ("input_boxes", "input_boxes_labels")
                  if k in prompts}
        # the detector (DETR encoder over 72 x 72 tokens, pixel decoder at 288 x 288) runs
        # at the encoder's precision: bfloat16 where the CPU has it natively
        with torch.inference_mode(), self._autocast():
            out = det(vision_embeds=cur.vision, text_embeds=feats, attention_mask=mask,
                      **kwargs)
        with torch.inference_mode():
            scores = out.pred_logits[0].float().sigmoid()
            if out.presence_logits is not None:
                scores = scores * out.presence_logits[0].float().sigmoid()
            keep = torch.nonzero(scores >= threshold).flatten()
            keep = keep[torch.argsort(scores[keep], descending=True)]
            logits = out.pred_masks[0, keep].float()  # (n, 288, 288)
            if len(keep):
                full = F.interpolate(logits[None], size=cur.original_size, mode="bilinear",
                                     align_corners=False)[0] > 0
                low = F.interpolate(logits[None], size=_LOW, mode="bilinear",
                                    align_corners=False)[0]
            boxes = out.pred_boxes[0, keep].float()  # normalised xyxy
        h, w = cur.original_size
        source = f"text:{phrase}" if phrase is not None else "exemplar"
        found = []
        for i in range(len(keep)):
            m = full[i].cpu().numpy()
            if not m.any():
                continue
            x0, y0, x1, y1 = (float(v) for v in np.clip(
                boxes[i].cpu().numpy(), 0.0, 1.0) * np.array([w, h, w, h], np.float32))
            box = Box((y0, x0), (y1, x1))
            found.append(Candidate(mask=m, score=float(scores[keep[i]]), source=source,
                                   box=box, low_res_logits=low[i].cpu().numpy(),
                                   logits_frame=self.logits_frame, prompts=(box,)))
        return found


def _xyxy(box: Box) -> list[float]:
    (r0, c0), (r1, c1) = box.top_left, box.bottom_right
    return [float(c0), float(r0), float(c1), float(r1)]


def _tensor(arr: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(device)


# --- fingerprints and the tiny test model --------------------------------------------------


def architecture_key(config: dict[str, Any]) -> tuple[Any, ...] | None:
    """``("vit", "sam3", width, depth)`` of a SAM 3 config (defaults: 1024 wide, 32 deep)."""
    backbone = ((config.get("detector") or {}).get("vision_config") or {}).get(
        "backbone_config") or {}
    return ("vit", "sam3", int(backbone.get("hidden_size", 1024)),
            int(backbone.get("num_hidden_layers", 32)))


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``("vit", "sam3", width, depth)`` of a SAM 3 state dict (``detector_model.*``)."""
    prefix = "detector_model.vision_encoder.backbone."
    keys = [k for k in state if k.startswith(prefix)]
    if not keys:
        return None
    width = int(state[prefix + "embeddings.patch_embeddings.projection.weight"].shape[0])
    depth = 1 + max(int(k[len(prefix):].split(".")[1]) for k in keys
                    if k[len(prefix):].startswith("layers."))
    return ("vit", "sam3", width, depth)


TINY_MODEL_TYPE = "sam3_tiny_test"
_H = 32
_SIDE = 336  # 24 x 24 tokens (one attention window), 96 x 96 masks
_TINY_VISION = {
    "model_type": "sam3_vision_model", "fpn_hidden_size": _H,
    "backbone_feature_sizes": [[96, 96], [48, 48], [24, 24]],
    "backbone_config": {"model_type": "sam3_vit_model", "hidden_size": _H,
                        "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "global_attn_indexes": [1],
                        "image_size": _SIDE},
}
_SMALL = {"hidden_size": _H, "num_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 64}
#: SAM 3 shrunk to 32 channels, one or two layers per part, 8 queries and a 336 x 336
#: input (the real one is 1008: 72 x 72 tokens, 288 x 288 masks), with the byte-level
#: 514-token vocabulary of :func:`default_processor`.
TINY_CONFIG: dict[str, Any] = {
    "detector": {
        "vision_config": _TINY_VISION,
        "text_config": {"model_type": "clip_text_model", "vocab_size": 514, "hidden_size": _H,
                        "intermediate_size": 64, "projection_dim": _H,
                        "num_hidden_layers": 1, "num_attention_heads": 2,
                        "max_position_embeddings": 32, "hidden_act": "gelu",
                        "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513},
        "geometry_encoder_config": _SMALL,
        "detr_encoder_config": _SMALL,
        "detr_decoder_config": {**_SMALL, "num_queries": 8},
        "mask_decoder_config": {"hidden_size": _H, "num_attention_heads": 2},
    },
    "tracker": {
        "prompt_encoder_config": {"hidden_size": _H, "image_size": _SIDE},
        "mask_decoder_config": {"hidden_size": _H, "mlp_dim": 64, "num_attention_heads": 2,
                                "iou_head_hidden_dim": _H},
    },
}
#: The video tracker's memory modules, shrunk (saved in the folder like the hub's, unused).
_TINY_MEMORY = {
    "memory_attention_hidden_size": _H, "memory_attention_num_layers": 1,
    "memory_attention_feed_forward_hidden_size": 64, "memory_encoder_hidden_size": _H,
    "memory_encoder_output_channels": 16, "mask_downsampler_embed_dim": _H,
    "memory_fuser_embed_dim": _H, "memory_fuser_intermediate_dim": 64,
    "memory_fuser_num_layers": 1,
}


def save_tiny_pretrained(folder: str | Path, seed: int = 0,
                         config: dict[str, Any] | None = None, std: float = 0.5) -> Path:
    """Save a random-weight SAM 3 folder laid out like the ``facebook/sam3`` snapshot.

    FOR TESTS ONLY. Builds transformers' own ``Sam3VideoModel`` from :data:`TINY_CONFIG`
    (weights redrawn from ``N(0, std)``, seeded; 0.5 gives masks of every size) and saves
    it with ``save_pretrained`` next to :func:`default_processor`'s files, so
    :func:`load_pretrained` reads it exactly as it reads the hub's.
    """
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel

    config = TINY_CONFIG if config is None else config
    detector = config["detector"]
    tracker = {**config["tracker"], **_TINY_MEMORY,
               "vision_config": detector["vision_config"]}
    folder = Path(folder)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Sam3VideoModel(Sam3VideoConfig(detector_config=detector,
                                               tracker_config=tracker))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, std)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(folder)
    side = int(detector["vision_config"]["backbone_config"].get("image_size", 1008))
    default_processor(side).save_pretrained(folder)
    return folder


FAMILY = Family(
    "sam3", "SAM 3", ("transformers",), "sam3",
    "transformers (Hugging Face; Sam3Model and Sam3TrackerModel)",
    build=build,
    engine=Sam3Engine,
    predictor=lambda model: model.tracker,
    architecture_key=architecture_key,
    state_fingerprint=state_fingerprint,
    logits_frame="stretch",
    tiny=(TinyModel(TINY_MODEL_TYPE, TINY_CONFIG),),
    load_pretrained=load_pretrained,
)

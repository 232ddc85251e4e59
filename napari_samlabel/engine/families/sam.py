"""The Segment Anything family (``segment_anything``) and :class:`SamEngine`.

:class:`SamEngine` puts segment-anything's ``SamPredictor`` behind the engine protocol. It
also serves the families that share that predictor API: MobileSAM (``vit_t``: a TinyViT
encoder in front of SAM's decoder, :mod:`~napari_samlabel.engine.families.mobile_sam`) and
SAM-HQ (:mod:`~napari_samlabel.engine.families.sam_hq`, a subclass). Get one with
:func:`napari_samlabel.engine.loader.load_engine`.

Three switches control how the image encoder runs (benchmarks: ``benchmarks/README.md``);
the decoder (``predict``) always runs in float32 (segment-anything's decoder fails on
bfloat16):

``precise``
    False (default): where the hardware runs bfloat16 natively (CPUs with AVX512-BF16/AMX,
    CUDA GPUs with bf16), the encoder runs in bfloat16 (a ViT with bfloat16 weights; other
    encoders under ``torch.autocast``). True: float32 always.
``compile``
    ``torch.compile`` the encoder (``dynamic=False``: the input is always 1 x 3 x 1024 x
    1024), with segment-anything's own attention. On CPU it is slower than the eager path
    below and its first encode pays a compilation of 10-70 s, so it is off by default
    (``samlabel embed --compile on`` turns it on). Falls back to eager with a warning if
    compilation fails.
``device``
    cuda > mps > cpu unless given.

Without ``compile``, the encoder's ViT blocks get a leaner forward
(:mod:`napari_samlabel.engine.lean_vit`: the same arithmetic in fewer passes over the
attention matrices, no ``qkv`` work on window padding, and on the CPU oneDNN linears with
the GELU and the residual adds fused in; in bfloat16 the GELU is its tanh form, which
differs by less than bfloat16's resolution), every encoder pass reuses attention buffers
that the engine keeps (:meth:`SamEngine.release_workspace` frees them), and the
``samlabel`` command and the plugin ask PyTorch for transparent huge pages and glibc to
keep freed memory for reuse (:func:`napari_samlabel.engine.device.tune_memory`).

Embeddings are cached (:mod:`napari_samlabel.engine.cache`) by image content and
``model_id``: ``set_image`` on an image seen before costs a hash and a file read.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
from napari_samlabel.engine.families import Family, TinyModel, make_predictor
from napari_samlabel.engine.lean_vit import (
    attention_workspace,
    fused_linear_available,
    use_lean_vit,
)
from napari_samlabel.engine.protocol import Prediction, SamInputs

__all__ = ["FAMILY", "TINY_CONFIG", "TINY_MODEL_TYPE", "SamEngine", "channels_last_upscaling"]


class SamEngine(CachedEngine):
    """A SAM-family model on its ``SamPredictor``, implementing the engine protocol.

    Parameters
    ----------
    sam : torch.nn.Module
        A loaded ``Sam`` model of segment-anything, MobileSAM or SAM-HQ (see
        :func:`~napari_samlabel.engine.loader.load_engine`, which also resolves the
        checkpoint). The engine takes it over: it is moved to ``device``, its encoder's
        forward is replaced by the engine's (precision, compile) and, when not compiling,
        its ViT blocks get the lean forward of :mod:`napari_samlabel.engine.lean_vit`.
    model_id : str
        Identity of the weights (``"vit_b:ec2df62732614e57"``); keys the embedding cache.
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks cuda > mps > cpu.
    precise : bool
        Encode in float32 even where bfloat16 is available (see the module docstring).
    compile : bool
        ``torch.compile`` the image encoder (first encode is slow; see the module docstring).
    cache : EmbeddingCache or None
        Embedding cache; None keeps only the current image's embedding.
    family : str
        ``"sam"`` or ``"mobile_sam"``: whose predictor wraps the model (SAM-HQ has
        :class:`~napari_samlabel.engine.families.sam_hq.SamHqEngine`).

    Attributes
    ----------
    predictor : SamPredictor
        The family's wrapped predictor (for advanced use; prefer the methods below).

    Notes
    -----
    One engine holds one current image: calls from several threads must be serialised
    (the GUI runs them in one worker), except :meth:`encode`, which leaves the current
    image alone. The embedding cache itself is thread-safe. See
    :class:`~napari_samlabel.engine.base.CachedEngine` for the other attributes.
    """

    def __init__(
        self,
        sam: Any,
        model_id: str,
        device: str | None = None,
        precise: bool = False,
        compile: bool = False,
        cache: EmbeddingCache | None = None,
        family: str = "sam",
    ) -> None:
        self.family = family
        # Attention buffers kept between encoder passes, per thread (lean_vit).
        self._workspaces = threading.local()
        super().__init__(sam, model_id, device=device, precise=precise, compile=compile,
                         cache=cache)
        if self.device.type == "cpu":
            channels_last_upscaling(self.model.mask_decoder)
        self.predictor = make_predictor(family, self.model)

    def _tensor(self, arr: np.ndarray) -> Any:
        """``arr`` as a float32 tensor on the engine's device."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32)

    def _prepare_encoder(self, encoder: Any, compile: bool) -> None:
        if compile:
            return  # inductor fuses segment-anything's own bias-add + softmax better
        import torch

        if self.precision == "int8":
            # int8 linears with oneDNN's GELU and residual post-ops; the attention stays
            # float32 (engine.int8).
            use_lean_vit(encoder, self.family, int8=True)
            return
        bf16 = self.precision == "bfloat16"
        fused = fused_linear_available(self.device, torch.bfloat16 if bf16 else torch.float32)
        if use_lean_vit(encoder, self.family, fused=fused, pack=fused and bf16, bfloat16=bf16) \
                and bf16:
            # A ViT whose weights are bfloat16 runs without autocast's casts and with a
            # bfloat16 residual stream: 2-5 % faster, cosine 0.99994 to the float32
            # embedding (random ViT-B weights; autocast: 0.99997).
            encoder.to(torch.bfloat16)
            self._encoder_dtype = torch.bfloat16

    def _int8_pays(self, encoder: Any) -> bool:
        # TinyViT (MobileSAM, Light HQ-SAM) spends its time in convolutions and small
        # linears: int8 linears made it slower on two cores (measured: 5.0-5.7 s against
        # 4.3-4.4 s in float32, same run), so it stays float32 where a ViT would get int8.
        return type(encoder).__name__ != "TinyViT"

    def _encoder_context(self) -> contextlib.AbstractContextManager[Any]:
        store = getattr(self._workspaces, "buffers", None)
        if store is None:
            store = self._workspaces.buffers = {}
        return attention_workspace(store)

    def release_workspace(self) -> None:
        """Free the attention buffers kept for the next encode (400 MB for ViT-B in bfloat16).

        The next encode allocates them again. A thread's buffers are also freed when the
        thread ends.
        """
        self._workspaces = threading.local()

    # -- encoding --------------------------------------------------------------------------

    def _split_encoder_output(self, out: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """``(features tensor, extra feature maps)`` of the encoder's output (hook)."""
        return out, {}

    def _install_extras(self, emb: Embedding) -> None:
        """Hand ``emb``'s extra feature maps to the predictor (hook; SAM has none)."""

    def _current_extras(self) -> dict[str, np.ndarray]:
        """The current image's extra feature maps, as stored in an embedding (hook)."""
        return {}

    def _run_encoder(self, image: np.ndarray) -> Embedding:
        """Run the predictor's preprocessing and the image encoder on ``image``."""
        import torch

        transform = self.predictor.transform
        resized = transform.apply_image(image)  # long side -> 1024, as SamPredictor does
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with torch.inference_mode():
            x = self.model.preprocess(x.float())  # normalise and pad to 1024 x 1024
            out, extras = self._split_encoder_output(self.model.image_encoder(x))
        return Embedding(
            features=out.cpu().numpy(),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(resized.shape[0]), int(resized.shape[1])),
            model_id=self.model_id,
            precision=self.precision,
            extras=extras,
        )

    def set_embedding(self, emb: Embedding) -> None:
        """Install a precomputed embedding as the current image (no encoding).

        Raises
        ------
        ValueError
            If the embedding was made by other weights (``model_id`` differs) or lacks a
            feature map this model needs.
        """
        self._check_embedding(emb)
        p = self.predictor
        p.reset_image()
        p.features = self._tensor(emb.features)
        self._install_extras(emb)
        p.original_size = tuple(emb.original_size)
        p.input_size = tuple(emb.input_size)
        p.is_image_set = True

    def get_embedding(self) -> Embedding:
        """The current image's embedding (to save or to hand to another engine instance).

        Raises
        ------
        RuntimeError
            If no image is set.
        """
        p = self.predictor
        if not p.is_image_set:
            raise RuntimeError("no image set: call set_image() or set_embedding() first")
        return Embedding(
            features=p.features.detach().float().cpu().numpy(),
            original_size=(int(p.original_size[0]), int(p.original_size[1])),
            input_size=(int(p.input_size[0]), int(p.input_size[1])),
            model_id=self.model_id,
            precision=self.precision,
            extras=self._current_extras(),
        )

    @property
    def is_image_set(self) -> bool:
        """True once an image or embedding is installed."""
        return bool(self.predictor.is_image_set)

    def reset_image(self) -> None:
        """Forget the current image."""
        self.predictor.reset_image()

    # -- decoding --------------------------------------------------------------------------

    def predict(self, inputs: SamInputs) -> Prediction:
        """Decode masks for ``inputs`` on the current image (see the protocol).

        SAM and MobileSAM return three masks with ``multimask_output``; SAM-HQ returns one
        (its HQ mask refines the best of SAM's three).

        Raises
        ------
        RuntimeError
            If no image was set.
        ValueError
            If ``inputs`` has neither points nor a box, or arrays have wrong shapes.
        """
        import torch

        if not self.predictor.is_image_set:
            raise RuntimeError("no image set: call set_image() before predict()")
        kwargs = inputs.predictor_kwargs()
        with torch.inference_mode():
            masks, iou, low_res = self.predictor.predict(**kwargs)
        return Prediction(
            masks=np.asarray(masks, dtype=bool),
            iou_predictions=np.asarray(iou, dtype=np.float32),
            low_res_logits=np.asarray(low_res, dtype=np.float32),
            logits_threshold=float(self.predictor.model.mask_threshold),
            logits_frame=self.logits_frame,
        )


def channels_last_upscaling(decoder: Any) -> bool:
    """Run the mask decoder's output upscaling in channels-last layout; True if it did.

    segment-anything's decoder upsamples its 64 x 64 embedding to 256 x 256 with two
    transposed convolutions on every click. In the default (channels-first) layout oneDNN
    reorders every input and output around them; in channels-last it does not (measured,
    ViT-B decoder on one core: 37 ms to 14 ms for the upscaling, the same values to 4e-7).
    The output is handed back contiguous, as the decoder's ``view`` expects.
    """
    import torch

    seq = getattr(decoder, "output_upscaling", None)
    if not isinstance(seq, torch.nn.Sequential) or getattr(seq, "_channels_last", False):
        return False
    seq.to(memory_format=torch.channels_last)
    forward = seq.forward

    def upscale(x: Any) -> Any:
        return forward(x.contiguous(memory_format=torch.channels_last)).contiguous()

    setattr(seq, "forward", upscale)  # noqa: B010 - this instance only
    setattr(seq, "_channels_last", True)  # noqa: B010
    return True


# --- the family ----------------------------------------------------------------------------

def build(config: dict[str, Any]) -> Any:
    """segment-anything's ``Sam`` from a registry config (``encoder_embed_dim`` ...)."""
    from segment_anything.build_sam import _build_sam

    return _build_sam(checkpoint=None, **config)


def predictor(model: Any) -> Any:
    """segment-anything's ``SamPredictor`` around ``model``."""
    from segment_anything import SamPredictor

    return SamPredictor(model)


def vit_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """segment-anything's ViT ``Attention`` and ``Block`` classes."""
    from segment_anything.modeling import image_encoder

    return (image_encoder.Attention,), (image_encoder.Block,)


def vit_architecture_key(family: str, config: dict[str, Any]) -> tuple[Any, ...] | None:
    """``("vit", family, width, depth)`` of a ViT config (SAM, SAM-HQ), else None."""
    if "encoder_embed_dim" not in config:
        return None
    return ("vit", family, config["encoder_embed_dim"], config["encoder_depth"])


def vit_fingerprint(family: str, state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``("vit", family, width, depth)`` of a state dict with a segment-anything ViT."""
    keys = [k for k in state if k.startswith("image_encoder.blocks.")]
    if not keys:
        return None
    width = int(state["image_encoder.patch_embed.proj.weight"].shape[0])
    depth = 1 + max(int(k.split(".")[2]) for k in keys)
    return ("vit", family, width, depth)


#: The mask decoder key only SAM-HQ has (its HQ output token).
HQ_TOKEN_KEY = "mask_decoder.hf_token.weight"


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A plain SAM state dict: a ViT encoder and SAM's own decoder (no HQ token)."""
    if HQ_TOKEN_KEY in state:
        return None
    return vit_fingerprint("sam", state)


TINY_MODEL_TYPE = "vit_tiny_test"
# Small ViT (32 channels, 2 blocks); the prompt encoder and mask decoder are SAM's own
# (256-channel), so embeddings, logits and masks have exactly SAM's shapes.
TINY_CONFIG: dict[str, Any] = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}

FAMILY = Family(
    "sam", "Segment Anything", ("segment_anything",), None, "segment-anything",
    build=build,
    engine=SamEngine,
    predictor=predictor,
    architecture_key=lambda config: vit_architecture_key("sam", config),
    state_fingerprint=state_fingerprint,
    vit_classes=vit_classes,
    # The SAM tiny model keeps its historical initialisation (no redraw).
    tiny=(TinyModel(TINY_MODEL_TYPE, TINY_CONFIG, redraw=False),),
)

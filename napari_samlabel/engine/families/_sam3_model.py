"""SAM 3's model for :mod:`napari_samlabel.engine.families.sam3`: assembly and weights.

The detector (``Sam3Model``) and the tracker (``Sam3TrackerModel``) are built from one
configuration and share one ViT; :func:`load_pretrained` reads a Hugging Face folder (the
hub snapshot of ``facebook/sam3`` or a ``save_pretrained`` copy) strictly. Kept apart from
the family module so that each stays short; the family module is the public face.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_samlabel.engine.errors import CheckpointError

#: The official weights on the Hugging Face hub (gated: accept the licence, then log in).
HUB_REPO = "facebook/sam3"
_TRACKER_PARTS = ("vision_config", "prompt_encoder_config", "mask_decoder_config")


# --- the model: detector and tracker on one ViT --------------------------------------------


@functools.cache
def _classes() -> tuple[type, type]:
    """``(Sam3Pair, ViTTrunk)``, defined on first use so that torch is imported lazily."""
    import torch

    class ViTTrunk(torch.nn.Module):
        """The shared ViT as the engine's ``image_encoder``: pixels in, tokens out."""

        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, pixel_values: Any) -> Any:
            # (1, h*w, C) tokens; a tensor, so the engine's float32 cast applies to it.
            return self.backbone(pixel_values).last_hidden_state

    class Sam3Pair(torch.nn.Module):
        """SAM 3's detector (``Sam3Model``) and tracker (``Sam3TrackerModel``) on one ViT."""

        def __init__(self, detector: Any, tracker: Any) -> None:
            super().__init__()
            tracker.vision_encoder.backbone = detector.vision_encoder.backbone
            self.detector = detector
            self.tracker = tracker
            self.image_encoder = ViTTrunk(detector.vision_encoder.backbone)
            #: The processor (tokenizer, image processor) saved with the weights, if any.
            self.processor: Any = None

    return Sam3Pair, ViTTrunk


def _fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the bookkeeping keys a config's ``to_dict`` adds."""
    names = set(getattr(cls, "__dataclass_fields__", {})) or set(data)
    return {k: v for k, v in data.items() if k in names and k != "model_type"}


def _tracker(parts: Mapping[str, Any]) -> Any:
    """``Sam3TrackerModel`` from its three sub-configurations, with a stand-in ViT.

    The tracker builds a ViT of its own, which :class:`Sam3Pair` replaces by the
    detector's; it is built with one layer so that a full-size build does not allocate
    (and randomly initialise) a second 450M-parameter encoder.
    """
    from transformers import (
        Sam3TrackerConfig,
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerModel,
        Sam3TrackerPromptEncoderConfig,
    )

    vision = dict(parts.get("vision_config") or {})
    backbone = dict(vision.get("backbone_config") or {"model_type": "sam3_vit_model"})
    stand_in = {**vision, "model_type": "sam3_vision_model",
                "backbone_config": {**backbone, "model_type": "sam3_vit_model",
                                    "num_hidden_layers": 1, "global_attn_indexes": [0]}}
    # The prompt encoder's input size is the ViT's (1008; smaller in the tiny test model).
    prompt = {**_fields(Sam3TrackerPromptEncoderConfig, parts.get("prompt_encoder_config") or {}),
              "image_size": backbone.get("image_size", 1008)}
    config = Sam3TrackerConfig(
        vision_config=stand_in,
        prompt_encoder_config=prompt,
        mask_decoder_config=_fields(Sam3TrackerMaskDecoderConfig,
                                    parts.get("mask_decoder_config") or {}),
    )
    return Sam3TrackerModel(config)


def _assemble(detector: Any, tracker_parts: Mapping[str, Any]) -> Any:
    pair_cls, _ = _classes()
    return pair_cls(detector, _tracker(tracker_parts))


def build(config: dict[str, Any]) -> Any:
    """SAM 3 with random weights from ``config`` (``{"detector": ..., "tracker": ...}``).

    ``config["detector"]`` is ``Sam3Config`` keyword arguments, ``config["tracker"]`` the
    tracker's prompt encoder and mask decoder; both see the detector's vision config. An
    empty config is the full-size ``facebook/sam3`` architecture.
    """
    from transformers import Sam3Config, Sam3Model

    detector_kwargs = dict(config.get("detector") or {})
    detector: Any = Sam3Model(Sam3Config(**detector_kwargs))
    tracker_parts = {**dict(config.get("tracker") or {}),
                     "vision_config": detector.config.vision_config.to_dict()}
    return _assemble(detector, tracker_parts)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                               .values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"cannot read the shard index {index} ({exc})") from exc
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


def _tracker_state(folder: Path, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The tracker's weights from the folder's safetensors files, under the tracker's names.

    ``tracker_model.X`` is the tracker's ``X`` and ``tracker_neck.X`` its
    ``vision_encoder.neck.X`` (the layout of ``facebook/sam3``, which transformers'
    ``Sam3TrackerModel`` conversion reads the same way); other keys are skipped.
    """
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for path in _weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if key.startswith("tracker_neck."):
                        name = "vision_encoder.neck." + key[len("tracker_neck."):]
                    elif key.startswith("tracker_model."):
                        # transformers 5 saves Sam3VideoModel's tracker as
                        # "tracker_model.tracker_model.X"; the hub file has one prefix.
                        name = key
                        while name.startswith("tracker_model."):
                            name = name[len("tracker_model."):]
                    else:
                        continue
                    if name in wanted:
                        out[name] = fh.get_tensor(key)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"cannot read SAM 3 weights {path}: the file is corrupt, truncated or not "
                f"safetensors ({exc})") from exc
    return out


def load_pretrained(folder: str | Path) -> Any:
    """Load a SAM 3 folder (the ``facebook/sam3`` snapshot or a ``save_pretrained`` copy).

    Raises
    ------
    CheckpointError
        The folder is not a SAM 3 checkpoint, lacks the tracker's weights, or a weight is
        missing or has another shape (the message names the folder and the weights).
    """
    import torch
    from transformers import AutoConfig, Sam3Model, Sam3Processor

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} is not a SAM 3 checkpoint folder: it has no config.json (download "
            f"the whole {HUB_REPO} repository, e.g. `hf download {HUB_REPO} --local-dir "
            f"{folder}`)")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    kind = getattr(config, "model_type", None)
    if kind != "sam3_video":
        what = ("only SAM 3's detector (Sam3Model), not the tracker that refines objects "
                "from points" if kind == "sam3" else f"a {kind!r} model")
        raise CheckpointError(
            f"{folder} holds {what}; the sam3 model needs the full {HUB_REPO} checkpoint "
            "(config.json of type 'sam3_video' with detector and tracker weights)")
    if not _weight_files(folder):
        raise CheckpointError(f"{folder} has no .safetensors weights")
    try:
        loaded: Any = Sam3Model.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, dtype=torch.float32)
        detector, info = loaded
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load SAM 3's detector from {folder}: {exc}") from exc
    bad = sorted(info.get("missing_keys") or ()) + [str(m) for m in
                                                    info.get("mismatched_keys") or ()]
    if bad:
        raise CheckpointError(
            f"SAM 3 checkpoint {folder} does not fit the detector (missing or differently "
            f"shaped weights): {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    tracker_config = config.tracker_config
    parts = {name: getattr(tracker_config, name).to_dict() for name in _TRACKER_PARTS}
    parts["vision_config"] = detector.config.vision_config.to_dict()
    model = _assemble(detector, parts)
    tracker = model.tracker
    wanted = {k: v for k, v in tracker.state_dict().items()
              if not k.startswith("vision_encoder.backbone.")}
    state = _tracker_state(folder, wanted)
    problems = sorted(set(wanted) - set(state)) + [
        f"{k} {tuple(v.shape)} != {tuple(wanted[k].shape)}" for k, v in state.items()
        if tuple(v.shape) != tuple(wanted[k].shape)]
    if problems:
        raise CheckpointError(
            f"SAM 3 checkpoint {folder} lacks tracker weights or has them in other shapes "
            f"(needed for point refinement): {', '.join(problems[:8])}"
            f"{' ...' if len(problems) > 8 else ''}")
    tracker.load_state_dict(state, strict=False)
    try:
        model.processor = Sam3Processor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{folder} lacks SAM 3's processor files (tokenizer.json, processor_config.json "
            f"or their equivalents from the {HUB_REPO} repository): {exc}") from exc
    return model.eval()


def default_processor(size: int = 1008) -> Any:
    """A ``Sam3Processor`` for random-weight models (benchmarks): byte-level tokens only.

    Real checkpoints bring their own processor (the CLIP tokenizer of ``facebook/sam3``);
    this one spells every phrase byte by byte with a 514-token vocabulary, which gives
    the text encoder inputs of the real length (32 tokens) without a vocabulary file.
    """
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = Sam3ImageProcessor(size={"height": size, "width": size})
    return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)

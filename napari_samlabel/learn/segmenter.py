"""Off-the-shelf torchvision segmentation networks: build, save, load, predict.

Two architectures (``ARCHS``): ``"deeplabv3"`` (DeepLabV3-ResNet50, the default, for GPUs)
and ``"lraspp"`` (LR-ASPP MobileNetV3-Large, for CPUs). Weights are random by default
(``weights=None, weights_backbone=None``); a user who has pretrained weights uses them with
``pretrained=``:

- ``"backbone"``: torchvision's ImageNet backbone weights enum (ResNet50 ``IMAGENET1K_V1`` /
  MobileNetV3-Large ``IMAGENET1K_V1``);
- ``"coco"``: torchvision's full ``COCO_WITH_VOC_LABELS_V1`` weights (21 classes; the last
  layer is replaced when the class count differs);
- a path: a state dict saved with :func:`torch.save` (a whole model's, or the ``model.pt`` of
  a model folder), loaded with ``weights_only=True``.

Torchvision's weights are used only when already in torch's hub cache
(``$TORCH_HOME/hub/checkpoints``): nothing is downloaded, and a missing file is a
:class:`SegmenterError` that names the file and where to put it.

A model folder holds ``model.pt`` (the state dict) and ``model.json`` (architecture, class
names, input size, normalisation), written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_samlabel.core.fsutil import atomic_save, atomic_write_text
from napari_samlabel.learn import META_FILE, MODEL_FILE

if TYPE_CHECKING:
    import torch

ARCHS: tuple[str, ...] = ("deeplabv3", "lraspp")
DEFAULT_ARCH = "deeplabv3"
PRETRAINED: tuple[str, ...] = ("backbone", "coco")
#: ImageNet statistics, which torchvision's backbones expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODEL_FORMAT = "napari-samlabel-segmenter"


class SegmenterError(ValueError):
    """A model that cannot be built or loaded (the message names the file and the problem)."""


@dataclass(frozen=True)
class SegmenterMeta:
    """What ``model.json`` records about a trained segmenter.

    Attributes
    ----------
    arch : str
        One of :data:`ARCHS`.
    classes : list of str
        Class names; index = label value (0 background).
    size : int
        Images are resized to ``size x size`` for the network (predictions are resized back).
    mean, std : tuple of float
        Input normalisation.
    rounds : int
        Self-training rounds completed.
    extra : dict
        Free-form facts (mIoU per round, training settings).
    """

    arch: str
    classes: list[str]
    size: int = 320
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    rounds: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The ``model.json`` text."""
        return json.dumps({"format": MODEL_FORMAT, **asdict(self)}, indent=2)

    @classmethod
    def from_file(cls, path: Path) -> SegmenterMeta:
        """Read ``model.json``; :class:`SegmenterError` naming the file when malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SegmenterError(f"{path}: cannot read the model description: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise SegmenterError(f"{path}: not a napari-samlabel segmenter description")
        try:
            meta = cls(arch=str(data["arch"]), classes=[str(c) for c in data["classes"]],
                       size=int(data.get("size", 320)),
                       mean=tuple(float(v) for v in data.get("mean", MEAN)),  # type: ignore[arg-type]
                       std=tuple(float(v) for v in data.get("std", STD)),  # type: ignore[arg-type]
                       rounds=int(data.get("rounds", 0)), extra=dict(data.get("extra", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SegmenterError(f"{path}: malformed field: {exc}") from exc
        if meta.arch not in ARCHS:
            raise SegmenterError(f"{path}: unknown architecture {meta.arch!r} "
                                 f"(known: {', '.join(ARCHS)})")
        return meta


def _cached(weights: Any) -> Path:
    """The hub-cache file of a torchvision weights enum; SegmenterError when absent."""
    import torch

    name = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise SegmenterError(
            f"torchvision weights {weights} are not cached ({path} is missing) and nothing is "
            f"downloaded here: copy {name} from a machine that has it into "
            f"{path.parent}, pass a local state dict file instead, or train from random "
            "weights (the default)")
    return path


def _set_classes(model: Any, arch: str, num_classes: int) -> None:
    """Replace the last layer(s) when pretrained weights have another class count."""
    import torch.nn as nn

    if arch == "deeplabv3":
        last = model.classifier[4]
        if last.out_channels != num_classes:
            model.classifier[4] = nn.Conv2d(last.in_channels, num_classes, 1)
        model.aux_classifier = None
    else:
        for name in ("low_classifier", "high_classifier"):
            last = getattr(model.classifier, name)
            if last.out_channels != num_classes:
                setattr(model.classifier, name, nn.Conv2d(last.in_channels, num_classes, 1))


def build_segmenter(arch: str = DEFAULT_ARCH, num_classes: int = 21,
                    pretrained: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """A torchvision segmentation network (see the module notes for ``pretrained``).

    Raises
    ------
    SegmenterError
        On an unknown architecture, torchvision weights missing from the cache, or a state
        dict file that cannot be read or does not fit the network.
    """
    import torch
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
    from torchvision.models.segmentation import (
        DeepLabV3_ResNet50_Weights,
        LRASPP_MobileNet_V3_Large_Weights,
        deeplabv3_resnet50,
        lraspp_mobilenet_v3_large,
    )

    if arch not in ARCHS:
        raise SegmenterError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS)})")
    if num_classes < 2:
        raise SegmenterError(f"a segmenter needs at least 2 classes, got {num_classes}")
    full = DeepLabV3_ResNet50_Weights if arch == "deeplabv3" else LRASPP_MobileNet_V3_Large_Weights
    back = ResNet50_Weights if arch == "deeplabv3" else MobileNet_V3_Large_Weights
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None}
    state = None
    if pretrained == "backbone":
        _cached(back.IMAGENET1K_V1)
        kwargs["weights_backbone"] = back.IMAGENET1K_V1
    elif pretrained == "coco":
        _cached(full.COCO_WITH_VOC_LABELS_V1)
        kwargs["weights"] = full.COCO_WITH_VOC_LABELS_V1
    elif pretrained is not None:
        path = Path(pretrained)
        if path.is_dir():
            path = path / MODEL_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:  # missing, corrupt, pickled code
            raise SegmenterError(f"{path}: cannot load a state dict: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]  # a training checkpoint
    if kwargs["weights"] is None:
        kwargs["num_classes"] = num_classes
    build = deeplabv3_resnet50 if arch == "deeplabv3" else lraspp_mobilenet_v3_large
    if arch == "deeplabv3":
        kwargs["aux_loss"] = False
    model = build(**kwargs)
    _set_classes(model, arch, num_classes)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if not any(k in state for k in model.state_dict()):
            raise SegmenterError(f"{pretrained}: no parameter of {arch} in this state dict")
        del missing, unexpected  # partial files (a backbone alone) are allowed
    return model


def save_model(folder: str | os.PathLike[str], model: torch.nn.Module,
               meta: SegmenterMeta) -> None:
    """Write ``model.pt`` and ``model.json`` into ``folder`` (atomically, each)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_save(folder / MODEL_FILE, lambda f: torch.save(state, f))
    atomic_write_text(folder / META_FILE, meta.to_json())


def load_model(folder: str | os.PathLike[str],
               device: str | torch.device = "cpu") -> tuple[torch.nn.Module, SegmenterMeta]:
    """Load a model folder written by :func:`save_model` (eval mode, on ``device``)."""
    import torch

    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise SegmenterError(f"{folder} is not a trained model: {META_FILE} is missing")
    meta = SegmenterMeta.from_file(meta_path)
    model = build_segmenter(meta.arch, len(meta.classes))
    try:
        state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise SegmenterError(f"{folder / MODEL_FILE}: cannot load the weights: {exc}") from exc
    return model.to(device).eval(), meta


def to_tensor(image: np.ndarray, size: int, mean: Sequence[float] = MEAN,
              std: Sequence[float] = STD) -> torch.Tensor:
    """An ``H x W x 3`` uint8 image as a normalised ``3 x size x size`` float tensor."""
    import torch
    import torch.nn.functional as F

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"an image must be H x W x 3, got shape {img.shape}")
    t = torch.from_numpy(np.array(img[..., :3], dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    if t.shape[1:] != (size, size):
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    m = torch.tensor(mean, dtype=t.dtype)[:, None, None]
    s = torch.tensor(std, dtype=t.dtype)[:, None, None]
    return (t - m) / s


def predict_probs(model: torch.nn.Module, images: Sequence[np.ndarray], meta: SegmenterMeta,
                  device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Class probabilities (``C x H x W`` float32, at each image's own size) of a batch."""
    import torch
    import torch.nn.functional as F

    if not images:
        return []
    batch = torch.stack([to_tensor(im, meta.size, meta.mean, meta.std) for im in images])
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        logits = net(batch.to(device))["out"].float()
        out = []
        for k, im in enumerate(images):
            h, w = np.asarray(im).shape[:2]
            lg = F.interpolate(logits[k:k + 1], size=(h, w), mode="bilinear",
                               align_corners=False)
            out.append(torch.softmax(lg[0], dim=0).cpu().numpy())
    net.train(was_training)
    return out

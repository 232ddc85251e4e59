"""Model families: which package builds each architecture, and how its checkpoints look.

A *family* is one code base with one predictor API:

============  =======================  ==============================  =======================
family        Python module            pip extra of napari-samlabel    predictor
============  =======================  ==============================  =======================
``sam``       ``segment_anything``     (always installed)              ``SamPredictor``
``mobile_sam``  ``mobile_sam``         ``[mobilesam]``                 ``SamPredictor`` (same API)
``sam_hq``    ``segment_anything_hq``  ``[hq]``                        ``SamPredictor`` + HQ token
``sam2``      ``sam2``                 ``[sam2]``                      ``SAM2ImagePredictor``
============  =======================  ==============================  =======================

Every architecture is built empty (random weights) from its package's own modules; weights
are loaded by :func:`napari_samlabel.engine.checkpoint.load_model` (``weights_only=True``,
strict key and shape match). In particular SAM-HQ's own builders are not given the
checkpoint: they load it non-strictly and print the result, so a plain SAM checkpoint would
"load" into SAM-HQ with random HQ layers.

Packages are imported only when a model is built; :func:`family_available` asks without
importing (the import of ``mobile_sam``/``segment_anything_hq`` pulls in timm and takes
seconds).
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from napari_samlabel.engine.errors import ModelUnavailableError


@dataclass(frozen=True)
class Family:
    """One model family (see the module docstring).

    Attributes
    ----------
    name : str
        ``"sam"``, ``"mobile_sam"``, ``"sam_hq"`` or ``"sam2"``.
    title : str
        Human name for listings.
    modules : tuple of str
        Top-level modules that must be importable.
    extra : str or None
        The napari-samlabel pip extra that installs them (None: always installed).
    packages : str
        The PyPI distributions behind ``extra``, for messages.
    logits_frame : str
        Geometry of the decoder's ``256 x 256`` low-resolution logits: ``"pad"`` (long side
        resized to the encoder size, padded at the bottom/right: SAM, MobileSAM, SAM-HQ) or
        ``"stretch"`` (the whole image stretched to the square: SAM 2).
    checkpoint_key : str or None
        Key under which the official checkpoints keep the state dict (SAM 2: ``"model"``);
        None when the file is the state dict itself.
    """

    name: str
    title: str
    modules: tuple[str, ...]
    extra: str | None
    packages: str
    logits_frame: str = "pad"
    checkpoint_key: str | None = None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sam", "Segment Anything", ("segment_anything",), None, "segment-anything"),
        Family("mobile_sam", "MobileSAM", ("mobile_sam", "timm"), "mobilesam",
               "mobilesam-mirror (the MobileSAM code) and timm"),
        Family("sam_hq", "SAM-HQ", ("segment_anything_hq", "timm"), "hq",
               "segment-anything-hq and timm"),
        Family("sam2", "SAM 2", ("sam2", "hydra", "omegaconf"), "sam2",
               "rf-sam-2 (Meta's SAM 2 code as a wheel), hydra-core and omegaconf",
               logits_frame="stretch", checkpoint_key="model"),
    )
}


def get_family(name: str) -> Family:
    """Return the :class:`Family` called ``name``."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def missing_modules(family: str) -> list[str]:
    """Modules of ``family`` that cannot be imported (found without importing them)."""
    missing = []
    for module in get_family(family).modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def family_available(family: str) -> bool:
    """True when every module ``family`` needs is installed."""
    return not missing_modules(family)


def install_hint(family: str) -> str:
    """The pip command that installs what ``family`` needs."""
    fam = get_family(family)
    if fam.extra is None:
        return "pip install napari-samlabel"
    return f'pip install "napari-samlabel[{fam.extra}]"'


def require_family(family: str, model_type: str) -> None:
    """Raise :class:`ModelUnavailableError` if ``family``'s packages are missing."""
    missing = missing_modules(family)
    if missing:
        fam = get_family(family)
        raise ModelUnavailableError(
            f"model type {model_type!r} ({fam.title}) needs the optional package(s) "
            f"{', '.join(missing)}, which are not installed. Install them with: "
            f"{install_hint(family)}  (it brings {fam.packages})"
        )


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """Hide the deprecation and registry warnings timm prints when these packages load.

    mobile_sam and segment_anything_hq import timm's deprecated paths and re-register
    timm's ``tiny_vit_*`` models; SAM 2's transforms use the deprecated ``torch.jit.script``.
    None of it is actionable for our users.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*Overwriting tiny_vit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


# --- builders ------------------------------------------------------------------------------
# Each takes the ``config`` of a ModelSpec and returns the empty model in eval mode.

def _build_sam(config: dict[str, Any]) -> Any:
    from segment_anything.build_sam import _build_sam as build

    return build(checkpoint=None, **config)


def _build_sam_hq(config: dict[str, Any]) -> Any:
    with _quiet_imports():
        from segment_anything_hq.build_sam import _build_sam as build
    if config.get("encoder") == "tiny_vit":
        return _build_tinyvit_sam("segment_anything_hq", config)
    return build(checkpoint=None, **config)


def _build_mobile_sam(config: dict[str, Any]) -> Any:
    return _build_tinyvit_sam("mobile_sam", config)


def _build_tinyvit_sam(package: str, config: dict[str, Any]) -> Any:
    """A SAM with a TinyViT encoder (MobileSAM, Light HQ-SAM) from ``package``'s modules.

    ``config`` keys: ``embed_dims``, ``depths``, ``num_heads``, ``window_sizes``,
    ``mlp_ratio``, ``mbconv_expand_ratio``, and for the decoder ``decoder_depth``,
    ``decoder_mlp_dim``, ``iou_head_depth``, ``iou_head_hidden_dim``, ``mask_in_chans``
    (the official values are in the registry). The neck always gives 256 channels and the
    input is 1024 x 1024 (TinyViT's forward hard-codes the 64 x 64 grid).
    """
    import importlib

    with _quiet_imports():
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


# build_sam2's post-processing defaults (apply_postprocessing=True): fall back to the
# multimask output when the single mask is unstable.
_SAM2_POSTPROCESSING = (
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)


def _build_sam2(config: dict[str, Any]) -> Any:
    """SAM 2 from its packaged YAML config plus ``config["overrides"]`` (dot-list).

    The YAML is read with OmegaConf and instantiated with ``hydra.utils.instantiate``,
    bypassing Hydra's global config search that ``sam2.build_sam.build_sam2`` relies on
    (it breaks when anything else in the process initialised Hydra first).
    """
    import importlib.resources

    with _quiet_imports():
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        path = importlib.resources.files("sam2") / config["config_file"]
        cfg = OmegaConf.load(str(path))
        dots = [*_SAM2_POSTPROCESSING, *config.get("overrides", ())]
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(dots)))
        OmegaConf.resolve(cfg)
        return instantiate(cfg.model, _recursive_=True)


_BUILDERS = {
    "sam": _build_sam,
    "mobile_sam": _build_mobile_sam,
    "sam_hq": _build_sam_hq,
    "sam2": _build_sam2,
}


def build_model(family: str, config: dict[str, Any], model_type: str = "") -> Any:
    """Build ``family``'s empty architecture from ``config``, in eval mode.

    Raises
    ------
    ModelUnavailableError
        If the family's package is not installed (the message has the pip command).
    """
    require_family(family, model_type or family)
    return _BUILDERS[family](dict(config)).eval()


def make_predictor(family: str, model: Any) -> Any:
    """The family's own predictor around ``model``."""
    with _quiet_imports():
        if family == "sam":
            from segment_anything import SamPredictor
        elif family == "mobile_sam":
            from mobile_sam import SamPredictor
        elif family == "sam_hq":
            from segment_anything_hq import SamPredictor
        elif family == "sam2":
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            # TorchScript is deprecated in torch 2.x and only speeds up the transforms.
            return SAM2ImagePredictor(model, disable_torch_jit=True)
        else:
            raise KeyError(f"unknown model family {family!r}")
    return SamPredictor(model)


def vit_classes(family: str) -> tuple[tuple[type, ...], tuple[type, ...]]:
    """``(attention classes, block classes)`` of ``family``'s ViT, for the lean forward.

    Empty for families without segment-anything's ViT (MobileSAM's TinyViT, SAM 2's Hiera).
    """
    if family == "sam":
        from segment_anything.modeling import image_encoder
    elif family == "sam_hq":
        with _quiet_imports():
            from segment_anything_hq.modeling import image_encoder
    else:
        return (), ()
    return (image_encoder.Attention,), (image_encoder.Block,)


__all__ = [
    "FAMILIES",
    "Family",
    "ModelUnavailableError",
    "build_model",
    "family_available",
    "get_family",
    "install_hint",
    "make_predictor",
    "missing_modules",
    "require_family",
    "vit_classes",
]

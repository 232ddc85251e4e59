"""Model families: one module per family, and what they share.

A *family* is one code base with one predictor API:

============  =======================  ==============================  =======================
family        Python module            pip extra of napari-samlabel    predictor
============  =======================  ==============================  =======================
``sam``       ``segment_anything``     (always installed)              ``SamPredictor``
``mobile_sam``  ``mobile_sam``         ``[mobilesam]``                 ``SamPredictor`` (same API)
``sam_hq``    ``segment_anything_hq``  ``[hq]``                        ``SamPredictor`` + HQ token
``sam2``      ``sam2``                 ``[sam2]``                      ``SAM2ImagePredictor``
``sam3``      ``transformers``         ``[sam3]``                      ``Sam3TrackerModel``
============  =======================  ==============================  =======================

Each family lives in its own module of this package (``families/sam.py`` ...), which
defines one :class:`Family` record named ``FAMILY``: how to build the empty architecture
from a registry config, the engine class that serves it, the family's predictor, how its
checkpoints look (state-dict fingerprint, the key the official files keep the weights
under) and its tiny random-weight test model. The modules are found here by listing the
package, so a new family is one new module plus its entries in
:mod:`napari_samlabel.engine.registry`. A module whose name starts with ``_`` is a helper of
a family module (``_sam3_model.py``), not a family.

Every architecture is built empty (random weights) from its package's own modules; weights
are loaded by :func:`napari_samlabel.engine.checkpoint.load_model` (``weights_only=True``,
strict key and shape match). In particular SAM-HQ's own builders are not given the
checkpoint: they load it non-strictly and print the result, so a plain SAM checkpoint would
"load" into SAM-HQ with random HQ layers.

Model packages are imported only when a model is built; :func:`family_available` asks
without importing (the import of ``mobile_sam``/``segment_anything_hq`` pulls in timm and
takes seconds).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import pkgutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_samlabel.engine.errors import ModelUnavailableError

if TYPE_CHECKING:
    from napari_samlabel.engine.base import CachedEngine


@dataclass(frozen=True)
class TinyModel:
    """A family's tiny random-weight model, FOR TESTS ONLY (see :mod:`napari_samlabel.testing`).

    Attributes
    ----------
    model_type : str
        Registered model type (``"vit_tiny_test"``).
    config : dict
        Keyword arguments of the family's builder.
    redraw : bool
        Redraw every parameter from ``N(0, 0.05)`` after building (also the ones the
        packages initialise to zero), so that the whole network is exercised.
    """

    model_type: str
    config: dict[str, Any] = field(repr=False)
    redraw: bool = True


def _no_vit() -> tuple[tuple[type, ...], tuple[type, ...]]:
    return (), ()


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
    build : callable
        ``build(config) -> torch.nn.Module``: the empty architecture of a registry config.
    engine : callable
        ``engine(model, model_id, device=..., precise=..., compile=..., cache=...)``: the
        engine (a :class:`~napari_samlabel.engine.base.CachedEngine`) around a loaded model.
    predictor : callable
        ``predictor(model)``: the family's own predictor.
    architecture_key : callable
        ``architecture_key(config)``: what :attr:`state_fingerprint` gives for the weights
        of a model built from ``config`` (None if it cannot tell).
    state_fingerprint : callable
        ``state_fingerprint(state_dict)``: a tuple naming the family and encoder size when
        the state dict is this family's, else None. Lets the checkpoint loader say which
        model a wrong file belongs to.
    logits_frame : str
        Geometry of the decoder's ``256 x 256`` low-resolution logits: ``"pad"`` (long side
        resized to the encoder size, padded at the bottom/right: SAM, MobileSAM, SAM-HQ) or
        ``"stretch"`` (the whole image stretched to the square: SAM 2).
    checkpoint_key : str or None
        Key under which the official checkpoints keep the state dict (SAM 2: ``"model"``);
        None when the file is the state dict itself.
    vit_classes : callable
        ``vit_classes() -> (attention classes, block classes)`` of the family's
        segment-anything ViT, for :mod:`napari_samlabel.engine.lean_vit`; empty for other
        encoders.
    tiny : tuple of TinyModel
        The family's tiny random-weight test models.
    load_pretrained : callable or None
        ``load_pretrained(folder) -> torch.nn.Module`` for families whose checkpoints are
        Hugging Face ``save_pretrained`` folders (SAM 3) rather than one state-dict file;
        it checks keys and shapes as strictly as :func:`~napari_samlabel.engine.checkpoint.
        load_model` does for files. None: the checkpoint is one file.
    """

    name: str
    title: str
    modules: tuple[str, ...]
    extra: str | None
    packages: str
    build: Callable[[dict[str, Any]], Any] = field(repr=False)
    engine: Callable[..., CachedEngine] = field(repr=False)
    predictor: Callable[[Any], Any] = field(repr=False)
    architecture_key: Callable[[dict[str, Any]], tuple[Any, ...] | None] = field(repr=False)
    state_fingerprint: Callable[[Mapping[str, Any]], tuple[Any, ...] | None] = field(
        repr=False)
    logits_frame: str = "pad"
    checkpoint_key: str | None = None
    vit_classes: Callable[[], tuple[tuple[type, ...], tuple[type, ...]]] = field(
        default=_no_vit, repr=False)
    tiny: tuple[TinyModel, ...] = ()
    load_pretrained: Callable[[Any], Any] | None = field(default=None, repr=False)


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
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


def build_model(family: str, config: dict[str, Any], model_type: str = "") -> Any:
    """Build ``family``'s empty architecture from ``config``, in eval mode.

    Raises
    ------
    ModelUnavailableError
        If the family's package is not installed (the message has the pip command).
    """
    require_family(family, model_type or family)
    return get_family(family).build(dict(config)).eval()


def make_predictor(family: str, model: Any) -> Any:
    """The family's own predictor around ``model``."""
    return get_family(family).predictor(model)


def vit_classes(family: str) -> tuple[tuple[type, ...], tuple[type, ...]]:
    """``(attention classes, block classes)`` of ``family``'s ViT, for the lean forward.

    Empty for families without segment-anything's ViT (MobileSAM's TinyViT, SAM 2's Hiera).
    """
    return get_family(family).vit_classes()


def state_fingerprint(state: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Family and encoder size of a state dict, read from its key names and shapes.

    Each family recognises only its own state dicts; None when no family does.
    """
    for fam in FAMILIES.values():
        try:
            found = fam.state_fingerprint(state)
        except (KeyError, ValueError, AttributeError, IndexError, TypeError):
            found = None
        if found is not None:
            return found
    return None


def tiny_models() -> dict[str, tuple[str, dict[str, Any]]]:
    """``{model type: (family, config)}`` of every family's tiny test models."""
    return {t.model_type: (fam.name, t.config) for fam in FAMILIES.values() for t in fam.tiny}


def _discover() -> dict[str, Family]:
    """The ``FAMILY`` record of every module of this package, by family name."""
    found: dict[str, Family] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):  # a family module's helper, imported by that module
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        fam = getattr(module, "FAMILY", None)
        if isinstance(fam, Family):
            found[fam.name] = fam
    return found


#: Every family, by name. Filled last: the family modules import the names above.
FAMILIES: dict[str, Family] = _discover()

__all__ = [
    "FAMILIES",
    "Family",
    "TinyModel",
    "build_model",
    "family_available",
    "get_family",
    "install_hint",
    "make_predictor",
    "missing_modules",
    "quiet_imports",
    "require_family",
    "state_fingerprint",
    "tiny_models",
    "vit_classes",
]

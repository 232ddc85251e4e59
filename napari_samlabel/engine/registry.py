"""The models the engine knows: architecture, official checkpoint URL and SHA-256.

Each :class:`ModelSpec` can build its empty architecture (segment-anything's own
``_build_sam`` with that model's configuration); weights are loaded separately, by
:func:`napari_samlabel.engine.checkpoint.load_sam`, so that every checkpoint goes through
the same checks (``weights_only=True``, strict key and shape match).

torch and segment_anything are imported only when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_samlabel.engine.testing import TINY_CONFIG, TINY_MODEL_TYPE

_SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class ModelSpec:
    """One model type.

    Attributes
    ----------
    name : str
        Model type as the user types it (``"vit_b"``).
    config : dict
        Keyword arguments of ``segment_anything.build_sam._build_sam`` (encoder size).
    url : str or None
        Official download URL of the checkpoint; None when the model can only be loaded
        from a local file.
    sha256 : str or None
        SHA-256 of the official checkpoint (hex); None when there is no official file.
    filename : str or None
        File name of the checkpoint in the cache directory.
    description : str
        One line for model listings.
    for_tests : bool
        True for models that exist only for tests (random weights).
    """

    name: str
    config: dict[str, Any] = field(repr=False)
    url: str | None
    sha256: str | None
    filename: str | None
    description: str
    for_tests: bool = False

    def build(self) -> Any:
        """Build the empty (random-weight) ``segment_anything.modeling.Sam`` in eval mode."""
        from segment_anything.build_sam import _build_sam

        return _build_sam(checkpoint=None, **self.config).eval()


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="vit_b",
            config={
                "encoder_embed_dim": 768,
                "encoder_depth": 12,
                "encoder_num_heads": 12,
                "encoder_global_attn_indexes": [2, 5, 8, 11],
            },
            url=_SAM_BASE_URL + "sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            filename="sam_vit_b_01ec64.pth",
            description="SAM ViT-B (375 MB): fastest official SAM, the default",
        ),
        ModelSpec(
            name="vit_l",
            config={
                "encoder_embed_dim": 1024,
                "encoder_depth": 24,
                "encoder_num_heads": 16,
                "encoder_global_attn_indexes": [5, 11, 17, 23],
            },
            url=_SAM_BASE_URL + "sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            filename="sam_vit_l_0b3195.pth",
            description="SAM ViT-L (1.2 GB): about 2.5x slower than ViT-B",
        ),
        ModelSpec(
            name="vit_h",
            config={
                "encoder_embed_dim": 1280,
                "encoder_depth": 32,
                "encoder_num_heads": 16,
                "encoder_global_attn_indexes": [7, 15, 23, 31],
            },
            url=_SAM_BASE_URL + "sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            filename="sam_vit_h_4b8939.pth",
            description="SAM ViT-H (2.6 GB): the paper's model, slowest",
        ),
        ModelSpec(
            name=TINY_MODEL_TYPE,
            config=dict(TINY_CONFIG),
            url=None,
            sha256=None,
            filename=None,
            description=(
                "FOR TESTS ONLY: tiny random-weight SAM, meaningless masks; "
                "load from a local file made by napari_samlabel.engine.testing"
            ),
            for_tests=True,
        ),
    )
}

DEFAULT_MODEL = "vit_b"


def model_names(include_tests: bool = True) -> list[str]:
    """Names of the registered model types (official ones first)."""
    return [n for n, s in _MODELS.items() if include_tests or not s.for_tests]


def get_model_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of model type ``name``.

    Raises
    ------
    KeyError
        If ``name`` is not registered; the message lists the known types.
    """
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(model_names())
        raise KeyError(f"unknown model type {name!r}; known model types: {known}") from None

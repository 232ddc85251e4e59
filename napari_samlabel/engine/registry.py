"""The models the engine knows: family, architecture, official checkpoint URL and checksum.

This module lists specs only. Each :class:`ModelSpec` names its family, whose module
(:mod:`napari_samlabel.engine.families`) builds the empty architecture; weights are loaded
separately, by :func:`napari_samlabel.engine.checkpoint.load_model`, so that every
checkpoint goes through the same checks (``weights_only=True``, strict key and shape match).

Families other than SAM are optional extras (``pip install "napari-samlabel[sam2]"``,
``[mobilesam]``, ``[hq]``, or ``[models]`` for all); asking for a model whose package is
missing raises :class:`~napari_samlabel.engine.errors.ModelUnavailableError` with the
install command. The tiny random-weight test models (``*_test``, FOR TESTS ONLY) are the
families' own :attr:`~napari_samlabel.engine.families.Family.tiny` configurations, listed
after the official models. torch and the model packages are imported only when a model is built.

Checksums: the SHA-256 sums are the published ones, each confirmed by at least two
independent public sources (Meta's and MobileSAM's release files, micro-sam's registry,
model hubs). For SAM-HQ ViT-B and ViT-L no SHA-256 is published anywhere we could find;
their downloads are verified against the MD5 sums that IOPaint checks for the same files.
Either way ``model_id`` uses the SHA-256 of the file on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_samlabel.engine.families import FAMILIES, TinyModel

_SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_HQ_BASE_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"


@dataclass(frozen=True)
class ModelSpec:
    """One model type.

    Attributes
    ----------
    name : str
        Model type as the user types it (``"vit_b"``).
    config : dict
        Keyword arguments of the family's builder (encoder size and the like).
    url : str or None
        Official download URL of the checkpoint; None when the model can only be loaded
        from a local file.
    sha256 : str or None
        SHA-256 of the official checkpoint (hex); None when none is published.
    filename : str or None
        File name of the checkpoint in the cache directory.
    description : str
        One line for model listings.
    for_tests : bool
        True for models that exist only for tests (random weights).
    family : str
        ``"sam"``, ``"mobile_sam"``, ``"sam_hq"`` or ``"sam2"`` (see
        :mod:`napari_samlabel.engine.families`).
    md5 : str or None
        MD5 of the official checkpoint, used to verify downloads only when no SHA-256 is
        published.
    aliases : tuple of str
        Other names accepted for this model type.
    cpu_encode_s : float or None
        Measured seconds per image embedding on two CPU cores with a bfloat16 encoder (CPUs
        with native bfloat16), for the model picker; from ``benchmarks/bench_models.py``
        (SAM 3: ``benchmarks/bench_sam3.py``), 2026-12-07.
    cpu_encode_other_s : dict
        The same for the other precisions a CPU runs (``"int8"``: CPUs with VNNI and no
        bfloat16, measured with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``; ``"float32"``);
        :meth:`cpu_seconds` picks the figure for a precision.
    int8 : bool
        Whether the encoder runs int8 linears on CPUs with VNNI (False: TinyViT, which they
        made slower; it stays float32 there, see ``SamEngine._int8_pays``).
    hub_repo : str or None
        Hugging Face hub repository whose snapshot is the checkpoint (a ``save_pretrained``
        folder, SAM 3); resolved from the hub cache or downloaded with the user's token
        instead of ``url`` (see :func:`napari_samlabel.engine.checkpoint.resolve_checkpoint`).
    """

    name: str
    config: dict[str, Any] = field(repr=False)
    url: str | None
    sha256: str | None
    filename: str | None
    description: str
    for_tests: bool = False
    family: str = "sam"
    md5: str | None = None
    aliases: tuple[str, ...] = ()
    cpu_encode_s: float | None = None
    hub_repo: str | None = None
    cpu_encode_other_s: dict[str, float] = field(default_factory=dict, repr=False)
    int8: bool = True

    def cpu_seconds(self, precision: str) -> float | None:
        """Measured seconds per image on two CPU cores at ``precision``, None if unmeasured."""
        if precision == "bfloat16":
            return self.cpu_encode_s
        return self.cpu_encode_other_s.get(precision)

    @property
    def known_hash(self) -> str | None:
        """The download checksum as pooch spells it (``"sha256:..."``/``"md5:..."``)."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None

    @property
    def downloadable(self) -> bool:
        """True when the official file can be downloaded and verified."""
        return bool(self.url and self.filename and self.known_hash)

    def build(self) -> Any:
        """Build the empty (random-weight) model in eval mode.

        Raises
        ------
        napari_samlabel.engine.errors.ModelUnavailableError
            If the family's optional package is not installed.
        """
        from napari_samlabel.engine.families import build_model

        return build_model(self.family, self.config, self.name)


def _sam_vit(width: int, depth: int, heads: int, globals_: list[int]) -> dict[str, Any]:
    return {"encoder_embed_dim": width, "encoder_depth": depth, "encoder_num_heads": heads,
            "encoder_global_attn_indexes": globals_}


_VIT_B = _sam_vit(768, 12, 12, [2, 5, 8, 11])
_VIT_L = _sam_vit(1024, 24, 16, [5, 11, 17, 23])
_VIT_H = _sam_vit(1280, 32, 16, [7, 15, 23, 31])
# MobileSAM's and Light HQ-SAM's TinyViT-5M (build_sam_vit_t in both packages).
_TINY_VIT = {"embed_dims": [64, 128, 160, 320], "depths": [2, 2, 6, 2],
             "num_heads": [2, 4, 5, 10], "window_sizes": [7, 7, 14, 7], "mlp_ratio": 4.0,
             "mbconv_expand_ratio": 4.0, "decoder_depth": 2, "decoder_mlp_dim": 2048,
             "iou_head_depth": 3, "iou_head_hidden_dim": 256, "mask_in_chans": 16}


#: SAM 3's 1008 x 1008 ViT on two CPU cores, bfloat16 (AMX), from ``benchmarks/bench_sam3.py``
#: (2026-12-07; float32 19.9 s, int8 linears on a CPU without bfloat16 14.3 s).
_SAM3_CPU_ENCODE_S = 6.3


def _sam2(size: str) -> dict[str, Any]:
    return {"config_file": f"configs/sam2.1/sam2.1_hiera_{size}.yaml", "overrides": []}


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="vit_b", cpu_encode_s=1.57,
            cpu_encode_other_s={"int8": 2.75, "float32": 3.88}, config=_VIT_B,
            url=_SAM_BASE_URL + "sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            filename="sam_vit_b_01ec64.pth",
            description="SAM ViT-B (375 MB): fastest official SAM, the default",
        ),
        ModelSpec(
            name="vit_l", cpu_encode_s=3.2,
            cpu_encode_other_s={"int8": 6.73, "float32": 11.82}, config=_VIT_L,
            url=_SAM_BASE_URL + "sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            filename="sam_vit_l_0b3195.pth",
            description="SAM ViT-L (1.2 GB): about 2.5x slower than ViT-B",
        ),
        ModelSpec(
            name="vit_h", cpu_encode_s=4.62,
            cpu_encode_other_s={"int8": 11.07, "float32": 21.60}, config=_VIT_H,
            url=_SAM_BASE_URL + "sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            filename="sam_vit_h_4b8939.pth",
            description="SAM ViT-H (2.6 GB): the paper's model, slowest",
        ),
        ModelSpec(
            name="vit_t", cpu_encode_s=0.55,
            cpu_encode_other_s={"float32": 0.73}, int8=False, family="mobile_sam", config=_TINY_VIT,
            aliases=("mobile_sam",),
            url=_MOBILE_SAM_URL,
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            filename="mobile_sam.pt",
            description="MobileSAM (TinyViT, 39 MB): SAM's decoder on a small encoder, "
                        "made for CPUs and laptops",
        ),
        ModelSpec(
            name="sam_hq_vit_b", cpu_encode_s=1.44,
            cpu_encode_other_s={"int8": 2.82, "float32": 4.14}, family="sam_hq", config=_VIT_B,
            url=_HQ_BASE_URL + "sam_hq_vit_b.pth", sha256=None,
            md5="c6b8953247bcfdc8bb8ef91e36a6cacc", filename="sam_hq_vit_b.pth",
            description="SAM-HQ ViT-B (362 MB): finer boundaries and thin structures; "
                        "one refined mask per prompt",
        ),
        ModelSpec(
            name="sam_hq_vit_l", cpu_encode_s=2.95,
            cpu_encode_other_s={"int8": 6.42, "float32": 11.62}, family="sam_hq", config=_VIT_L,
            url=_HQ_BASE_URL + "sam_hq_vit_l.pth", sha256=None,
            md5="08947267966e4264fb39523eccc33f86", filename="sam_hq_vit_l.pth",
            description="SAM-HQ ViT-L (1.2 GB)",
        ),
        ModelSpec(
            name="sam_hq_vit_h", cpu_encode_s=5.17,
            cpu_encode_other_s={"int8": 11.66, "float32": 21.72}, family="sam_hq", config=_VIT_H,
            url=_HQ_BASE_URL + "sam_hq_vit_h.pth",
            sha256="a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
            filename="sam_hq_vit_h.pth",
            description="SAM-HQ ViT-H (2.4 GB)",
        ),
        ModelSpec(
            name="sam_hq_vit_tiny", cpu_encode_s=0.54,
            cpu_encode_other_s={"float32": 0.62}, int8=False, family="sam_hq",
            config={**_TINY_VIT, "encoder": "tiny_vit"},
            url=_HQ_BASE_URL + "sam_hq_vit_tiny.pth",
            sha256="0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
            filename="sam_hq_vit_tiny.pth",
            description="Light HQ-SAM (TinyViT, 41 MB): SAM-HQ's decoder on MobileSAM's "
                        "encoder",
        ),
        ModelSpec(
            name="sam2.1_hiera_tiny", cpu_encode_s=0.67,
            cpu_encode_other_s={"int8": 1.13, "float32": 1.63}, family="sam2", config=_sam2("t"),
            aliases=("sam2.1_t", "sam2_t"),
            url=_SAM2_BASE_URL + "sam2.1_hiera_tiny.pt",
            sha256="7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
            filename="sam2.1_hiera_tiny.pt",
            description="SAM 2.1 Hiera-T (149 MB): SAM 2 image prediction, smallest",
        ),
        ModelSpec(
            name="sam2.1_hiera_small", cpu_encode_s=0.74,
            cpu_encode_other_s={"int8": 1.36, "float32": 1.76}, family="sam2", config=_sam2("s"),
            aliases=("sam2.1_s", "sam2_s"),
            url=_SAM2_BASE_URL + "sam2.1_hiera_small.pt",
            sha256="6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
            filename="sam2.1_hiera_small.pt",
            description="SAM 2.1 Hiera-S (176 MB)",
        ),
        ModelSpec(
            name="sam2.1_hiera_base_plus", cpu_encode_s=1.16,
            cpu_encode_other_s={"int8": 2.48, "float32": 3.20}, family="sam2", config=_sam2("b+"),
            aliases=("sam2.1_b+", "sam2_b+", "sam2.1_hiera_b+"),
            url=_SAM2_BASE_URL + "sam2.1_hiera_base_plus.pt",
            sha256="a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
            filename="sam2.1_hiera_base_plus.pt",
            description="SAM 2.1 Hiera-B+ (309 MB)",
        ),
        ModelSpec(
            name="sam2.1_hiera_large", cpu_encode_s=2.62,
            cpu_encode_other_s={"int8": 5.25, "float32": 8.36}, family="sam2", config=_sam2("l"),
            aliases=("sam2.1_l", "sam2_l"),
            url=_SAM2_BASE_URL + "sam2.1_hiera_large.pt",
            sha256="2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
            filename="sam2.1_hiera_large.pt",
            description="SAM 2.1 Hiera-L (857 MB): SAM 2's most accurate, slowest",
        ),
        ModelSpec(
            name="sam3", cpu_encode_s=_SAM3_CPU_ENCODE_S, family="sam3", config={},
            cpu_encode_other_s={"int8": 14.3, "float32": 19.9},
            url=None, sha256=None, filename=None, hub_repo="facebook/sam3",
            description="SAM 3 (3.4 GB, gated on the Hugging Face hub): finds every instance "
                        "of a class from its name or one example box; points refine as SAM",
        ),
    )
}


def _tiny_spec(family: str, tiny: TinyModel) -> ModelSpec:
    return ModelSpec(
        name=tiny.model_type, family=family, config=dict(tiny.config), url=None, sha256=None,
        filename=None, for_tests=True,
        description=(
            f"FOR TESTS ONLY: tiny random-weight {family} model, meaningless masks; "
            "load from a local file made by napari_samlabel.testing.models"
        ),
    )


# The tiny test models, family by family in the order the families appear above.
_FAMILY_ORDER = [*dict.fromkeys(s.family for s in _MODELS.values()), *FAMILIES]
_MODELS.update((t.model_type, _tiny_spec(f, t))
               for f in dict.fromkeys(_FAMILY_ORDER) for t in FAMILIES[f].tiny)

_ALIASES: dict[str, str] = {alias: spec.name for spec in _MODELS.values()
                            for alias in spec.aliases}

DEFAULT_MODEL = "vit_b"


def model_names(include_tests: bool = True) -> list[str]:
    """Names of the registered model types (official ones first)."""
    return [n for n, s in _MODELS.items() if include_tests or not s.for_tests]


def canonical_name(name: str) -> str:
    """The registered name of ``name`` (aliases such as ``"mobile_sam"`` -> ``"vit_t"``)."""
    return _ALIASES.get(name, name)


def get_model_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of model type ``name`` (or one of its aliases).

    Raises
    ------
    KeyError
        If ``name`` is not registered; the message lists the known types.
    """
    try:
        return _MODELS[canonical_name(name)]
    except KeyError:
        known = ", ".join(model_names())
        raise KeyError(f"unknown model type {name!r}; known model types: {known}") from None

"""Device and precision choice for the SAM engine.

``choose_device()`` picks CUDA, then Apple's MPS, then the CPU; a name such as ``"cpu"``
or ``"cuda:1"`` overrides it. ``cpu_supports_bf16()`` tells whether this CPU runs bfloat16
matrix products natively (AVX512-BF16 or AMX), which is what makes the fast CPU encoder
worth it (on older CPUs bfloat16 is emulated and slower than float32). ``tune_memory()``
sets up the process's memory for repeated encoder passes (huge pages, freed memory kept).
"""

from __future__ import annotations

import functools
import os
from typing import Any

#: PyTorch's switch for transparent huge pages in its CPU allocator (read once, at the
#: first allocation).
THP_ENV = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> None:
    """Let PyTorch back large CPU tensors with transparent huge pages (unless set already).

    The encoder allocates tensors of up to 400 MB per pass (a global block's attention
    matrix); with 4 KB pages the kernel faults in and zeroes 100 000 pages for each, which
    costs about as much as the matrix product (measured: 160 ms against 28 ms to allocate
    and fill 400 MB with huge pages). Takes effect only before torch allocates its first
    tensor, so the ``samlabel`` command and the plugin call it before importing torch;
    ``THP_MEM_ALLOC_ENABLE=0`` in the environment keeps the 4 KB pages.
    """
    os.environ.setdefault(THP_ENV, "1")


#: Environment variables with which a user sets glibc's malloc trimming and mmap thresholds
#: themselves (then :func:`keep_freed_memory` leaves them alone).
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MB for reuse; True if it did.

    An encoder pass allocates and frees hundreds of MB of activations. By default glibc
    gives most of it back to the kernel (``munmap``, heap trimming), and the next pass
    faults it in again: on a 2-core VM that cost 0.3-1.3 s of system time per ViT-B encode
    (page faults, and TLB shootdowns between the two compute threads), and median encodes
    of 4.5 s instead of 3.7 s. With allocations below 32 MB served from the heap and up to
    1 GB of free heap kept, the process holds on to its peak memory instead. No-op where
    malloc is not glibc's, or when the user tuned it (``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` set).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or any(v in os.environ for v in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (musl has mallopt too)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; 32 MB is the largest mmap threshold glibc accepts.
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def tune_memory() -> None:
    """The memory settings the ``samlabel`` command and the plugin run the encoder with.

    :func:`enable_huge_pages` (only effective before torch allocates its first tensor) and
    :func:`keep_freed_memory`.
    """
    enable_huge_pages()
    keep_freed_memory()


def choose_device(device: str | None = None) -> Any:
    """Return the ``torch.device`` to run on: ``device`` if given, else cuda > mps > cpu.

    Raises
    ------
    ValueError
        If ``device`` is not a valid torch device string or is not available here.
    """
    import torch

    if device is not None and device != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"invalid device {device!r}: {exc}") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device {device!r} requested but MPS is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


#: oneDNN's instruction-set levels, lowest first (``ONEDNN_MAX_CPU_ISA`` caps them).
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
                "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
                "AVX512_CORE_AMX_FP16")


def _isa_allowed(level: str) -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` (unset: everything) lets oneDNN use ``level``.

    The variable makes oneDNN act as an older CPU (the benchmark uses it to measure the
    modes of a CPU without bfloat16 on one that has it); the precision choice follows it.
    """
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    cap = cap.strip().upper()
    if not cap or cap in ("ALL", "DEFAULT") or cap not in _ONEDNN_ISAS:
        return True
    return _ONEDNN_ISAS.index(level) <= _ONEDNN_ISAS.index(cap)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _torch_capability() -> str:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability()).upper()
    except (ImportError, AttributeError):
        return ""


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX).

    Read from ``/proc/cpuinfo`` flags where available (Linux); elsewhere torch's
    ``cpu capability`` is used (``AVX512`` alone does not imply BF16, so it answers False).
    False when ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below AVX512-BF16.
    """
    if not _isa_allowed("AVX512_CORE_BF16"):
        return False
    flags = _cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return "AMX" in _torch_capability()


def cpu_supports_vnni() -> bool:
    """True when the CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI).

    With them oneDNN's int8 matrix products run about three times as fast as float32 ones;
    without them (plain AVX2) int8 gains nothing (measured: ``benchmarks/README.md``).
    Honours ``ONEDNN_MAX_CPU_ISA``. Where there is no ``/proc/cpuinfo``, torch's
    ``cpu capability`` ``AVX512`` is taken as VNNI (every AVX-512 CPU torch ships kernels
    for since Cascade Lake has it), ``AVX2`` as not.
    """
    flags = _cpu_flags()
    if flags:
        return bool(("avx512_vnni" in flags and _isa_allowed("AVX512_CORE_VNNI"))
                    or ("avx_vnni" in flags and _isa_allowed("AVX2_VNNI")))
    return "AVX512" in _torch_capability() and _isa_allowed("AVX512_CORE_VNNI")


#: Environment variable that sets the encoder precision instead of the automatic choice.
PRECISION_ENV = "SAMLABEL_PRECISION"


def expected_cpu_precision() -> str:
    """The encoder precision a CPU engine gets here, without importing torch.

    ``$SAMLABEL_PRECISION`` if set (and not ``auto``), else bfloat16 on CPUs with native
    bfloat16, int8 on CPUs with VNNI, else float32. The engine itself
    (:func:`napari_samlabel.engine.base.fast_precision`) also checks that oneDNN's int8
    linear works; this is what the model picker shows speeds for.
    """
    forced = precision_forced()
    if forced:
        return forced
    if cpu_supports_bf16():
        return "bfloat16"
    return "int8" if cpu_supports_vnni() else "float32"


def precision_forced() -> str | None:
    """The precision ``$SAMLABEL_PRECISION`` asks for (lower case), None if unset or auto."""
    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    return forced if forced and forced != "auto" else None

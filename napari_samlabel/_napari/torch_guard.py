"""Keep triton out of the napari process on machines without CUDA.

torch imports ``triton`` when it is installed (for GPU kernels). triton's ``libtriton.so``
carries its own LLVM; when it is loaded *after* an OpenGL context that uses Mesa (llvmpipe
under Xvfb, and radeonsi/iris on many desktops, which load Mesa's LLVM), the two LLVMs'
static initialisers clash and the process dies with a segmentation fault. The napari window
exists before the model loads, so the GUI hides triton from torch when CUDA is absent:
without CUDA triton has nothing to do (CPU code paths never use it).
"""

from __future__ import annotations

import sys


def keep_triton_out() -> bool:
    """Make ``import triton`` fail in this process unless CUDA is available.

    Returns True when triton was hidden. Does nothing if triton is already imported.
    """
    if "triton" in sys.modules:
        return False
    import torch

    if torch.cuda.is_available():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # import raises ImportError
    return True

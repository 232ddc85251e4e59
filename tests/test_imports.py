"""Import hygiene: the package imports fast, and the core never pulls in a GUI or torch."""

import subprocess
import sys

CORE = [
    "napari_samlabel",
    "napari_samlabel.core.prompts",
    "napari_samlabel.core.classes",
    "napari_samlabel.core.coords",
    "napari_samlabel.engine.protocol",
    "napari_samlabel.cli",
]


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


def test_package_import_does_not_load_torch_or_qt():
    for module in CORE:
        loaded = _modules_after_import(module)
        heavy = {m for m in ("torch", "segment_anything", "napari", "qtpy", "PyQt5", "PyQt6")
                 if m in loaded}
        assert not heavy, f"importing {module} loaded {sorted(heavy)}"

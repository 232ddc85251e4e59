"""The bundled sample images (``napari_samlabel/resources``) and their project, to try things.

The annotator opens them when no folder is given (``samlabel annotate`` without FOLDER, the
dock widget's *Sample images*); napari's own sample-data menu reads them through
:mod:`napari_samlabel._napari.samples`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.project import Project

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SAMPLES: tuple[tuple[str, str], ...] = (
    ("chelsea", "Cat (Chelsea)"),
    ("coffee", "Coffee cup"),
    ("astronaut", "Astronaut"),
)


def sample_paths() -> list[Path]:
    """Paths of the bundled sample images."""
    return [RESOURCES / f"{name}.jpg" for name, _ in SAMPLES]


def sample_project_dir() -> Path:
    """Where the sample images' project lives: the user data folder, not the package.

    The folder name includes a hash of the package location, so a reinstall elsewhere starts
    a fresh sample project instead of one whose image paths no longer resolve.
    """
    from platformdirs import user_data_dir

    tag = hashlib.sha256(str(RESOURCES).encode()).hexdigest()[:10]
    return Path(user_data_dir("napari-samlabel")) / f"sample-project-{tag}"


def sample_project(classes: ClassTable | None = None) -> Project:
    """Open (or create) the project over the bundled sample images."""
    from napari_samlabel.io.project import Project

    folder = sample_project_dir()
    if Project.is_project(folder):
        return Project.open(folder)
    return Project.create(folder, sample_paths(), classes)

"""napari's sample-data menu entries for the bundled images.

The images and their project are :mod:`napari_samlabel.annotate.samples`'.
"""

from __future__ import annotations

from typing import Any

from napari_samlabel.annotate.samples import RESOURCES


def _layer(name: str) -> list[tuple[Any, dict[str, Any], str]]:
    from napari_samlabel.io.images import load_image

    return [(load_image(RESOURCES / f"{name}.jpg"), {"name": name, "rgb": True}, "image")]


def chelsea() -> list[tuple[Any, dict[str, Any], str]]:
    """Sample data for napari: the cat."""
    return _layer("chelsea")


def coffee() -> list[tuple[Any, dict[str, Any], str]]:
    """Sample data for napari: the coffee cup."""
    return _layer("coffee")


def astronaut() -> list[tuple[Any, dict[str, Any], str]]:
    """Sample data for napari: the astronaut."""
    return _layer("astronaut")

"""Shared helpers of the project tests: masks, accepting an object, a saved document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import OBJECTS_FILE, ProjectError

H, W = 48, 64


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def accept(doc: AnnotationDocument, mask: np.ndarray, class_id: int = 1, score: float = 0.9,
           prompts=None) -> AnnotatedObject:
    doc.set_current_class(class_id)
    doc.set_prompts(prompts or [Point((float(mask.nonzero()[0][0]), float(mask.nonzero()[1][0])))])
    doc.set_prediction(doc.current.prompts, mask, score, np.zeros((256, 256), np.float32), "tiny")
    obj = doc.accept(signals={"stability": 0.5})
    assert obj is not None
    return obj


def files(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def saved_project(project: Project) -> Path:
    doc = project.load_document("a")
    accept(doc, rect(0, 10, 0, 10), 2)
    accept(doc, rect(20, 30, 20, 30), 1)
    project.save_document(doc)
    return project.annotation_dir("a") / OBJECTS_FILE


def assert_edit_refused(project: Project, path: Path, edit, match: str) -> None:
    """Edit the objects file at ``path``; loading must fail naming the file and ``match``."""
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match=match) as info:
        project.load_document("a")
    assert str(path) in str(info.value)

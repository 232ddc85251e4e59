"""A folder of images as a project (io.folder)."""

from __future__ import annotations

import pytest

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.io.folder import project_for_folder


def test_class_list_may_extend_a_project_but_not_rename(image_folder):
    project_for_folder(image_folder, ClassTable(("cat", "dog")))
    extended = project_for_folder(image_folder, ClassTable(("cat", "dog", "dog/head")))
    assert extended.classes.names == ("background", "cat", "dog", "dog/head")
    with pytest.raises(ValueError, match="does not extend"):
        project_for_folder(image_folder, ClassTable(("dog", "cat")))

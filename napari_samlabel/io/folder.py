"""A folder of images as a project: the project files live in the image folder itself.

This is how ``samlabel annotate FOLDER`` and the dock widget's *Open image folder* treat a
folder: the first time it becomes a project (:meth:`napari_samlabel.io.project.Project.
create`), later it is reopened, so annotating resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.io.project import Project


def project_for_folder(folder: str | Path, classes: ClassTable | None = None) -> Project:
    """Open the project in ``folder``, or make ``folder`` (a folder of images) a project.

    The project files live in the image folder itself, so reopening the folder resumes.
    ``classes`` may extend an existing project's class list (new names are appended); a
    list that renames or reorders existing classes is refused, because saved objects refer
    to classes by index.

    Raises
    ------
    ValueError
        If ``classes`` conflicts with the project's classes (both lists named).
    """
    folder = Path(folder)
    if not Project.is_project(folder):
        return Project.create(folder, folder, classes)
    project = Project.open(folder)
    if classes is not None and classes.names != project.classes.names:
        have = project.classes.names
        if classes.names[:len(have)] != have:
            raise ValueError(
                f"project {folder} has the classes {', '.join(have[1:])}; the given list "
                f"({', '.join(classes.names[1:])}) does not extend it. Saved objects refer to "
                "classes by index, so existing classes cannot be renamed or reordered.")
        for name in classes.names[len(have):]:
            project.add_class(name)
    return project

"""Child process for the kill test: annotates a folder headlessly until it is killed.

Usage: ``python _annotate_child.py FOLDER``. After every accept (which autosaves) it prints
``ACCEPTED <image id> <object id> <sha1 of the mask>`` and flushes, so the parent knows what
was accepted before it sent SIGKILL.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.testing.fakes import DiskEngine


def main(folder: str) -> None:
    session = session_for_project(project_for_folder(folder), engine=DiskEngine(radius=3))
    rng = np.random.default_rng(0)
    index = 0
    while True:  # until killed
        session.open_image(index % len(session))
        h, w = session.doc.shape
        for _ in range(6):
            session.select_class(int(rng.integers(1, 21)))
            session.set_prompts([Point((float(rng.integers(0, h)), float(rng.integers(0, w))))])
            obj = session.accept()
            digest = hashlib.sha1(np.packbits(obj.mask).tobytes()).hexdigest()
            print(f"ACCEPTED {session.image_id()} {obj.object_id} {digest}", flush=True)
        session.set_status("done")
        index += 1


if __name__ == "__main__":
    main(sys.argv[1])

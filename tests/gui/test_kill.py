"""SIGKILL an annotating process: no accepted object may be lost or corrupted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from napari_samlabel.io.project import Project

CHILD = Path(__file__).with_name("_annotate_child.py")


def test_sigkill_loses_no_accepted_object(image_folder):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(image_folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    accepted = []
    try:
        for line in proc.stdout:
            if line.startswith("ACCEPTED"):
                accepted.append(line.split()[1:])
            if len(accepted) >= 14:  # mid-way through the third image
                break
    finally:
        proc.send_signal(signal.SIGKILL)  # while it keeps accepting and writing
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert len(accepted) >= 14

    project = Project.open(image_folder)   # every file still parses
    stored = {}
    for iid in project.image_ids:
        for obj in project.read_objects(iid):
            digest = hashlib.sha1(np.packbits(obj.mask).tobytes()).hexdigest()
            stored[(iid, str(obj.object_id))] = digest
    for iid, oid, digest in accepted:
        assert stored.get((iid, oid)) == digest, f"accepted object {iid}/{oid} was lost"
    # The first two images were finished before the kill and say so.
    assert [project.status(i).value for i in project.image_ids[:2]] == ["done", "done"]

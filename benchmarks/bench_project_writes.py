"""Cost of the concurrency-safe project writes against the old plain write.

A project of N images (default 5000). Three ways to change one image's status, each timed
over R changes (default 20) in one run:

- **old**: what a status change cost before the merge-on-write (issue 15): build the JSON of
  every image and write it atomically;
- **lone writer**: ``Project.set_status`` when no other session wrote the file since (the
  lock, a stat, the write);
- **merge**: ``Project.set_status`` after another session wrote the file (the lock, a
  re-read and validation of the whole file, the merge, the write).

And one per-image save (``save_document`` with one object): the compare-and-swap under the
image's lock against the same save without it is not separable, so it prints the time only.

Run::

    .venv/bin/python benchmarks/bench_project_writes.py [--images 5000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import (
    PROJECT_FILE,
    PROJECT_FORMAT,
    SCHEMA_VERSION,
    ImageEntry,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-project-"))
    entries = [ImageEntry(f"im{k:05d}", f"images/im{k:05d}.jpg", (375, 500))
               for k in range(args.images)]
    seed = Project(folder, ClassTable.voc(), entries)
    seed._base = {}
    seed._write_project_file()
    n = args.repeats

    project = Project.open(folder)
    t0 = time.perf_counter()
    for _ in range(n):
        payload = {"format": PROJECT_FORMAT, "schema_version": SCHEMA_VERSION,
                   "created": project.created, "modified": time.time(),
                   "classes": project.classes.to_list(),
                   "images": [e.to_dict() for e in project]}
        atomic_write_text(folder / PROJECT_FILE, json.dumps(payload, indent=1) + "\n")
    old = (time.perf_counter() - t0) / n

    project = Project.open(folder)
    project.set_status("im00000", ImageStatus.FLAGGED)  # now the file is as it left it
    t0 = time.perf_counter()
    for k in range(n):
        project.set_status(f"im{k:05d}", ImageStatus.DONE)
    lone = (time.perf_counter() - t0) / n

    a, b = Project.open(folder), Project.open(folder)
    t0 = time.perf_counter()
    for k in range(n):
        writer = a if k % 2 else b  # each write follows the other session's
        writer.set_status(f"im{k:05d}", ImageStatus.IN_PROGRESS)
    merge = (time.perf_counter() - t0) / n

    mask = np.zeros((375, 500), bool)
    mask[50:150, 60:200] = True
    t0 = time.perf_counter()
    for k in range(n):
        doc = project.load_document(f"im{k:05d}")
        project.save_document(AnnotationDocument(doc.image_id, doc.shape, [
            AnnotatedObject(1, 1, mask, (), 0.9, "bench")], doc.status))
    save = (time.perf_counter() - t0) / n

    print(f"{args.images} images, {n} changes each (ms per change; ratio to old):")
    print(f"  old plain write      {old * 1e3:7.1f}  1.00")
    print(f"  lone writer          {lone * 1e3:7.1f}  {lone / old:.2f}")
    print(f"  merge after another  {merge * 1e3:7.1f}  {merge / old:.2f}")
    print(f"  per-image save (CAS) {save * 1e3:7.1f}  (load + save of one object)")


if __name__ == "__main__":
    main()

"""Two sessions on one project folder, in two processes: nobody's work is lost (issue 15)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.filelock import FileLock, LockTimeout
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import OBJECTS_FILE, PROJECT_FILE, ImageConflictError
from napari_samlabel.io.project_store import CONFLICTS_DIR
from tests.io.projects import H, W, accept, rect

N_IMAGES = 8


@pytest.fixture()
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(N_IMAGES):
        Image.fromarray(np.full((H, W, 3), 10 * k, np.uint8)).save(folder / f"im{k}.png")
    Project.create(tmp_path / "proj", folder, ["cat", "dog"])
    return tmp_path / "proj"


def _ctx() -> mp.context.BaseContext:
    return mp.get_context("spawn")


def _statuses_writer(folder: str, mine: list[str], reject: str | None, barrier, out) -> None:
    """Open the project, wait for the other writer, then set statuses (and one review)."""
    try:
        project = Project.open(folder)
        barrier.wait(30)
        if reject is not None:
            project.set_review(reject, "rejected", "wrong object")
        for iid in mine:
            doc = project.load_document(iid)
            accept(doc, rect(0, 5, 0, 5))
            doc.set_status(ImageStatus.DONE)
            project.save_document(doc)
        out.put("ok")
    except BaseException as exc:  # reported to the test
        out.put(f"error: {exc!r}")


def _run(target, args_list) -> list[str]:
    ctx = _ctx()
    barrier = ctx.Barrier(len(args_list))
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for args in args_list]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    return results


def test_two_writers_on_different_images_keep_each_others_statuses_and_reviews(shared):
    a = [f"im{k}" for k in range(0, N_IMAGES, 2)]
    b = [f"im{k}" for k in range(1, N_IMAGES, 2)]
    results = _run(_statuses_writer, [(str(shared), a, "im1", ), (str(shared), b, None)])
    assert results == ["ok", "ok"]
    project = Project.open(shared)
    assert [project.status(i) for i in project.image_ids] == [ImageStatus.DONE] * N_IMAGES
    review = project.review("im1")  # set by A on an image B saved: survives B's writes
    assert review is not None and review.decision == "rejected"
    for iid in a + b:
        assert len(project.read_objects(iid)) == 1


def _same_image_writer(folder: str, n: int, offset: int, barrier, out) -> None:
    """Open im0, wait for the other writer, then accept ``n`` objects, saving each."""
    try:
        project = Project.open(folder)
        doc = project.load_document("im0")
        barrier.wait(30)
        conflicts = 0
        for k in range(n):
            accept(doc, rect(offset + 4 * k, offset + 4 * k + 3, 0, 3))
            try:
                project.save_document(doc)
            except ImageConflictError as exc:
                conflicts += 1
                assert exc.copy is not None and (exc.copy / OBJECTS_FILE).is_file()
                assert "another session" in str(exc)
        out.put(f"ok {conflicts}")
    except BaseException as exc:
        out.put(f"error: {exc!r}")


def test_two_writers_on_one_image_lose_no_object(shared):
    results = _run(_same_image_writer, [(str(shared), 3, 0), (str(shared), 1, 30)])
    assert all(r.startswith("ok") for r in results), results  # no FileNotFoundError
    assert sum(int(r.split()[1]) for r in results) >= 1  # the later writer was refused
    project = Project.open(shared)
    on_disk = project.read_objects("im0")
    copies = list((project.annotation_dir("im0") / CONFLICTS_DIR).iterdir())
    assert len(copies) == 1
    copy = json.loads((copies[0] / OBJECTS_FILE).read_text())["objects"]
    # Every accepted object is in the saved version or in the refused writer's copy.
    assert {len(on_disk), len(copy)} == {3, 1}
    for rec in copy:
        assert (copies[0] / rec["mask"]).is_file()


def test_a_stale_save_is_refused_in_process_and_the_copy_keeps_it(shared):
    a, b = Project.open(shared), Project.open(shared)
    doc_a, doc_b = a.load_document("im0"), b.load_document("im0")
    accept(doc_a, rect(0, 5, 0, 5))
    a.save_document(doc_a)
    accept(doc_b, rect(10, 15, 0, 5))
    assert len(b.read_objects("im0")) == 1  # a look (an export) does not hide the conflict
    with pytest.raises(ImageConflictError, match=rf"image im0 .*host {socket.gethostname()}"):
        b.save_document(doc_b)
    assert [o.area for o in Project.open(shared).read_objects("im0")] == [25]
    # Reopening sees the other version, and saving on top of it then works.
    doc_b = b.load_document("im0")
    accept(doc_b, rect(10, 15, 0, 5))
    b.save_document(doc_b)
    assert len(Project.open(shared).read_objects("im0")) == 2


def test_stale_project_copy_does_not_revert_other_sessions_fields(shared):
    a, b = Project.open(shared), Project.open(shared)
    a.set_review("im1", "rejected")
    a.set_split("im2", "val")
    b.set_status("im3", ImageStatus.DONE)  # B's copy knows nothing of A's changes
    b.add_class("bird")
    a.add_class("fish")
    project = Project.open(shared)
    assert project.review("im1").decision == "rejected"
    assert project.split("im2") == "val" and project.status("im3") == ImageStatus.DONE
    assert project.classes.names[-2:] == ("bird", "fish")
    assert a.classes.index("fish") == 4


def test_a_lock_left_by_a_killed_process_is_taken_over(shared):
    lock = shared / (PROJECT_FILE + ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from napari_samlabel.core.filelock import FileLock\n"
         f"FileLock({str(lock)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    assert lock.is_file()
    t0 = time.monotonic()
    Project.open(shared).set_status("im0", ImageStatus.DONE)  # takes the dead pid's lock over
    assert time.monotonic() - t0 < 5
    assert Project.open(shared).status("im0") == ImageStatus.DONE
    assert not lock.exists()


def test_an_old_lock_from_another_host_is_taken_over_and_a_live_one_waited_for(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0, "token": "t"}))
    with pytest.raises(LockTimeout, match=r"thing is locked by another session \(host "
                                          r"elsewhere, pid 1"):
        FileLock(path, timeout=0.2, what="thing").acquire()
    old = time.time() - 1000
    os.utime(path, (old, old))
    with FileLock(path, timeout=0.2):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_a_read_only_project_folder_is_a_write_error_naming_the_file(shared, monkeypatch):
    import errno

    from napari_samlabel.core import filelock
    from napari_samlabel.core.fsutil import WriteError

    project = Project.open(shared)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(filelock.os, "open", read_only)
    with pytest.raises(WriteError, match=r"cannot write .*samlabel-project.json.lock: "
                                         r"Read-only file system; project file .* was not "
                                         "changed"):
        project.set_status("im0", ImageStatus.DONE)

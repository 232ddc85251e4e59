"""``samlabel pseudo-label`` on bad input and a full disk (issue 15 items 3, 5, 6, 9)."""

from __future__ import annotations

import errno
import json

from napari_samlabel.cli import main
from napari_samlabel.core.fsutil import WriteError
from tests.cli.test_cmd_pseudo_label import _args, dataset  # noqa: F401 (fixture)


def test_foreign_files_in_out_voc_are_refused_before_any_work(tmp_path, dataset,  # noqa: F811
                                                              tiny_checkpoint, capsys):
    img_dir, points = dataset
    voc = tmp_path / "out" / "voc"
    voc.mkdir(parents=True)
    (voc / "notes.txt").write_text("mine")
    assert main(_args(tmp_path, img_dir, points, tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert f"output folder {voc} holds files that are not a VOC export (notes.txt)" in err
    assert not (tmp_path / "out" / "scores").exists()  # nothing was labelled


def test_a_full_disk_at_export_still_lists_the_failed_images(tmp_path, dataset,  # noqa: F811
                                                             tiny_checkpoint, capsys,
                                                             monkeypatch):
    img_dir, points = dataset
    records = json.loads(points.read_text())
    records["img0"] = [{"x": 1, "cls": 8}]  # no "y": this image fails
    points.write_text(json.dumps(records))

    def full(*args, **kwargs):
        raise WriteError("cannot write OUT/voc/VOCdevkit/VOC2012/JPEGImages/img1.jpg: No "
                         "space left on device; the export stopped", errno.ENOSPC)

    monkeypatch.setattr("napari_samlabel.pseudo.pipeline.export_voc", full)
    assert main(_args(tmp_path, img_dir, points, tiny_checkpoint)) == 1
    out, err = capsys.readouterr()
    assert "1 labelled" in out and "Traceback" not in err
    assert "1 image(s) failed" in err and "img0: weak labels:" in err
    assert "error: VOC export: cannot write" in err and "No space left" in err


def test_a_bad_weak_label_file_in_a_folder_fails_only_its_image(tmp_path, dataset,  # noqa: F811
                                                               tiny_checkpoint, capsys):
    img_dir, points = dataset
    records = json.loads(points.read_text())
    folder = tmp_path / "weak"
    folder.mkdir()
    (folder / "img0.json").write_text(json.dumps(records["img0"]))
    (folder / "img1.json").write_bytes(b'[{"x": 1, "y": 2, "cls": "caf\xe9"}]')
    assert main(_args(tmp_path, img_dir, folder, tiny_checkpoint)) == 0
    out, err = capsys.readouterr()
    assert "1 labelled" in out and "1 failed" in out
    assert "img1: weak labels:" in err and "img1.json: is not UTF-8 text" in err

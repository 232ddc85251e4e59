"""``samlabel export`` end to end on a small project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from napari_samlabel.cli import main
from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.project import Project
from napari_samlabel.io.voc.labelpng import read_label_png


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    img = data.coffee()[::10, ::10]
    for k in range(5):
        Image.fromarray(img).save(tmp_path / "images" / f"im{k}.jpg")
    proj = Project.create(tmp_path / "proj", tmp_path / "images", ["cup", "table"])
    h, w = img.shape[:2]
    for k, iid in enumerate(proj.image_ids):
        mask = np.zeros((h, w), bool)
        mask[10:30, 10 + k:40 + k] = True
        status = "flagged" if k == 4 else "done"
        proj.save_document(AnnotationDocument(iid, (h, w), [AnnotatedObject(1, 1, mask)],
                                              status))
    return tmp_path / "proj"


def test_export_writes_split_and_band(project: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(project), "--out", str(out), "--split", "0.5", "--seed", "2",
                 "--border", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 train, 2 val, 1 excluded" in printed
    root = out / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    assert (sets / "excluded.txt").read_text().split() == ["im4"]
    assert len((sets / "trainval.txt").read_text().split()) == 4
    cls = read_label_png(root / "SegmentationClass" / "im0.png")
    assert cls[20, 9] == 255 and cls[20, 10] == 255 and cls[20, 11] == 1
    # Same seed, same split.
    assert main(["export", str(project), "--out", str(tmp_path / "again"), "--split", "0.5",
                 "--seed", "2"]) == 0
    again = tmp_path / "again" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert (again / "train.txt").read_text() == (sets / "train.txt").read_text()
    assert main(["export", str(project), "--out", str(tmp_path / "all"), "--include-flagged"]) == 0
    allsets = tmp_path / "all" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert len((allsets / "trainval.txt").read_text().split()) == 5


def test_export_errors_are_one_line(project: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep")
    assert main(["export", str(project), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "samlabel export: error:" in err and "--overwrite" in err
    assert (out / "x").read_text() == "keep"
    assert main(["export", str(project), "--out", str(out), "--overwrite"]) == 2
    assert "not a VOC export (x)" in capsys.readouterr().err
    (out / "x").unlink()
    assert main(["export", str(project), "--out", str(out)]) == 0
    assert main(["export", str(project), "--out", str(out)]) == 2
    assert main(["export", str(project), "--out", str(out), "--overwrite", "--seed", "3"]) == 0
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2
    assert "not a napari-samlabel project" in capsys.readouterr().err
    assert main(["export", str(project), "--out", str(tmp_path / "o3"), "--split", "2"]) == 2
    assert "--split" in capsys.readouterr().err


def test_file_too_large_is_named_and_nothing_written(project: Path, tmp_path: Path):
    # A real EFBIG ("[Errno 27] File too large"): the export runs under a file size limit.
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (800, 800))

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from napari_samlabel.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "export", str(project), "--out", str(out)],
        capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith(f"samlabel export: error: cannot write {out}/VOCdevkit/VOC2012/")
    assert "File too large; the export stopped and nothing was changed" in err
    assert "was not created" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_exclude_list_and_reviews_keep_images_out_of_train(project: Path, tmp_path: Path,
                                                           capsys):
    failures = tmp_path / "failures.txt"
    failures.write_text("im1\n# worst first\nim3 0.93\nnot_in_project\n\n")
    Project.open(project).set_review("im0", "rejected", "wrong object")
    out = tmp_path / "out"
    assert main(["export", str(project), "--out", str(out), "--split", "1.0", "--exclude",
                 str(failures)]) == 0
    printed = capsys.readouterr().out
    assert "1 train, 0 val, 4 excluded (1 rejected, 2 exclude list, 1 flagged)" in printed
    assert "1 ids of --exclude are not images of the project (not_in_project)" in printed
    sets = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert (sets / "train.txt").read_text().split() == ["im2"]
    assert (sets / "excluded.txt").read_text().split() == ["im0", "im1", "im3", "im4"]
    # --include-flagged brings the flagged image back, not the listed or rejected ones.
    assert main(["export", str(project), "--out", str(tmp_path / "o2"), "--split", "1.0",
                 "--exclude", str(failures), "--include-flagged"]) == 0
    sets2 = tmp_path / "o2" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert (sets2 / "train.txt").read_text().split() == ["im2", "im4"]
    assert main(["export", str(project), "--out", str(tmp_path / "o3"), "--exclude",
                 str(tmp_path / "nope.txt")]) == 2
    assert "image list" in (err := capsys.readouterr().err) and "nope.txt not found" in err
    assert not (tmp_path / "o3").exists()


def test_help_says_what_goes_where(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("'rejected' (always)", "--exclude list (always)", "'needs_work'",
                   "--fresh-split", "exactly PX pixels wide", "4-pixel band"):
        assert phrase in text


def test_export_with_the_bundled_part_classes(tmp_path: Path, capsys):
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.voc.annotations import parse_annotation

    classes = ClassTable.from_file(
        Path(__file__).resolve().parents[2] / "napari_samlabel/resources/voc_parts.txt")
    (tmp_path / "images").mkdir()
    img = data.coffee()[::10, ::10]
    Image.fromarray(img).save(tmp_path / "images" / "im0.jpg")
    proj = Project.create(tmp_path / "proj", tmp_path / "images", classes)
    h, w = img.shape[:2]

    def box(r0, r1, c0, c1):
        m = np.zeros((h, w), bool)
        m[r0:r1, c0:c1] = True
        return m

    person, head, lone = (classes.index(n) for n in ("person", "person/head", "car/wheel"))
    proj.save_document(AnnotationDocument("im0", (h, w), [
        AnnotatedObject(1, person, box(5, 40, 5, 30), score=0.5),
        AnnotatedObject(2, head, box(5, 12, 10, 20), score=0.99),
        AnnotatedObject(3, lone, box(30, 38, 40, 50))], "done"))
    out = tmp_path / "out"
    assert main(["export", str(proj.folder), "--out", str(out), "--split", "1"]) == 0
    printed = capsys.readouterr().out
    assert "2 parts in SegmentationPart (1 without a parent object: in the part maps only" \
        in printed
    root = out / "VOCdevkit" / "VOC2012"
    sem = read_label_png(root / "SegmentationClass" / "im0.png")
    assert sem[8, 15] == person  # the head is no hole in the person
    part = read_label_png(root / "SegmentationPart" / "im0.png")
    assert part[8, 15] == head and part[33, 45] == lone and part[30, 10] == 0
    [obj] = parse_annotation(root / "Annotations" / "im0.xml", classes)[1]
    assert [(p.name, p.class_id) for p in obj.parts] == [("head", head)]
    assert "person/head:" in (root / "labelmap.txt").read_text()


def test_export_of_a_folder_with_nothing_to_export_refuses(tmp_path: Path, capsys):
    """Issue 14 item 11: no empty skeleton and exit 0; a message saying why, exit 2."""
    (tmp_path / "images").mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / f"i{k}.png")
    proj = Project.create(tmp_path / "proj", tmp_path / "images", ["cup"])
    assert main(["export", str(proj.folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nothing to export" in err and "3 images have no accepted object" in err
    assert not (tmp_path / "out").exists()


def test_export_default_takes_images_in_progress_and_coco_format(project: Path, tmp_path: Path,
                                                                capsys):
    proj = Project.open(project)
    iid = proj.image_ids[0]
    proj.set_status(iid, "in_progress")
    assert main(["export", str(project), "--out", str(tmp_path / "strict"), "--only-done",
                 "--split", "1"]) == 0
    train = tmp_path / "strict" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert iid not in (train / "train.txt").read_text().split()
    assert main(["export", str(project), "--out", str(tmp_path / "coco"), "--format", "coco",
                 "--split", "1"]) == 0
    assert "annotations" in capsys.readouterr().out
    import json

    data = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert iid in {i["samlabel_id"] for i in data["images"]}
    assert len(data["images"]) == 4 and len(data["annotations"]) == 4
    assert main(["export", str(project), "--out", str(tmp_path / "c2"), "--format", "coco",
                 "--border", "4"]) == 2

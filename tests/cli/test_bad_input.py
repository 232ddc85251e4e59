"""Bad input through the command line: one clear line naming the file, never a traceback.

Issue 15 items 3-9; the table of what the user sees is docs/bad-input.md. Disk-full and
read-only folders are simulated by monkeypatching (as root, chmod does not block writes).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.io.images import ImageReadError, image_size, load_image
from napari_samlabel.io.voc.labelpng import write_label_png
from napari_samlabel.io.weak import WeakLabelError, read_weak_labels

LATIN1 = "caf\xe9\n".encode("latin-1")  # "café" in Latin-1: byte 0xe9 is not UTF-8


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` (a decompression bomb), a few bytes."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def label_dir(folder: Path, ids=("im1",), value: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for iid in ids:
        lab = np.zeros((30, 40), np.uint8)
        lab[5:20, 5:25] = value
        write_label_png(folder / f"{iid}.png", lab)
    return folder


def err_of(capsys) -> str:
    """stderr without progress bars; exactly one error line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    return err


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# -- item 3: text that is not UTF-8 --------------------------------------------------------------
def test_non_utf8_class_list_names_the_file(tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"background\n" + LATIN1)
    label_dir(tmp_path / "gt")
    assert main(["eval", str(tmp_path / "gt"), "--gt", str(tmp_path / "gt"), "--classes",
                 str(classes)]) == 2
    assert f"class list {classes} is not UTF-8 text (byte 0xe9" in err_of(capsys)


def test_non_utf8_project_file_names_the_file(tmp_path, capsys):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "samlabel-project.json").write_bytes(b'{"format": "' + LATIN1 + b'"}')
    assert main(["export", str(proj), "--out", str(tmp_path / "out")]) == 2
    assert f"{proj / 'samlabel-project.json'} is not UTF-8 text" in err_of(capsys)


def test_non_utf8_weak_label_file_fails_only_its_image(tmp_path):
    folder = tmp_path / "points"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps([{"x": 3, "y": 4, "cls": 8}]))
    (folder / "b.json").write_bytes(b'[{"x": 3, "y": 4, "cls": "' + LATIN1 + b'"}]')
    errors: list[WeakLabelError] = []
    got = read_weak_labels(folder, "points", on_error=errors.append)
    assert list(got) == ["a"]
    assert [e.image_id for e in errors] == ["b"]
    assert str(errors[0]).startswith(f"{folder / 'b.json'}: is not UTF-8 text")
    # A single input file that is not UTF-8 is the whole input: one error naming it.
    with pytest.raises(WeakLabelError, match="b.json: is not UTF-8"):
        read_weak_labels(folder / "b.json", "points", on_error=errors.append)


def test_non_utf8_scribbles_name_the_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(LATIN1)
    with pytest.raises(WeakLabelError, match=r"x.txt: is not UTF-8 text \(byte 0xe9 at offset 3"):
        read_weak_labels(path, "scribbles")


# -- item 4: decompression bombs -------------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "simulate-weak"])
def test_a_label_png_bomb_is_one_sentence(tmp_path, capsys, command):
    gt = label_dir(tmp_path / "gt")
    png_header(gt / "im1.png", 40000, 40000)
    pred = label_dir(tmp_path / "pred")
    args = (["eval", str(pred), "--gt", str(gt)] if command == "eval" else
            ["simulate-weak", str(gt), "--kind", "points", "--out", str(tmp_path / "o")])
    assert main(args) == 2
    err = err_of(capsys)
    assert f"label PNG {gt / 'im1.png'} claims 1,600,000,000 pixels, more than" in err
    assert "decompression bomb" in err


def test_import_voc_with_a_label_png_bomb_is_one_sentence(tmp_path, capsys):
    voc = tmp_path / "VOC2012"
    label_dir(voc / "SegmentationClass")
    png_header(voc / "SegmentationClass" / "im1.png", 40000, 40000)
    (voc / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(voc / "JPEGImages" / "im1.jpg")
    assert main(["import-voc", str(voc), "--out", str(tmp_path / "proj")]) == 2
    assert "claims 1,600,000,000 pixels" in err_of(capsys)


def test_a_large_photo_loads_without_pils_warning_and_a_bomb_is_refused(tmp_path,
                                                                          monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS (a 12000x9000 photo) and refuses above twice it;
    # a small limit makes a small image "large" for the test.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)  # 1200 px: warned by PIL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).shape == (30, 40, 3)
        assert image_size(path) == (30, 40)
    big = png_header(tmp_path / "big.png", 50, 50)  # 2500 px > 2 x 1000
    with pytest.raises(ImageReadError,
                       match=r"image .*big.png claims 2,500 pixels, more than the 2,000"):
        image_size(big)


# -- item 5: write errors --------------------------------------------------------------------------
def test_simulate_weak_on_a_full_disk_leaves_nothing(tmp_path, capsys, monkeypatch):
    gt = label_dir(tmp_path / "gt", ids=("a", "b", "c"))
    out = tmp_path / "out"
    from napari_samlabel.evaluate import simulate

    calls = []

    def full_on_second(path, text):
        calls.append(path)
        if len(calls) == 2:
            enospc()
        Path(path).write_text(text)

    monkeypatch.setattr(simulate, "atomic_write_text", full_on_second)
    assert main(["simulate-weak", str(gt), "--kind", "scribbles", "--out", str(out)]) == 2
    err = err_of(capsys)
    assert f"cannot write {out}: No space left on device; nothing was written" in err
    assert list(out.iterdir()) == []  # not even the first image's file, no hidden folder


def test_simulate_weak_into_a_read_only_folder(tmp_path, capsys, monkeypatch):
    gt = label_dir(tmp_path / "gt")
    from napari_samlabel.evaluate import simulate

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(simulate, "make_temp_dir", read_only)
    assert main(["simulate-weak", str(gt), "--kind", "points", "--out",
                 str(tmp_path / "o")]) == 2
    assert "cannot write" in err_of(capsys)


def test_eval_json_on_a_full_disk_is_one_line_after_the_table(tmp_path, capsys,
                                                              monkeypatch):
    gt = label_dir(tmp_path / "gt")
    monkeypatch.setattr("napari_samlabel.core.fsutil.os.replace", enospc)
    out = tmp_path / "scores.json"
    assert main(["eval", str(gt), "--gt", str(gt), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert "mIoU" in captured.out and "Traceback" not in captured.err
    assert f"cannot write {out}: No space left on device" in captured.err
    assert not out.exists() and not list(tmp_path.glob(".scores.json.*"))


def test_embed_refuses_a_read_only_cache(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(img)
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    assert main(["embed", str(img), "--model", "vit_tiny_test", "--checkpoint",
                 str(tiny_checkpoint), "--cache", str(tmp_path / "cache"), "--device",
                 "cpu"]) == 2
    err = err_of(capsys)
    assert "cannot write to the embedding cache" in err and "nothing was encoded" in err
    assert "encoded," not in capsys.readouterr().out


def test_embed_counts_embeddings_the_full_cache_did_not_keep(tmp_path, capsys, monkeypatch,
                                                             tiny_checkpoint):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(img)
    monkeypatch.setattr("napari_samlabel.engine.cache.atomic_save", enospc)
    assert main(["embed", str(img), "--model", "vit_tiny_test", "--checkpoint",
                 str(tiny_checkpoint), "--cache", str(tmp_path / "cache"), "--device",
                 "cpu"]) == 1
    captured = capsys.readouterr()
    assert "0 encoded" in captured.out and "1 NOT cached" in captured.out
    assert "not cached:" in captured.err and "No space left" in captured.err


def test_refine_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    images, coarse = tmp_path / "images", tmp_path / "coarse"
    images.mkdir()
    Image.fromarray(np.full((30, 40, 3), 80, np.uint8)).save(images / "a.png")
    label_dir(coarse, ids=("a",))
    monkeypatch.setattr("napari_samlabel.core.fsutil.os.replace", enospc)
    monkeypatch.setattr("napari_samlabel.io.voc.writer.os.replace", enospc)
    assert main(["refine", str(images), "--method", "slic", "--coarse",
                 str(coarse), "--out", str(tmp_path / "out"), "--n-segments", "10"]) == 2
    err = err_of(capsys)
    assert "No space left on device" in err and "nothing was changed" in err
    assert not (tmp_path / "out").exists()


def test_replay_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    from tests.cli.test_cmd_replay import _project

    proj = _project(tmp_path)
    monkeypatch.setattr("napari_samlabel.core.fsutil.os.replace", enospc)
    rc = main(["replay", str(proj.folder), "--model", "vit_tiny_test", "--checkpoint",
               str(tiny_checkpoint), "--device", "cpu", "--cache", str(tmp_path / "cache"),
               "--out", str(tmp_path / "new")])
    assert rc == 2
    err = err_of(capsys)
    assert "samlabel-project.json: No space left on device" in err


# -- item 6: overwriting without asking ------------------------------------------------------------
def test_simulate_weak_refuses_to_replace_points_json(tmp_path, capsys):
    gt = label_dir(tmp_path / "gt")
    out = tmp_path / "o"
    out.mkdir()
    (out / "points.json").write_text("{}")  # the user's file
    assert main(["simulate-weak", str(gt), "--kind", "points", "--out", str(out)]) == 2
    assert f"{out / 'points.json'} exists; pass --overwrite" in err_of(capsys)
    assert (out / "points.json").read_text() == "{}"
    assert main(["simulate-weak", str(gt), "--kind", "points", "--out", str(out),
                 "--overwrite"]) == 0
    assert "im1" in json.loads((out / "points.json").read_text())


def test_curate_refuses_to_replace_report_html(tmp_path, capsys):
    gt = label_dir(tmp_path / "gt")
    out = tmp_path / "review"
    out.mkdir()
    (out / "report.html").write_text("mine")
    assert main(["curate", str(gt), "--out", str(out)]) == 2
    assert f"{out / 'report.html'} exists; pass --overwrite" in err_of(capsys)
    assert (out / "report.html").read_text() == "mine"


# -- item 7: messages that pointed the wrong way ---------------------------------------------------
def test_eval_blames_the_ground_truth_for_its_own_bad_value(tmp_path, capsys):
    gt = label_dir(tmp_path / "gt", value=99)
    pred = label_dir(tmp_path / "pred")
    assert main(["eval", str(pred), "--gt", str(gt)]) == 2
    assert f"{gt / 'im1.png'}: ground truth has values [99]" in err_of(capsys)


@pytest.mark.parametrize("content, message", [
    ({"fg_points": [[1, 2]], "bg_points": []}, "look like the fields of one image"),
    ([], "the file holds an empty list: no points"),
])
def test_points_layouts_that_are_not_datasets_are_refused(tmp_path, content, message):
    path = tmp_path / "emptylist.json"
    path.write_text(json.dumps(content))
    with pytest.raises(WeakLabelError, match=message):
        read_weak_labels(path, "points", on_error=lambda e: None)


def test_an_image_without_points_is_skipped_and_said(tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"a": [{"x": 1, "y": 2, "cls": 8}], "b": []}))
    errors: list[WeakLabelError] = []
    assert list(read_weak_labels(path, "points", on_error=errors.append)) == ["a"]
    assert [(e.image_id, e.problem) for e in errors] == [
        ("b", "the image has no points; it is skipped")]


def test_billion_laughs_is_a_sentence(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                    '<!ENTITY lol2 "&lol;&lol;">]><annotation>&lol2;</annotation>')
    with pytest.raises(WeakLabelError) as info:
        read_weak_labels(path, "boxes")
    assert "declares entities" in str(info.value) and "EntitiesForbidden(" not in str(info.value)


def test_import_voc_names_a_symlink_loop(tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert main(["import-voc", str(loop), "--out", str(tmp_path / "proj")]) == 2
    assert "is a symbolic link loop" in err_of(capsys)


# -- item 8: leftovers of a killed export ----------------------------------------------------------
def test_leftovers_of_a_killed_export_are_removed_by_the_next(tmp_path):
    import socket

    from napari_samlabel.io.voc.writer import VocWriter

    out = tmp_path / "out"
    host = socket.gethostname()
    killed = [tmp_path / f".out.{2**22 + 17}@{host}.abc123.voc-tmp",
              tmp_path / f".out.{2**22 + 17}@{host}.def456.old"]
    old_style = tmp_path / ".out.zz9x.voc-tmp"
    live = tmp_path / f".out.{os.getppid()}@{host}.ghi789.voc-tmp"  # a live process
    for d in (*killed, old_style, live):
        (d / "VOCdevkit").mkdir(parents=True)
    os.utime(old_style, (1, 1))
    with VocWriter(out, ["cat"]) as writer:
        writer.add("a", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    assert not any(d.exists() for d in (*killed, old_style))
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


# -- item 9: one id-renaming rule ------------------------------------------------------------
def test_pseudo_label_export_renames_ids_like_export(tmp_path):
    from napari_samlabel.io.voc import voc_id
    from napari_samlabel.pseudo.pipeline import export_voc
    from napari_samlabel.pseudo.store import ResultStore

    assert voc_id("été 2 .x") == "_t__2_.x" and voc_id(".hidden") == "_hidden"
    out = tmp_path / "run"
    store = ResultStore(out)
    images = {}
    for iid in ("a b", "a_b", "ok"):
        img = tmp_path / f"{iid}.png"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
        images[iid] = img
        sem = np.zeros((8, 8), np.uint8)
        sem[2:5, 2:5] = 1
        store.write(iid, sem, (sem > 0).astype(np.uint8), {"unit": "object"})
    root, errors = export_voc(out, images, ClassTable(("background", "cat")))
    written = sorted(p.stem for p in (root / "SegmentationClass").iterdir())
    assert written == ["a_b", "ok"]
    assert list(errors) == ["a_b"] and "both become 'a_b'" in errors["a_b"]

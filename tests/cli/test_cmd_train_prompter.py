"""``samlabel train-prompter`` with the tiny random-weight SAM on a small synthetic VOC tree."""

from __future__ import annotations

import pytest

from napari_samlabel.cli import main
from tests.learn._synthetic import write_voc

pytest.importorskip("torch")


def _args(tmp_path, voc, ckpt, *extra):
    return ["train-prompter", str(voc), "--out", str(tmp_path / "p"), "--model",
            "vit_tiny_test", "--checkpoint", str(ckpt), "--cache", str(tmp_path / "cache"),
            "--device", "cpu", "--layers", "1", "--width", "32", "--queries", "4", *extra]


def test_train_prompter_trains_and_resumes(tmp_path, tiny_checkpoint, capsys):
    from napari_samlabel.learn.prompter import load_prompter

    voc = write_voc(tmp_path / "data", 5, size=32)
    assert main(_args(tmp_path, voc, tiny_checkpoint, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "epoch 1: loss" in out and "best epoch 1" in out
    _, info = load_prompter(tmp_path / "p" / "prompter.pt")
    assert info.classes.names[1:] == ("red_square", "green_disc", "blue_bar")
    assert info.model_id.startswith("vit_tiny_test:") and info.config.queries == 4
    # More epochs: continues after epoch 1 instead of starting over.
    assert main(_args(tmp_path, voc, tiny_checkpoint, "--epochs", "2")) == 0
    captured = capsys.readouterr()
    assert "resuming after epoch 1" in captured.err
    assert "epoch 2: loss" in captured.out and "epoch 1: loss" not in captured.out


def test_train_prompter_bad_source_is_one_line(tmp_path, tiny_checkpoint, capsys):
    assert main(_args(tmp_path, tmp_path / "nope", tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert "training source not found" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    (empty / "JPEGImages").mkdir(parents=True)
    assert main(_args(tmp_path, empty, tiny_checkpoint)) == 2
    assert "no Annotations folder" in capsys.readouterr().err

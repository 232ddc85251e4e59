"""``samlabel propose``: a prompter's proposals as a pseudo-label folder that curation reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_samlabel.cli import main

torch = pytest.importorskip("torch")


def _prompter(path, engine):
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.learn.prompter import Prompter, PrompterInfo, config_for, save_prompter

    torch.manual_seed(0)
    cfg = config_for(engine, 2, d_model=32, heads=4, encoder_layers=1, decoder_layers=1,
                     feedforward=64, queries=3)
    table = ClassTable(("background", "dog", "dog/head"))
    return save_prompter(path, Prompter(cfg), PrompterInfo(cfg, table, engine.model_id))


def _args(tmp_path, images, prompter, ckpt, *extra):
    return ["propose", str(images), "--prompter", str(prompter), "--out", str(tmp_path / "out"),
            "--model", "vit_tiny_test", "--checkpoint", str(ckpt), "--cache",
            str(tmp_path / "cache"), "--device", "cpu", *extra]


def test_propose_writes_scored_pseudo_labels(tmp_path, tiny_engine, tiny_checkpoint, capsys):
    from PIL import Image

    from napari_samlabel.curate.sources import PseudoSource, open_source

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            images / f"{name}.png")
    prompter = _prompter(tmp_path / "p.pt", tiny_engine)
    assert main(_args(tmp_path, images, prompter, tiny_checkpoint, "--min-score", "0")) == 0
    out = capsys.readouterr().out
    assert "2 images proposed" in out and "samlabel curate" in out
    rec = json.loads((tmp_path / "out" / "scores" / "a.json").read_text())
    assert rec["kind"] == "prompter" and rec["objects"]
    assert all(o["source"] == "prompter" and 0 <= o["score"] <= 1 for o in rec["objects"])
    voc = tmp_path / "out" / "voc" / "VOCdevkit" / "VOC2012"
    assert (voc / "SegmentationClass" / "a.png").is_file()
    source = open_source(tmp_path / "out")
    assert isinstance(source, PseudoSource)
    item = next(iter(source.items()))
    assert not isinstance(item, tuple) and item.objects
    assert {o.score for o in item.objects} <= {o["score"] for o in rec["objects"]}
    # A rerun skips the finished images.
    assert main(_args(tmp_path, images, prompter, tiny_checkpoint, "--min-score", "0")) == 0
    assert "2 already done" in capsys.readouterr().out


def test_propose_refuses_a_prompter_of_another_sam(tmp_path, tiny_engine, capsys):
    from napari_samlabel.testing.models import save_tiny_checkpoint

    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "a.png")
    prompter = _prompter(tmp_path / "p.pt", tiny_engine)
    other = save_tiny_checkpoint(tmp_path / "other.pt", seed=1)
    assert main(_args(tmp_path, images, prompter, other)) == 2
    err = capsys.readouterr().err
    assert "trained against SAM" in err and "Traceback" not in err
    assert main(_args(tmp_path, images, tmp_path / "missing.pt", other)) == 2
    assert "prompter file not found" in capsys.readouterr().err

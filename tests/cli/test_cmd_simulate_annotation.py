"""``samlabel simulate-annotation`` with the tiny random-weight SAM, end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.io.voc.labelpng import write_label_png


def _voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (voc / d).mkdir(parents=True)
    for n, image_id in enumerate(("x1",)):
        img = np.full((48, 64, 3), 30 + n, np.uint8)
        inst = np.zeros((48, 64), np.uint8)
        inst[8:24, 10:40] = 1
        inst[30:44, 44:60] = 2
        inst[30:33, 44:60] = 255  # a void band
        sem = np.where(inst == 1, 15, np.where(inst == 2, 12, 0)).astype(np.uint8)
        sem[inst == 255] = 255
        img[inst == 1] = (200, 180, 40)
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg")
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", sem)
        write_label_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
    return root


def _args(tmp_path, data, ckpt, *extra):
    return ["simulate-annotation", str(data), "--out", str(tmp_path / "out"), "--model",
            "vit_tiny_test", "--checkpoint", str(ckpt), "--cache", str(tmp_path / "cache"),
            "--device", "cpu", "--max-clicks", "2", *extra]


def test_tiny_sam_end_to_end_resumes_and_tabulates(tmp_path, tiny_checkpoint, capsys):
    data = _voc(tmp_path / "data")
    assert main(_args(tmp_path, data, tiny_checkpoint)) == 0
    out = capsys.readouterr().out
    assert "1 image(s) simulated, 0 already done, 0 failed; 2 objects" in out
    (run,) = (tmp_path / "out" / "runs").iterdir()
    rows = list(csv.DictReader((run / "objects.csv").open()))
    assert len(rows) == 2 and {r["class"] for r in rows} == {"15", "12"}
    assert all(1 <= int(r["interactions"]) <= 2 for r in rows)
    assert all(0.0 <= float(r["final_iou"]) <= 1.0 for r in rows)
    # a rerun skips the image; a box run adds a row to the table
    assert main(_args(tmp_path, data, tiny_checkpoint)) == 0
    assert "0 image(s) simulated, 1 already done" in capsys.readouterr().out
    costs = tmp_path / "costs.json"
    costs.write_text('{"box": 5}')
    assert main(_args(tmp_path, data, tiny_checkpoint, "--prompt", "box", "--costs",
                      str(costs), "--max-clicks", "1")) == 0
    table = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert sorted(r["prompt"] for r in table) == ["box", "points"]
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0
    assert "box 5 s" in (tmp_path / "out" / "summary.md").read_text()


def test_usage_errors_exit_2(tmp_path, tiny_checkpoint, capsys):
    data = _voc(tmp_path / "data")
    assert main(_args(tmp_path, tmp_path / "nope", tiny_checkpoint)) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert main(_args(tmp_path, data, tiny_checkpoint, "--proposals", "concept")) == 1
    assert "cannot find concepts" in capsys.readouterr().err
    bad = tmp_path / "costs.yaml"
    bad.write_text("- 1\n")
    assert main(_args(tmp_path, data, tiny_checkpoint, "--costs", str(bad))) == 2
    assert "expected a mapping" in capsys.readouterr().err


def test_prompter_proposals_are_decided_before_clicking(tmp_path, tiny_checkpoint, tiny_engine,
                                                         capsys):
    import json

    import pytest

    torch = pytest.importorskip("torch")
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.learn.prompter import (
        Prompter,
        PrompterInfo,
        config_for,
        save_prompter,
    )

    data = _voc(tmp_path / "data")
    torch.manual_seed(0)
    cfg = config_for(tiny_engine, 2, d_model=32, heads=4, encoder_layers=1, decoder_layers=1,
                     feedforward=64, queries=3)
    folder = tmp_path / "prompter"
    folder.mkdir()
    save_prompter(folder / "prompter.pt", Prompter(cfg),
                  PrompterInfo(cfg, ClassTable(("background", "dog", "cat")),
                               tiny_engine.model_id))
    assert main(_args(tmp_path, data, tiny_checkpoint, "--proposals", "prompter")) == 2
    assert "needs --prompter" in capsys.readouterr().err
    assert main(_args(tmp_path, data, tiny_checkpoint, "--prompter", str(folder))) == 2
    assert "goes with --proposals prompter" in capsys.readouterr().err
    assert main(_args(tmp_path, data, tiny_checkpoint, "--proposals", "prompter",
                      "--prompter", str(folder))) == 0
    (run,) = (tmp_path / "out" / "runs").iterdir()
    assert "-prompter-" in run.name  # the prompter file's hash keys the run
    result = json.loads((run / "images" / "x1.json").read_text())
    # every proposal was decided (accepted or rejected) before the objects were clicked
    assert result["accepted"] + result["rejected"] >= 1
    assert len(result["objects"]) == 2

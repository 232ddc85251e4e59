"""``samlabel eval`` end to end through ``napari_samlabel.cli.main``."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from napari_samlabel.cli import main


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def test_eval_prints_table_and_writes_json(tmp_path, capsys):
    gt = np.zeros((10, 10), np.uint8)
    gt[2:6, 2:6] = 1
    gt[0, :] = 255
    pred = np.zeros((10, 10), np.uint8)
    pred[2:6, 2:8] = 1  # 16 true positives, 8 false positives for class 1
    _save(tmp_path / "gt" / "a.png", gt)
    _save(tmp_path / "pred" / "a.png", pred)
    (tmp_path / "classes.txt").write_text("background\nblob\n# comment\n")
    out = tmp_path / "res" / "scores.json"
    rc = main(["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
               "--classes", str(tmp_path / "classes.txt"), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "blob" in text and "66.7" in text  # IoU of blob = 16 / 24
    # background: GT 74 valid pixels (90 - 16), 8 of them predicted blob -> 66 / 74
    assert f"{100 * 66 / 74:5.1f}" in text
    data = json.loads(out.read_text())
    assert data["classes"][1]["iou"] == 16 / 24
    assert data["miou"] == (16 / 24 + 66 / 74) / 2
    assert data["pixel_accuracy"] == 82 / 90


def test_eval_split_and_user_errors(tmp_path, capsys):
    _save(tmp_path / "gt" / "a.png", np.zeros((4, 4)))
    _save(tmp_path / "gt" / "b.png", np.zeros((4, 4)))
    _save(tmp_path / "pred" / "a.png", np.zeros((4, 4)))
    rc = main(["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    assert rc == 2 and "1 of 2 images have no predictions" in capsys.readouterr().err
    (tmp_path / "val.txt").write_text("a\n")
    assert main(["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--image-set", str(tmp_path / "val.txt")]) == 0
    assert "1 images" in capsys.readouterr().out
    _save(tmp_path / "pred" / "b.png", np.full((4, 4), 99))
    rc = main(["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    assert rc == 2 and "b.png: prediction has values [99]" in capsys.readouterr().err
    rc = main(["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
               "--classes", str(tmp_path / "missing.txt")])
    assert rc == 2 and "cannot read class list" in capsys.readouterr().err

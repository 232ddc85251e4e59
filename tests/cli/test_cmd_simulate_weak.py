"""``samlabel simulate-weak`` end to end, read back with the weak-label readers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.io.weak import read_weak_labels


def _gt(tmp_path):
    lab = np.zeros((40, 50), np.uint8)
    lab[5:20, 5:25] = 8
    lab[25:38, 30:48] = 15
    (tmp_path / "gt").mkdir()
    Image.fromarray(lab, mode="L").save(tmp_path / "gt" / "im1.png")
    return lab


def test_simulate_each_kind_reads_back(tmp_path, capsys):
    lab = _gt(tmp_path)
    for kind in ("points", "scribbles", "boxes"):
        out = tmp_path / kind
        assert main(["simulate-weak", str(tmp_path / "gt"), "--kind", kind,
                     "--out", str(out), "--seed", "1"]) == 0
        assert "2 objects in 1 images" in capsys.readouterr().out
        labels = read_weak_labels(out, kind)["im1"]
        assert labels.class_ids == [8, 15]
        if kind == "points":
            for obj in labels.objects:
                r, c = obj.points[0].rc
                assert lab[int(r), int(c)] == obj.class_id


def test_simulate_options_and_errors(tmp_path, capsys):
    _gt(tmp_path)
    out = tmp_path / "pts"
    assert main(["simulate-weak", str(tmp_path / "gt"), "--kind", "points", "--out", str(out),
                 "--random-points", "--background-points", "4"]) == 0
    records = json.loads((out / "points.json").read_text())["im1"]
    assert sum(r["cls"] == 0 for r in records) == 4
    assert main(["simulate-weak", str(tmp_path / "gt"), "--kind", "boxes", "--out",
                 str(out), "--min-area", "1000"]) == 0
    assert "0 objects" in capsys.readouterr().out
    assert main(["simulate-weak", str(tmp_path / "gt"), "--kind", "boxes", "--out",
                 str(out), "--step", "3"]) == 2
    assert "--step applies to --kind scribbles" in capsys.readouterr().err
    assert main(["simulate-weak", str(tmp_path / "nope"), "--kind", "boxes", "--out",
                 str(out)]) == 2
    assert "not found" in capsys.readouterr().err

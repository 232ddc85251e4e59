import json

import numpy as np
import pytest

pytest.importorskip("open_clip")

from napari_samlabel.cli import main  # noqa: E402
from napari_samlabel.learn import clip_cams as cc  # noqa: E402
from napari_samlabel.learn.synthetic import write_shapes_voc  # noqa: E402


def test_cams_command_writes_reader_format(tmp_path, capsys):
    cc.register_config("samlabel-tiny-cli", cc.TINY_CONFIG)
    voc = write_shapes_voc(tmp_path / "d", 3, size=32, num_classes=3)
    (tmp_path / "classes.txt").write_text("background\nsquare\ndisc\n")
    tags = {f"s{k:04d}": ["square", "disc"] for k in range(3)}
    tags["s0002"] = ["disc"]
    (tmp_path / "tags.json").write_text(json.dumps(tags))
    rc = main(["cams", str(voc / "JPEGImages"), "--tags", str(tmp_path / "tags.json"),
               "--out", str(tmp_path / "cams"), "--classes", str(tmp_path / "classes.txt"),
               "--model", "samlabel-tiny-cli", "--epochs", "1", "--batch-size", "2",
               "--n-ctx", "2"])
    assert rc == 0, capsys.readouterr().err
    arr = np.load(tmp_path / "cams" / "s0002.npy")
    assert arr.shape == (1, 32, 32)
    assert json.loads((tmp_path / "cams" / "s0002.json").read_text())["classes"] == ["disc"]
    assert (tmp_path / "cams" / "prompts.pt").is_file()


def test_cams_command_unknown_tag(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "tags.csv").write_text("a,unicorn\n")
    rc = main(["cams", str(tmp_path / "imgs"), "--tags", str(tmp_path / "tags.csv"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown class 'unicorn'" in capsys.readouterr().err

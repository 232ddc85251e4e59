import numpy as np
import pytest

from napari_samlabel.cli import main
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.learn.synthetic import write_shapes_voc


def test_train_reports_bad_source_without_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--epochs", "0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err


def test_predict_reports_missing_model(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    write_shapes_voc(tmp_path / "d", 1, size=16)
    img_dir = tmp_path / "d" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    assert main(["predict", str(img_dir), "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "model.json is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_predict(tmp_path, capsys):
    voc = write_shapes_voc(tmp_path / "d", 4, size=32, seed=2)
    rc = main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m"), "--arch", "lraspp",
               "--epochs", "1", "--size", "32", "--batch-size", "2", "--gt", str(voc),
               "--device", "cpu", "--ratio", "0.1"])
    out = capsys.readouterr().out
    assert rc == 0 and "round 1:" in out and "mIoU" in out
    rc = main(["predict", str(voc / "JPEGImages"), "--model", str(tmp_path / "m"),
               "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert rc == 0
    pngs = sorted((tmp_path / "pred").glob("*.png"))
    assert len(pngs) == 4
    lab = read_label_png(pngs[0])
    assert lab.shape == (32, 32) and set(np.unique(lab)) <= {0, 1, 2}

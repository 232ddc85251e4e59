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


@pytest.mark.slow
def test_train_under_torchrun_two_cpu_processes(tmp_path):
    """DistributedDataParallel with gloo: both ranks train, rank 0 writes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    voc = write_shapes_voc(tmp_path / "d", 4, size=32, seed=5)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29573", "-m", "napari_samlabel", "train", str(voc), "--out",
         str(tmp_path / "m"), "--arch", "lraspp", "--epochs", "1", "--size", "32",
         "--batch-size", "1", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("model written") == 1  # rank 0 only
    assert len(list((tmp_path / "m" / "rounds" / "round-1" / "labels").glob("*.png"))) == 4

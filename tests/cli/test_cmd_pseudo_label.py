"""``samlabel pseudo-label`` with the tiny random-weight SAM."""

from __future__ import annotations

import json

import pytest

from napari_samlabel.cli import main
from tests.pseudo.test_pipeline import make_dataset


@pytest.fixture()
def dataset(tmp_path):
    img_dir, weak, _ = make_dataset(tmp_path, n=2)
    records = {}
    for image_id, w in weak.items():
        records[image_id] = [{"x": o.points[0].rc[1], "y": o.points[0].rc[0], "cls": o.class_id,
                              "rank": 1} for o in w.objects]
    points = tmp_path / "points.json"
    points.write_text(json.dumps(records))
    return img_dir, points


def _args(tmp_path, img_dir, weak, tiny_checkpoint, *extra):
    return ["pseudo-label", str(img_dir), "--weak", str(weak), "--kind", "points",
            "--out", str(tmp_path / "out"), "--model", "vit_tiny_test", "--checkpoint",
            str(tiny_checkpoint), "--cache", str(tmp_path / "cache"), "--device", "cpu",
            *extra]


def test_pseudo_label_writes_voc_and_resumes(tmp_path, dataset, tiny_checkpoint, capsys):
    img_dir, points = dataset
    (img_dir / "img1.png").write_bytes(b"broken")
    code = main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--multimask", "whole"))
    out, err = capsys.readouterr()
    assert code == 0
    assert "1 labelled, 0 already done, 1 failed" in out
    assert "img1:" in err and "img1.png" in err
    voc = tmp_path / "out" / "voc" / "VOCdevkit" / "VOC2012"
    assert (voc / "SegmentationClass" / "img0.png").is_file()
    rec = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())
    assert rec["policy"]["name"] == "points" and rec["policy"]["multimask_choice"] == "whole"
    assert all(o["mask_index"] == 2 for o in rec["objects"])
    # rerun: the finished image is skipped
    code = main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--multimask", "whole"))
    out, _ = capsys.readouterr()
    assert code == 0 and "0 labelled, 1 already done, 1 failed" in out


def test_all_failed_exits_1(tmp_path, dataset, tiny_checkpoint, capsys):
    img_dir, points = dataset
    for p in img_dir.glob("*.png"):
        p.write_bytes(b"broken")
    assert main(_args(tmp_path, img_dir, points, tiny_checkpoint)) == 1
    assert "2 image(s) failed" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__(1, "/no/such/dir"), "image folder not found"),
    (lambda a: a.__setitem__(3, "/no/such/points.json"), "not found"),
    (lambda a: a.__setitem__(11, "/no/such.pth"), "checkpoint file not found"),
])
def test_usage_errors_exit_2(tmp_path, dataset, tiny_checkpoint, capsys, change, message):
    img_dir, points = dataset
    args = _args(tmp_path, img_dir, points, tiny_checkpoint)
    change(args)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_weak_labels_fail_their_image_only(tmp_path, dataset, tiny_checkpoint, capsys):
    """Issue 5: a failing image is reported and skipped, never aborting the run."""
    img_dir, points = dataset
    records = json.loads(points.read_text())
    records["img0"] = [{"x": 1, "cls": 8}]  # no "y"
    points.write_text(json.dumps(records))
    assert main(_args(tmp_path, img_dir, points, tiny_checkpoint)) == 0
    out, err = capsys.readouterr()
    assert "1 labelled, 0 already done, 1 failed" in out
    assert "img0: weak labels:" in err and "points.json" in err and "entry 0" in err
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert list(failures) == ["img0"]
    # A dataset file that does not parse is the whole input, not a failed image named
    # after the file (issue 15 item 7): a usage error naming the file and the place.
    points.write_text("{not json")
    assert main(_args(tmp_path, img_dir, points, tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert "points.json (line 1, column 2): not valid JSON" in err and "failed" not in err


def test_policy_options_reach_the_run(tmp_path, dataset, tiny_checkpoint):
    img_dir, points = dataset
    code = main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--multimask", "best",
                      "--group-size", "3", "--background-negatives"))
    assert code == 0
    pol = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())["policy"]
    assert (pol["multimask_choice"], pol["group_size"], pol["background_negatives"]) == (
        "best", 3, True)
    code = main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--cam-fallback-to-max"))
    assert code == 2  # a CAM option with --kind points


def test_unknown_policy_is_rejected(tmp_path, dataset, tiny_checkpoint, capsys):
    img_dir, points = dataset
    with pytest.raises(SystemExit) as exc:
        main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--policy", "nope"))
    assert exc.value.code == 2


def test_scheduler_option_runs_on_the_cluster(tmp_path, dataset, tiny_checkpoint, capsys):
    from distributed import LocalCluster

    img_dir, points = dataset
    (img_dir / "img1.png").unlink()  # one image is enough here
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        code = main(_args(tmp_path, img_dir, points, tiny_checkpoint, "--no-export",
                          "--scheduler", cluster.scheduler_address))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 labelled" in out and "1 failed" in out  # img1's labels have no image
    assert (tmp_path / "out" / "scores" / "img0.json").is_file()
    assert not (tmp_path / "out" / "voc").exists()


def test_unreachable_scheduler_is_a_usage_error(tmp_path, dataset, tiny_checkpoint, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import dask

    img_dir, points = dataset
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(_args(tmp_path, img_dir, points, tiny_checkpoint,
                          "--scheduler", f"tcp://127.0.0.1:{port}"))
    assert code == 2
    assert "127.0.0.1" in capsys.readouterr().err

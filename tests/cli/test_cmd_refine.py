"""``samlabel refine`` end to end on tiny synthetic data (SAM runs use the tiny test model)."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.io.voc.labelpng import read_label_png, write_label_png
from napari_samlabel.pseudo.refine import (
    SAMS_PARAMS,
    AutoMaskCache,
    AutoMaskParams,
    sams_seeds,
    sepl_refine,
    slic_refine,
)

IDS = ("a", "b")
# One grid point and no quality filter, so the random-weight model yields masks quickly.
SAM_ARGS = ["--model", "vit_tiny_test", "--device", "cpu", "--points-per-side", "1",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    images, coarse, cams = (tmp_path / d for d in ("images", "coarse", "cams"))
    for d in (images, coarse, cams):
        d.mkdir()
    for k, iid in enumerate(IDS):
        img = np.full((40, 56, 3), 25, dtype=np.uint8)
        img[8:28, 10 + k:40 + k] = (210, 190, 50)
        img = np.clip(img + rng.integers(0, 15, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(images / f"{iid}.png")
        lab = np.zeros((40, 56), dtype=np.uint8)
        lab[10:30, 12 + k:42 + k] = 8  # cat, a bit off the object
        lab[0, :] = 255
        write_label_png(coarse / f"{iid}.png", lab)
        cam = np.zeros((2, 40, 56), dtype=np.float32)
        cam[0, 8:28, 10 + k:40 + k] = 0.9
        cam[1, 30:, :20] = 0.4
        np.save(cams / f"{iid}.npy", cam)
        (cams / f"{iid}.json").write_text(json.dumps({"classes": ["cat", "dog"]}))
    return tmp_path


def _labels(out, iid):
    return read_label_png(out / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{iid}.png")


def _image(data, iid):
    return np.asarray(Image.open(data / "images" / f"{iid}.png").convert("RGB"))


def _one_image(data):
    """Keep only image "a" (SAM runs are the slow part of these tests)."""
    for f in (data / "images" / "b.png", data / "coarse" / "b.png", data / "cams" / "b.npy"):
        f.unlink()


def _cached(cache_dir, image, params):
    (model_dir,) = (cache_dir / "automasks").iterdir()
    cache = AutoMaskCache(cache_dir / "automasks")
    masks = cache.load(cache.path_for(model_dir.name.replace("-", ":", 1), image, params))
    assert masks is not None
    return masks


def test_sepl_end_to_end_then_from_the_cache(data, tiny_checkpoint, capsys):
    _one_image(data)
    out, cache = data / "out", data / "cache"
    argv = ["refine", "--method", "sepl", str(data / "images"), "--coarse",
            str(data / "coarse"), "--out", str(out), "--checkpoint", str(tiny_checkpoint),
            "--cache", str(cache), *SAM_ARGS]
    assert main(argv) == 0
    assert "0 of 1 images from the cache" in capsys.readouterr().out
    params = AutoMaskParams(points_per_side=1, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    for iid in IDS[:1]:
        image = _image(data, iid)
        masks = _cached(cache, image, params)
        expected = sepl_refine(read_label_png(data / "coarse" / f"{iid}.png"), masks)
        np.testing.assert_array_equal(_labels(out, iid), expected)
    voc = out / "VOCdevkit" / "VOC2012"
    assert sorted(p.stem for p in (voc / "JPEGImages").iterdir()) == ["a"]
    # A second run reads the masks from the cache.
    assert main([*argv, "--overwrite", "--class-ratio", "0.5"]) == 0
    assert "1 of 1 images from the cache" in capsys.readouterr().out


def test_sams_end_to_end(data, tiny_checkpoint):
    _one_image(data)
    out, cache = data / "out", data / "cache"
    assert main(["refine", "--method", "sams", str(data / "images"), "--cams",
                 str(data / "cams"), "--out", str(out), "--checkpoint", str(tiny_checkpoint),
                 "--cache", str(cache), "--alpha", "0.5", *SAM_ARGS]) == 0
    params = AutoMaskParams(points_per_side=1, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                            level_iou_offset=SAMS_PARAMS.level_iou_offset,
                            level_nms_offset=SAMS_PARAMS.level_nms_offset)
    for iid in IDS[:1]:
        masks = _cached(cache, _image(data, iid), params)
        cam = np.load(data / "cams" / f"{iid}.npy")
        expected = sams_seeds(cam, [8, 12], masks, alpha=0.5).seeds
        np.testing.assert_array_equal(_labels(out, iid), expected)


def test_slic_end_to_end_without_a_model(data):
    out = data / "out"
    assert main(["refine", "--method", "slic", str(data / "images"), "--coarse",
                 str(data / "coarse"), "--cams", str(data / "cams"), "--out", str(out),
                 "--n-segments", "30", "--rule", "all", "--ignore-ratio", "0.1"]) == 0
    for iid in IDS:
        image = _image(data, iid)
        expected = slic_refine(image, read_label_png(data / "coarse" / f"{iid}.png"),
                               maps=np.load(data / "cams" / f"{iid}.npy"), class_ids=[8, 12],
                               n_segments=30, rule="all", ignore_ratio=0.1)
        got = _labels(out, iid)
        np.testing.assert_array_equal(got, expected)
        assert {0, 8, 255} <= set(np.unique(got).tolist())


def test_image_level_labels_in_the_sidecar_drop_absent_classes(data):
    (data / "cams" / "a.json").write_text(json.dumps({"classes": ["cat", "dog"],
                                                      "labels": ["dog"]}))
    from napari_samlabel.pseudo.refine import load_class_maps

    maps, ids = load_class_maps(data / "cams" / "a.npy")
    assert ids == [12] and maps.shape == (1, 40, 56)


@pytest.mark.parametrize("change, message", [
    (lambda d: None, "needs --coarse"),
    (lambda d: (d / "coarse" / "b.png").unlink(), "missing input files: .*b.png"),
    (lambda d: write_label_png(d / "coarse" / "a.png", np.zeros((5, 5), np.uint8)),
     "a.png is 5x5 but image a.png is 40x56"),
    (lambda d: (d / "cams" / "a.json").unlink(), "no class list; add a.json"),
    (lambda d: (d / "cams" / "b.json").write_text('["cat", "unicorn"]'),
     "b.json: channel 1: unknown class 'unicorn'"),
])
def test_user_errors_are_one_line_messages(data, capsys, change, message):
    import re

    change(data)
    argv = ["refine", "--method", "slic", str(data / "images"), "--cams",
            str(data / "cams"), "--out", str(data / "out")]
    if message != "needs --coarse":
        argv += ["--coarse", str(data / "coarse")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (data / "out").exists()  # nothing half written


def test_sams_needs_cams_and_a_usable_checkpoint(data, capsys):
    base = ["refine", "--method", "sams", str(data / "images"), "--out",
            str(data / "out")]
    assert main(base) == 2
    assert "needs --cams" in capsys.readouterr().err
    assert main([*base, "--cams", str(data / "cams"), "--model", "vit_tiny_test",
                 "--checkpoint", str(data / "nope.pth"), "--cache", str(data / "c")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_fragmented_refined_map_is_written_one_object_per_class(tmp_path, capsys):
    """More than 254 components aborted the run without naming the image; now each class is
    one object, as in the pseudo-label export."""
    from napari_samlabel.pseudo.objects import component_count

    rng = np.random.default_rng(0)
    for d in ("images", "coarse"):
        (tmp_path / d).mkdir()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)).save(
        tmp_path / "images" / "dots.png")
    lab = np.zeros((48, 64), np.uint8)
    lab[::3, ::3] = 8  # 352 isolated dots of class cat
    lab[40:, 50:] = 12
    write_label_png(tmp_path / "coarse" / "dots.png", lab)
    out = tmp_path / "out"
    code = main(["refine", "--method", "slic", str(tmp_path / "images"),
                 "--coarse", str(tmp_path / "coarse"), "--out", str(out),
                 "--n-segments", "3000", "--compactness", "0.01"])
    assert code == 0, capsys.readouterr().err
    sem = _labels(out, "dots")
    assert component_count(sem) > 254
    obj = read_label_png(out / "VOCdevkit" / "VOC2012" / "SegmentationObject" / "dots.png")
    assert set(np.unique(obj[sem == 8])) == {1} and set(np.unique(obj[sem == 12])) == {2}
    assert (obj[sem == 0] == 0).all()


def test_slic_confidence_sources_and_the_notice_without_one(data, capsys):
    argv = ["refine", "--method", "slic", str(data / "images"), "--coarse",
            str(data / "coarse"), "--n-segments", "30", "--ignore-ratio", "0.3"]
    assert main([*argv, "--out", str(data / "plain")]) == 0
    assert "no pixel is voided by confidence" in capsys.readouterr().err
    plain = _labels(data / "plain", "a")
    # per-pixel confidence maps: the left part of the image is unsure
    conf_dir = data / "conf"
    conf_dir.mkdir()
    for iid in IDS:
        np.save(conf_dir / f"{iid}.npy", np.tile(np.linspace(0, 1, 56), (40, 1)))
    assert main([*argv, "--out", str(data / "maps"), "--confidence", str(conf_dir)]) == 0
    assert "no pixel is voided" not in capsys.readouterr().err
    got = _labels(data / "maps", "a")
    assert (got[:, :10] == 255).all() and (got[:, 30:] == plain[:, 30:]).all()
    # a pseudo-label run's folder: SAM's predicted IoU per object
    from napari_samlabel.pseudo.store import ResultStore

    store = ResultStore(data / "pl")
    for iid in IDS:
        coarse = read_label_png(data / "coarse" / f"{iid}.png")
        inst = np.where(coarse == 8, 1, 0).astype(np.uint8)
        inst[35:, :10] = 2  # a second, badly predicted object
        sem = coarse.copy()
        sem[35:, :10] = 12
        store.write(iid, sem, inst, {"objects": [{"unit": 1, "score": 0.9},
                                                 {"unit": 2, "score": 0.2}]})
    assert main(["refine", "--method", "slic", str(data / "images"), "--coarse",
                 str(data / "pl" / "SegmentationClass"), "--n-segments", "30",
                 "--ignore-ratio", "0.1", "--out", str(data / "pl-out"),
                 "--confidence", str(data / "pl")]) == 0
    got = _labels(data / "pl-out", "a")
    assert not (got == 12).any() and (got == 8).any()  # the unsure dog is voided, cat kept
    assert (got[(plain == 0) & (got != 255)] == 0).all()
    (conf_dir / "b.npy").unlink()
    assert main([*argv, "--out", str(data / "x"), "--confidence", str(conf_dir)]) == 2
    assert "missing input files" in capsys.readouterr().err
    assert main([*argv, "--out", str(data / "x"), "--confidence", str(conf_dir), "--cams",
                 str(data / "cams")]) == 2


def _refine_parser():
    import argparse

    from napari_samlabel.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices["refine"]


def test_options_are_generated_from_the_records_with_the_module_defaults(tmp_path):
    from napari_samlabel.pseudo.refine import REFINERS, all_parameters, sams, sepl, slic

    parser = _refine_parser()
    args = parser.parse_args(["--method", "sepl", "i", "--out", "o"])
    params = all_parameters()
    actions = {a.dest: a for a in parser._actions}
    for name, info in params.items():
        action = actions[name]
        assert action.option_strings == [info.flag] and action.default == info.default
        assert action.help and str(info.default) in action.help
        assert getattr(args, name) == info.default
        if info.choices is None:
            assert f"{info.low:g} to {info.high:g}" in action.help
        else:
            assert tuple(action.choices) == info.choices
    # the published values, not numbers typed again in the CLI
    assert (args.segment_ratio, args.class_ratio) == (sepl.SEGMENT_RATIO, sepl.CLASS_RATIO)
    assert (args.occupation_ratio, args.alpha) == (sams.OCCUPATION_RATIO, sams.ALPHA)
    assert (args.n_segments, args.compactness, args.sigma, args.rule, args.ignore_ratio) == (
        slic.N_SEGMENTS, slic.COMPACTNESS, slic.SIGMA, slic.RULE, slic.IGNORE_RATIO)
    assert (args.whole_iou_offset, args.whole_nms_offset) == (0.1, 1.0)
    assert all(r.title in parser.description for r in REFINERS.values())


def test_a_parameter_added_to_a_record_becomes_an_option(data, monkeypatch, capsys):
    from dataclasses import dataclass, replace

    from napari_samlabel.pseudo.refine import api, param, slic

    @dataclass(frozen=True)
    class Knobbed(slic.SlicParams):
        extra_knob: int = param(7, "a new knob", low=2, high=9, step=1)

    seen = []

    def run(inputs, p):
        seen.append(p)
        return slic.REFINER.run(inputs, p)

    monkeypatch.setitem(api.REFINERS, "slic", replace(slic.REFINER, params=Knobbed, run=run))
    parser = _refine_parser()
    (action,) = [a for a in parser._actions if a.dest == "extra_knob"]
    assert action.option_strings == ["--extra-knob"] and action.default == 7
    assert "a new knob (default 7; 2 to 9)" == action.help
    argv = ["refine", "--method", "slic", str(data / "images"), "--coarse",
            str(data / "coarse"), "--n-segments", "30"]
    assert main([*argv, "--out", str(data / "o1"), "--extra-knob", "10"]) == 2
    assert r"--extra-knob must be in [2, 9], got 10" in capsys.readouterr().err
    assert main([*argv, "--out", str(data / "o2"), "--extra-knob", "3"]) == 0
    assert seen and all(p.extra_knob == 3 and p.n_segments == 30 for p in seen)


@pytest.mark.parametrize("option, message", [
    (["--segment-ratio", "1.5"], r"--segment-ratio must be in \[0, 1\], got 1.5"),
    (["--alpha", "0"], r"--alpha must be in \[0.01, 10\], got 0.0"),
    (["--n-segments", "0"], r"--n-segments must be in \[1, 100000\], got 0"),
    (["--split", "2"], r"--split must be in \[0, 1\], got 2.0"),
])
def test_values_out_of_bounds_are_one_line_messages(data, capsys, option, message):
    import re

    assert main(["refine", "--method", "slic", str(data / "images"), "--coarse",
                 str(data / "coarse"), "--out", str(data / "out"), *option]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (data / "out").exists()

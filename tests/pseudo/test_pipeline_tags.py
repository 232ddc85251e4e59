"""Image tags and class names -> concept prompts -> VOC pseudo labels, with the GT oracle.

The oracle answers a phrase with every ground-truth instance of its class, so with complete
tags the pipeline must reproduce the ground truth exactly (mIoU 1.0: the ceiling the tags
kind reaches with a perfect concept model), write only tagged classes, and resolve overlaps
by score.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.core.candidates import Candidate
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.engine.policies import get_policy
from napari_samlabel.evaluate.metrics import evaluate_dirs
from napari_samlabel.io.voc.labelpng import read_label_png, write_label_png
from napari_samlabel.io.weak import read_weak_labels
from napari_samlabel.io.weak.tags import tags_labels, text_labels
from napari_samlabel.pseudo.engines import EngineSpec
from napari_samlabel.pseudo.pipeline import label_concepts, pseudo_label
from napari_samlabel.testing.fakes import DiskEngine
from napari_samlabel.testing.oracle import oracle_from_voc
from tests.pseudo.test_pipeline import CAT, DOG, PERSON, SHAPE, make_dataset

VOC = ClassTable.voc()


def voc_with_tags(root, n=3, absent=()):
    """A VOC root with JPEGImages, GT and ImageSets/Main/<class>_train.txt tags.

    ``absent``: ``(image_id, class)`` pairs tagged -1 although present.
    """
    img_dir, _, gts = make_dataset(root / "src", n=n)
    voc = root / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, (sem, inst) in gts.items():
        Image.open(img_dir / f"{image_id}.png").save(voc / "JPEGImages" / f"{image_id}.jpg",
                                                     quality=90)
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", sem)
        write_label_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
    for cid, name in enumerate(VOC.names[1:], start=1):
        lines = []
        for image_id, (sem, _) in gts.items():
            present = (sem == cid).any() and (image_id, cid) not in absent
            # the person of img1 is "difficult" (0): still a tag
            flag = ("0" if (image_id, cid) == ("img1", PERSON) else "1") if present else "-1"
            lines.append(f"{image_id} {flag}")
        (voc / "ImageSets" / "Main" / f"{name}_train.txt").write_text("\n".join(lines) + "\n")
    return voc, gts


def test_tags_reach_the_ground_truth_ceiling(tmp_path):
    voc, gts = voc_with_tags(tmp_path)
    weak = read_weak_labels(voc, "tags")
    assert {i: w.class_ids for i, w in weak.items()} == {i: [CAT, DOG, PERSON] for i in gts}
    engine = oracle_from_voc(voc)
    report = pseudo_label(voc / "JPEGImages", weak, tmp_path / "out", engine, kind="tags")
    assert report.failed == {} and sorted(report.done) == sorted(gts)
    assert evaluate_dirs(report.voc_root, voc).miou == pytest.approx(1.0)
    for image_id, (_sem, inst) in gts.items():
        got = read_label_png(tmp_path / "out" / "SegmentationObject" / f"{image_id}.png")
        assert len(np.unique(got[got > 0])) == len(np.unique(inst[inst > 0]))
    # the VOC tree is complete (the split files a VOC reader needs)
    assert (report.voc_root / "ImageSets" / "Segmentation" / "train.txt").is_file()
    phrases = {call[0] for call in engine.concept_calls}
    assert phrases == {"cat", "dog", "person"}  # only the tagged classes are prompted


def test_untagged_classes_are_never_written(tmp_path):
    voc, gts = voc_with_tags(tmp_path, absent={("img0", DOG)})
    weak = read_weak_labels(voc, "tags", split="train")
    assert weak["img0"].class_ids == [CAT, PERSON]
    engine = oracle_from_voc(voc)
    report = pseudo_label(voc / "JPEGImages", weak, tmp_path / "out", engine, kind="tags")
    assert report.failed == {}
    sem0 = read_label_png(tmp_path / "out" / "SegmentationClass" / "img0.png")
    gt0 = gts["img0"][0]
    assert not (sem0 == DOG).any()
    assert ((sem0 == CAT) == (gt0 == CAT)).all() and ((sem0 == PERSON) == (gt0 == PERSON)).all()
    sem1 = read_label_png(tmp_path / "out" / "SegmentationClass" / "img1.png")
    assert (sem1 == gts["img1"][0]).all()


def test_score_threshold_and_phrases(tmp_path):
    voc, gts = voc_with_tags(tmp_path, n=1)
    weak = read_weak_labels(voc, "tags")
    engine = oracle_from_voc(voc, concept_score=0.4)
    image = engine_image(voc)
    low = get_policy("tags", score_threshold=0.3)
    sem, _, records = label_concepts(engine, image, weak["img0"], low, VOC)
    assert len(records) == 3 and all(r["score"] == pytest.approx(0.4) for r in records)
    sem, inst, records = label_concepts(engine, image, weak["img0"], get_policy("tags"), VOC)
    assert records == [] and not sem.any() and not inst.any()
    # an override phrase the oracle does not know: that class finds nothing
    renamed = get_policy("tags", score_threshold=0.3, phrases={"cat": "kitty"})
    sem, _, records = label_concepts(engine, image, weak["img0"], renamed, VOC)
    assert {r["class"] for r in records} == {"dog", "person"}
    assert engine.concept_calls[-3][0] == "kitty"
    assert renamed.to_dict()["phrases"] == [["cat", "kitty"]]
    assert "phrases" not in get_policy("points").to_dict()  # old fingerprints unchanged


def engine_image(voc):
    from napari_samlabel.io.images import load_image

    return load_image(voc / "JPEGImages" / "img0.jpg")


class _Overlapping(DiskEngine):
    """Two overlapping square instances per phrase, the second scoring higher."""

    model_id = "overlap"

    def find_all(self, text=None, exemplars=(), negatives=(), threshold=0.5):
        a = np.zeros(SHAPE, bool)
        a[10:40, 10:40] = True
        b = np.zeros(SHAPE, bool)
        b[30:60, 30:60] = True
        return [Candidate(b, 0.9, f"text:{text}"), Candidate(a, 0.6, f"text:{text}")]


def test_overlaps_resolve_by_score(tmp_path):
    weak = tags_labels("a", [CAT])
    image = np.zeros(SHAPE + (3,), np.uint8)
    sem, inst, records = label_concepts(_Overlapping(), image, weak, get_policy("tags"), VOC)
    assert [r["score"] for r in records] == [0.9, 0.6]
    assert inst[35, 35] == 1  # the contested square goes to the higher score
    assert records[0]["pixels"] == 900 and records[1]["pixels"] == 900 - 100
    assert (sem[inst > 0] == CAT).all()


def test_a_model_without_concept_prompts_fails_each_image_clearly(tmp_path):
    img_dir, _, gts = make_dataset(tmp_path, n=1)
    report = pseudo_label(img_dir, {"img0": tags_labels("img0", [CAT])}, tmp_path / "out",
                          DiskEngine(), kind="tags")
    assert "sam3" in report.failed["img0"]


def test_text_prompts_every_class(tmp_path):
    voc, gts = voc_with_tags(tmp_path, n=2)
    weak = text_labels(gts, VOC)
    assert weak["img0"].class_ids == list(range(1, 21)) and weak["img0"].kind == "text"
    engine = oracle_from_voc(voc)
    report = pseudo_label(voc / "JPEGImages", weak, tmp_path / "out", engine, kind="text")
    assert report.failed == {}
    assert evaluate_dirs(report.voc_root, voc).miou == pytest.approx(1.0)
    assert {c[0] for c in engine.concept_calls} >= {"potted plant", "tv monitor",
                                                    "dining table", "aeroplane"}


def test_tags_on_a_dask_cluster(tmp_path):
    from distributed import LocalCluster

    voc, gts = voc_with_tags(tmp_path, n=2)
    weak = read_weak_labels(voc, "tags")
    spec = EngineSpec.fake("oracle-voc", voc=str(voc))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        report = pseudo_label(voc / "JPEGImages", weak, tmp_path / "out", spec, kind="tags",
                              scheduler=cluster.scheduler_address)
    assert report.failed == {} and sorted(report.done) == sorted(gts)
    assert evaluate_dirs(report.voc_root, voc).miou == pytest.approx(1.0)


def _cli(monkeypatch, voc):
    import napari_samlabel.cli.cmd_pseudo_label as cmd

    monkeypatch.setattr(cmd, "_engine_spec",
                        lambda args: EngineSpec.fake("oracle-voc", voc=str(voc)))


def test_cli_tags_with_phrases_and_threshold(tmp_path, monkeypatch, capsys):
    voc, gts = voc_with_tags(tmp_path, n=2)
    _cli(monkeypatch, voc)
    phrases = tmp_path / "phrases.yaml"
    phrases.write_text("dog: hound\n")
    out = tmp_path / "out"
    args = ["pseudo-label", str(voc / "JPEGImages"), "--weak", str(voc),
            "--kind", "tags", "--out", str(out), "--phrases", str(phrases),
            "--score-threshold", "0.9"]
    assert main(args) == 0
    assert "2 labelled" in capsys.readouterr().out
    sem = read_label_png(out / "SegmentationClass" / "img0.png")
    assert not (sem == DOG).any() and (sem == CAT).any()  # "hound" is not the oracle's dog


def test_cli_text_and_usage_errors(tmp_path, monkeypatch, capsys):
    voc, gts = voc_with_tags(tmp_path, n=1)
    _cli(monkeypatch, voc)
    out = tmp_path / "out"
    assert main(["pseudo-label", str(voc / "JPEGImages"), "--kind", "text",
                 "--out", str(out)]) == 0
    assert evaluate_dirs(out, voc).miou == pytest.approx(1.0)
    capsys.readouterr()
    base = ["pseudo-label", str(voc / "JPEGImages"), "--out", str(out)]
    assert main([*base, "--kind", "text", "--weak", str(voc)]) == 2
    assert "takes no --weak" in capsys.readouterr().err
    assert main([*base, "--kind", "tags"]) == 2
    assert "needs --weak" in capsys.readouterr().err
    assert main([*base, "--kind", "tags", "--weak", str(voc), "--policy", "points"]) == 2
    assert "does not fit --kind tags" in capsys.readouterr().err
    assert main([*base, "--kind", "points", "--weak", str(voc), "--phrases", "x.yaml"]) == 2
    assert "apply to --kind tags and text" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("cat: [1, 2]\n")
    assert main([*base, "--kind", "tags", "--weak", str(voc), "--phrases", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err

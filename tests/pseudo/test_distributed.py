"""Pseudo-labelling on a (local, in-process) dask.distributed cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.pseudo.engines import EngineSpec
from napari_samlabel.pseudo.pipeline import pseudo_label
from tests.pseudo.test_pipeline import CAT, make_dataset

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as lc:
        yield lc


def test_images_are_tasks_and_the_worker_keeps_its_engine(tmp_path, cluster):
    img_dir, weak, _ = make_dataset(tmp_path, n=3)
    seen = []
    report = pseudo_label(img_dir, weak, tmp_path / "out", EngineSpec.fake("disk", radius=5),
                          scheduler=cluster.scheduler_address,
                          progress=lambda d, t, m: seen.append((d, t, m)))
    assert sorted(report.done) == ["img0", "img1", "img2"] and report.failed == {}
    workers = {o.worker for o in report.outcomes}
    assert workers == set(cluster.scheduler_info["workers"])
    # built once, reused for every image
    assert len({o.engine_token for o in report.outcomes}) == 1
    assert [d for d, _, _ in seen] == [1, 2, 3] and {m for _, _, m in seen} == set(weak)
    # results written by the worker, same as a local run
    local = pseudo_label(img_dir, weak, tmp_path / "local", EngineSpec.fake("disk", radius=5),
                         export=False)
    assert sorted(local.done) == sorted(report.done)
    for image_id in weak:
        np.testing.assert_array_equal(
            read_label_png(tmp_path / "out" / "SegmentationClass" / f"{image_id}.png"),
            read_label_png(tmp_path / "local" / "SegmentationClass" / f"{image_id}.png"))
    assert (report.voc_root / "SegmentationClass" / "img0.png").is_file()


def test_rerun_on_cluster_skips_finished_and_reports_failures(tmp_path, cluster):
    from distributed import Client

    img_dir, weak, _ = make_dataset(tmp_path, n=3)
    (img_dir / "img2.png").write_bytes(b"broken")
    spec = EngineSpec.fake("disk")
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        first = pseudo_label(img_dir, weak, tmp_path / "out", spec, scheduler=client)
        assert sorted(first.done) == ["img0", "img1"] and list(first.failed) == ["img2"]
        second = pseudo_label(img_dir, weak, tmp_path / "out", spec, scheduler=client)
    assert second.done == [] and sorted(second.skipped) == ["img0", "img1"]
    assert list(second.failed) == ["img2"]
    # the local run agrees that these images are finished (same fingerprint)
    third = pseudo_label(img_dir, weak, tmp_path / "out", spec)
    assert sorted(third.skipped) == ["img0", "img1"]


def test_engine_that_cannot_be_built_fails_each_image(tmp_path, cluster):
    img_dir, weak, _ = make_dataset(tmp_path, n=2)
    bad = EngineSpec.fake("no-such-engine")
    report = pseudo_label(img_dir, weak, tmp_path / "out", bad,
                          scheduler=cluster.scheduler_address)
    assert set(report.failed) == {"img0", "img1"}
    assert "no-such-engine" in report.failed["img0"] and report.voc_root is None


def test_a_live_engine_object_is_refused(tmp_path, cluster):
    from napari_samlabel.testing.fakes import DiskEngine

    img_dir, weak, _ = make_dataset(tmp_path, n=1)
    with pytest.raises(TypeError, match="EngineSpec"):
        pseudo_label(img_dir, weak, tmp_path / "out", DiskEngine(),
                     scheduler=cluster.scheduler_address)


def test_tiny_sam_on_the_cluster(tmp_path, cluster, tiny_checkpoint):
    img_dir, weak, _ = make_dataset(tmp_path, n=2)
    spec = EngineSpec.sam("vit_tiny_test", tiny_checkpoint, cache=None, device="cpu")
    report = pseudo_label(img_dir, weak, tmp_path / "out", spec,
                          scheduler=cluster.scheduler_address)
    assert sorted(report.done) == ["img0", "img1"], report.failed
    assert len({o.engine_token for o in report.outcomes}) == 1
    rec = json.loads((tmp_path / "out" / "scores" / "img0.json").read_text())
    assert rec["model_id"].startswith("vit_tiny_test")
    assert rec["objects"][0]["class_id"] == CAT and len(rec["objects"][0]["ious"]) == 3
    # points policy: iterative, one decode per point
    assert all(o["decoder_calls"] == o["positive_points"] for o in rec["objects"])


def test_engine_spec_is_picklable_and_names_bad_factories():
    import pickle

    from napari_samlabel.testing.fakes import DiskEngine

    spec = EngineSpec.fake("disk", radius=3)
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and hash(again) == hash(spec)
    eng = again.build()
    assert isinstance(eng, DiskEngine) and eng.radius == 3
    assert "radius=3" in spec.describe()
    with pytest.raises(ImportError, match="no_such_module:make"):
        EngineSpec.create("no_such_module:make").build()
    with pytest.raises(ValueError, match="package.module:name"):
        EngineSpec.create("no_colon")

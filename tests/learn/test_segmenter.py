import json

import numpy as np
import pytest
import torch

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.evaluate.metrics import ConfusionMatrix
from napari_samlabel.learn.data import load_samples
from napari_samlabel.learn.segmenter import (
    SegmenterError,
    SegmenterMeta,
    build_segmenter,
    load_model,
    predict_probs,
    save_model,
)
from napari_samlabel.learn.selftrain import TrainConfig, self_train
from napari_samlabel.learn.source import SegmenterSource, candidates_from_probs
from napari_samlabel.learn.synthetic import shapes_image, write_shapes_voc


def miou(model, meta, images, labels):
    cm = ConfusionMatrix(len(meta.classes))
    for p, lab in zip(predict_probs(model, images, meta), labels, strict=True):
        cm.update(p.argmax(0), lab)
    return cm.scores().miou


@pytest.mark.slow
def test_lraspp_learns_synthetic_shapes(tmp_path):
    """Trained on 16 images, the network segments held-out ones far better than untrained."""
    torch.set_num_threads(1)  # steadier on a shared machine
    voc = write_shapes_voc(tmp_path / "d", 16, size=48, seed=3)
    samples, classes = load_samples(voc)
    rng = np.random.default_rng(99)
    held = [shapes_image(rng, 48, 3) for _ in range(8)]
    images, labels = [h[0] for h in held], [h[1] for h in held]
    meta = SegmenterMeta("lraspp", list(classes.names), 48)
    torch.manual_seed(0)
    untrained = miou(build_segmenter("lraspp", 3).eval(), meta, images, labels)
    cfg = TrainConfig(arch="lraspp", epochs=8, batch_size=4, lr=3e-3, size=48, ratio=0.0,
                      weighting="none")
    self_train(samples, classes, tmp_path / "m", cfg)
    model, meta = load_model(tmp_path / "m")
    trained = miou(model, meta, images, labels)
    assert trained > 0.7 and trained > untrained + 0.3, (trained, untrained)


def test_model_folder_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    net = build_segmenter("lraspp", 3).eval()
    meta = SegmenterMeta("lraspp", ["background", "a", "b"], 32)
    save_model(tmp_path / "m", net, meta)
    model, meta2 = load_model(tmp_path / "m")
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    p1, p2 = predict_probs(net, [img], meta)[0], predict_probs(model, [img], meta2)[0]
    assert p1.shape == (3, 20, 30) and np.allclose(p1.sum(0), 1, atol=1e-5)
    assert np.allclose(p1, p2, atol=1e-5)
    with pytest.raises(SegmenterError, match="model.json is missing"):
        load_model(tmp_path)
    (tmp_path / "m" / "model.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(SegmenterError, match="not a napari-samlabel segmenter"):
        load_model(tmp_path / "m")
    with pytest.raises(SegmenterError, match="unknown architecture"):
        build_segmenter("unet", 3)


def test_torchvision_weights_missing_from_cache_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(SegmenterError, match="not cached.*nothing is downloaded"):
        build_segmenter("lraspp", 3, "coco")


def test_candidates_are_components_scored_by_mean_probability():
    probs = np.zeros((3, 10, 10), np.float32)
    probs[0] = 1.0
    probs[:, 1:4, 1:4] = [[[0.1]], [[0.9]], [[0.0]]]   # class 1, p = 0.9
    probs[:, 6:9, 6:9] = [[[0.2]], [[0.0]], [[0.8]]]   # class 2, p = 0.8
    probs[:, 6:9, 1:3] = [[[0.4]], [[0.6]], [[0.0]]]   # class 1 again, another component
    cands = candidates_from_probs(probs, "model:x", min_area=1)
    assert [(c.class_id, round(c.score, 3), c.area) for c in cands] == [
        (1, 0.9, 9), (2, 0.8, 9), (1, 0.6, 6)]
    assert cands[0].box.top_left == (1.0, 1.0) and cands[0].box.bottom_right == (3.0, 3.0)
    assert candidates_from_probs(probs, "m", min_area=7)[-1].score == pytest.approx(0.8)


def test_segmenter_source_maps_classes_by_name(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "m", build_segmenter("lraspp", 3).eval(),
               SegmenterMeta("lraspp", ["background", "cat", "dog"], 32))
    src = SegmenterSource(tmp_path / "m", min_area=1)
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    table = ClassTable(("background", "dog", "bird", "cat"))
    cands = src.propose(None, img, table)
    assert all(c.class_id in (1, 3) for c in cands)
    assert all(c.source == "model:lraspp" for c in cands)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)

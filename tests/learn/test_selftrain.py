import json

import numpy as np
import pytest

from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.learn.data import load_samples
from napari_samlabel.learn.selftrain import TrainConfig, refine_predictions, self_train
from napari_samlabel.learn.synthetic import write_shapes_voc


def probs_from(conf, labels, num_classes=3):
    """C x H x W probabilities whose argmax is `labels` with max probability `conf`."""
    h, w = labels.shape
    p = np.zeros((num_classes, h, w), np.float32)
    rest = (1 - conf) / (num_classes - 1)
    p[:] = rest
    for c in range(num_classes):
        p[c][labels == c] = conf[labels == c]
    return p


def test_adaptive_threshold_voids_exactly_the_lowest_ratio_over_all_images():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, (10, 10)), rng.integers(0, 3, (10, 10))]
    confs = [rng.permutation(np.linspace(0.4, 0.99, 100)).reshape(10, 10) for _ in range(2)]
    confs[1] = confs[1] * 0.9  # the second image is less sure: more of its pixels go
    probs = [probs_from(c.astype(np.float32), lab) for c, lab in zip(confs, labels, strict=True)]
    out = refine_predictions(probs, ratio=0.25)
    voided = np.concatenate([(o == 255).ravel() for o in out])
    allc = np.concatenate([np.asarray(p.max(axis=0)).ravel() for p in probs])
    assert voided.sum() == 50  # 25 % of 200 distinct values
    assert set(np.flatnonzero(voided)) == set(np.argsort(allc)[:50])
    assert (out[1] == 255).sum() > (out[0] == 255).sum()
    for o, lab in zip(out, labels, strict=True):
        assert np.array_equal(o[o != 255], lab[o != 255])  # kept pixels keep the argmax
    assert all((o == 255).sum() == 0 for o in refine_predictions(probs, ratio=0.0))


def test_refine_snaps_to_superpixels_before_the_threshold():
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, 10:] = 255  # two flat halves: SLIC puts the cut at column 10
    lab = np.zeros((20, 20), np.int64)
    lab[:, 8:] = 1  # the prediction overshoots by two columns
    probs = probs_from(np.full((20, 20), 0.9, np.float32), lab, 2)
    out = refine_predictions([probs], ratio=0.0, images=[img], n_segments=4)[0]
    assert np.all(out[:, :10] == 0) and np.all(out[:, 10:] == 1)


@pytest.fixture
def shapes(tmp_path):
    voc = write_shapes_voc(tmp_path / "data", 4, size=32, seed=1)
    return voc


@pytest.mark.slow
def test_one_round_writes_refined_labels_and_resumes(shapes, tmp_path):
    samples, classes = load_samples(shapes)
    before = {s.image_id: s.labels.copy() for s in samples}
    cfg = TrainConfig(arch="lraspp", rounds=1, epochs=1, batch_size=2, size=32, ratio=0.3)
    seen = []
    state = self_train(samples, classes, tmp_path / "m", cfg, gt=shapes,
                       progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(1, 1)]
    assert state["initial_miou"] == pytest.approx(1.0)  # the input labels are the GT here
    rnd = state["rounds"][0]
    assert 0 <= rnd["labels_miou"] <= 1 and 0 <= rnd["model_miou"] <= 1
    labels_dir = tmp_path / "m" / "rounds" / "round-1" / "labels"
    for s in samples:
        written = read_label_png(labels_dir / f"{s.image_id}.png")
        assert np.array_equal(written, s.labels)  # the samples now train on the round's labels
    void = np.mean([np.mean(s.labels == 255) for s in samples])
    assert void == pytest.approx(0.3, abs=0.05)  # the ratio, up to ties
    assert any(not np.array_equal(before[s.image_id], s.labels) for s in samples)
    assert (tmp_path / "m" / "model.pt").is_file()
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["arch"] == "lraspp" and meta["rounds"] == 1
    # A second call with two rounds resumes: round 1 is not trained again.
    cfg2 = TrainConfig(arch="lraspp", rounds=2, epochs=1, batch_size=2, size=32, ratio=0.3)
    seen.clear()
    with pytest.raises(ValueError, match="other settings"):
        self_train(load_samples(shapes)[0], classes, tmp_path / "m",
                   TrainConfig(arch="lraspp", rounds=2, epochs=2, size=32))
    state = self_train(load_samples(shapes)[0], classes, tmp_path / "m", cfg2,
                       progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(2, 2)] and len(state["rounds"]) == 2
    assert (tmp_path / "m" / "rounds" / "round-2" / "labels").is_dir()

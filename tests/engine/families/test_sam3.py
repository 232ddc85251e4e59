"""SAM 3 through the real loader: a tiny random Sam3VideoModel folder, saved like the hub's.

The tiny model is transformers' own ``Sam3VideoModel`` (32 channels, 336 x 336 input) saved
with ``save_pretrained`` next to a ``Sam3Processor``, so ``load_engine`` reads it exactly as
it reads the ``facebook/sam3`` snapshot.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("transformers.models.sam3")

from napari_samlabel.core.prompts import Box  # noqa: E402
from napari_samlabel.engine.checkpoint import (  # noqa: E402
    CheckpointError,
    load_model,
    resolve_checkpoint,
)
from napari_samlabel.engine.families.sam3 import (  # noqa: E402
    HUB_REPO,
    TINY_CONFIG,
    TINY_MODEL_TYPE,
    architecture_key,
    save_tiny_pretrained,
    state_fingerprint,
)
from napari_samlabel.engine.loader import load_engine  # noqa: E402
from napari_samlabel.engine.protocol import (  # noqa: E402
    ConceptEngine,
    EncodingEngine,
    Prediction,
    SamInputs,
)

SIDE = 336  # the tiny model's input size


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_pretrained(tmp_path_factory.mktemp("sam3") / "tiny", seed=0)


@pytest.fixture(scope="module")
def engine(folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("sam3_cache")
    return load_engine(TINY_MODEL_TYPE, folder, device="cpu", precise=True,
                       cache=root / "emb", cache_dir=root)


@pytest.fixture()
def image():
    rng = np.random.default_rng(3)
    return (rng.random((96, 128, 3)) * 255).astype(np.uint8)


def _pts(*xy, labels=None, **kw):
    coords = np.array(xy, dtype=np.float32)
    labels = np.ones(len(xy), np.int32) if labels is None else np.array(labels, np.int32)
    return SamInputs(point_coords=coords, point_labels=labels, **kw)


def test_the_hub_layout_loads_through_the_real_loader(engine, folder):
    assert isinstance(engine, ConceptEngine) and isinstance(engine, EncodingEngine)
    assert engine.model_id.startswith(f"{TINY_MODEL_TYPE}:") and engine.family == "sam3"
    assert engine.logits_frame == "stretch"
    # one ViT serves the detector and the tracker
    model = engine.model
    assert model.tracker.vision_encoder.backbone is model.detector.vision_encoder.backbone
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


def test_fingerprint_of_the_saved_weights_names_the_family(folder):
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    assert state_fingerprint(state) == architecture_key(TINY_CONFIG) == ("vit", "sam3", 32, 2)
    assert state_fingerprint({"image_encoder.x": None}) is None


def test_tracker_weights_are_the_saved_ones(engine, folder):
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.endswith("mask_decoder.iou_token.weight")
               and k.startswith("tracker_model."))
    np.testing.assert_array_equal(
        engine.model.tracker.mask_decoder.iou_token.weight.numpy(), state[key].numpy())
    neck = engine.model.tracker.vision_encoder.neck.fpn_layers[0].proj1.weight
    np.testing.assert_array_equal(neck.numpy(),
                                  state["tracker_neck.fpn_layers.0.proj1.weight"].numpy())


def test_predict_shapes(engine, image):
    engine.set_image(image)
    pred = engine.predict(_pts((60, 40)))
    assert isinstance(pred, Prediction) and pred.logits_frame == "stretch"
    assert pred.masks.shape == (3, 96, 128) and pred.masks.dtype == bool
    assert pred.iou_predictions.shape == (3,) and pred.low_res_logits.shape == (3, 256, 256)
    single = engine.predict(SamInputs(box=np.array([30, 20, 90, 60], np.float32),
                                      multimask_output=False))
    assert single.masks.shape == (1, 96, 128) and single.low_res_logits.shape == (1, 256, 256)
    with pytest.raises(ValueError):
        engine.predict(SamInputs())


def test_points_and_boxes_reach_the_tracker_in_its_input_frame(engine, image):
    """(x, y) pixels are stretched to the 336 x 336 input: x * 336 / W, y * 336 / H."""
    engine.set_image(image)  # 96 rows x 128 cols
    got = engine.tracker_inputs(_pts((100, 10), (5, 90), labels=[1, 0],
                                     box=np.array([30, 20, 90, 60], np.float32)))
    sx, sy = SIDE / 128, SIDE / 96
    np.testing.assert_allclose(got["input_points"][0, 0].numpy(),
                               [[100 * sx, 10 * sy], [5 * sx, 90 * sy]], rtol=1e-5)
    assert got["input_labels"][0, 0].tolist() == [1, 0]
    np.testing.assert_allclose(got["input_boxes"][0, 0].numpy(),
                               [30 * sx, 20 * sy, 90 * sx, 60 * sy], rtol=1e-5)


def test_exemplar_boxes_reach_the_detector_normalised_with_labels(engine, image):
    engine.set_image(image)
    got = engine.concept_inputs("dog", [Box((20, 30), (60, 90))], [Box((0, 0), (48, 64))])
    # rows 20..60, cols 30..90 on a 96 x 128 image -> (cx, cy, w, h) in [0, 1]
    np.testing.assert_allclose(got["input_boxes"][0].numpy(),
                               [[60 / 128, 40 / 96, 60 / 128, 40 / 96],
                                [32 / 128, 24 / 96, 64 / 128, 48 / 96]], rtol=1e-5)
    assert got["input_boxes_labels"][0].tolist() == [1, 0]


def _spy_tracker(engine, monkeypatch):
    seen = {}
    tracker = engine.model.tracker
    original = tracker.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(tracker, "forward", spy)
    return seen


def test_previous_logits_go_back_as_mask_input(engine, image, monkeypatch):
    engine.set_image(image)
    first = engine.predict(_pts((60, 40)))
    prev = first.low_res_logits[[int(np.argmax(first.iou_predictions))]]
    seen = _spy_tracker(engine, monkeypatch)
    with_logits = engine.predict(_pts((60, 40), (70, 30), mask_input=prev,
                                      multimask_output=False))
    np.testing.assert_array_equal(seen["input_masks"].numpy()[0], prev)
    seen.clear()
    without = engine.predict(_pts((60, 40), (70, 30), multimask_output=False))
    assert seen.get("input_masks") is None
    assert not np.array_equal(with_logits.low_res_logits, without.low_res_logits)


def test_one_encoding_per_image(engine, image):
    other = image[::-1].copy()
    engine.set_image(image)
    count = engine.encode_count
    assert engine.is_cached(image)
    engine.set_image(image)
    engine.find_all("dog", threshold=0.0)
    engine.predict(_pts((60, 40)))
    assert engine.encode_count == count  # concept prompts and clicks share it
    engine.set_image(other)
    engine.set_image(image)
    assert engine.encode_count == count + 1
    emb, hit = engine.encode(image)
    assert hit and emb.precision == engine.precision and emb.features.shape == (1, 32, 24, 24)


def test_find_all_gives_candidates_best_first(engine, image):
    engine.set_image(image)
    found = engine.find_all("potted plant", threshold=0.0)
    assert found, "the tiny model proposes instances at threshold 0"
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)
    for c in found:
        assert c.source == "text:potted plant" and c.mask.shape == (96, 128) and c.area > 0
        assert c.low_res_logits is not None and c.low_res_logits.shape == (256, 256)
        assert c.logits_frame == "stretch" and c.prompts == (c.box,)
        assert c.box is not None
        (r0, c0), (r1, c1) = c.box.top_left, c.box.bottom_right
        assert 0 <= r0 <= r1 <= 96 and 0 <= c0 <= c1 <= 128
    high = engine.find_all("potted plant", threshold=scores[0])
    assert [c.score for c in high] == [s for s in scores if s >= scores[0]]
    assert engine.find_all("potted plant", threshold=1.0) == []
    similar = engine.find_all(exemplars=[Box((20, 30), (60, 90))], threshold=0.0)
    assert similar and all(c.source == "exemplar" for c in similar)


def test_a_candidates_logits_refine_it(engine, image, monkeypatch):
    engine.set_image(image)
    cand = engine.find_all("dog", threshold=0.0)[0]
    seen = _spy_tracker(engine, monkeypatch)
    pred = engine.predict(_pts((60, 40), mask_input=cand.low_res_logits,
                               multimask_output=False))
    np.testing.assert_array_equal(seen["input_masks"].numpy()[0, 0], cand.low_res_logits)
    assert pred.masks.shape == (1, 96, 128)


def test_find_all_needs_a_concept_and_an_image(engine, image):
    engine.set_image(image)
    with pytest.raises(ValueError, match="phrase"):
        engine.find_all()
    with pytest.raises(ValueError, match="phrase"):
        engine.find_all(text="  ", negatives=[Box((0, 0), (5, 5))])
    engine.reset_image()
    with pytest.raises(RuntimeError, match="no image"):
        engine.find_all("dog")
    with pytest.raises(RuntimeError, match="no image"):
        engine.predict(_pts((1, 1)))


def test_folder_problems_are_clear_errors(folder, tmp_path):
    with pytest.raises(CheckpointError, match="takes a folder"):
        resolve_checkpoint(TINY_MODEL_TYPE, tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="lacks config.json"):
        resolve_checkpoint(TINY_MODEL_TYPE, empty)
    # a file inside the folder stands for the folder
    got = resolve_checkpoint(TINY_MODEL_TYPE, folder / "config.json", cache_dir=tmp_path)
    assert got.path == folder and got.source == "explicit"


def test_a_detector_only_folder_is_refused(folder, tmp_path):
    from transformers import Sam3Model

    detector_only = tmp_path / "detector"
    Sam3Model.from_pretrained(folder).save_pretrained(detector_only)
    with pytest.raises(CheckpointError, match="tracker"):
        load_model(TINY_MODEL_TYPE, detector_only)


def _hub_cache(monkeypatch, tmp_path, offline=True):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    return cache


@pytest.mark.parametrize("download", [False, True])
def test_offline_without_weights_says_what_where_and_how(monkeypatch, tmp_path, download):
    cache = _hub_cache(monkeypatch, tmp_path)
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("sam3", download=download, cache_dir=tmp_path)
    msg = str(info.value)
    assert HUB_REPO in msg and "gated" in msg and "hf auth login" in msg
    assert f"hf download {HUB_REPO} --local-dir DIR" in msg and "--checkpoint DIR" in msg
    assert str(cache / "models--facebook--sam3") in msg
    assert ("offline" in msg) if download else ("downloads are disabled" in msg)


def test_the_hub_cache_snapshot_is_found(monkeypatch, tmp_path, folder):
    from napari_samlabel.engine.catalogue import model_choices

    cache = _hub_cache(monkeypatch, tmp_path)
    repo = cache / "models--facebook--sam3"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    got = resolve_checkpoint("sam3", download=False, cache_dir=tmp_path)
    assert got.source == "cache" and got.path == repo / "snapshots" / commit
    assert got.model_id.startswith("sam3:")
    explicit = resolve_checkpoint("sam3", folder, cache_dir=tmp_path)
    assert explicit.model_id == got.model_id  # same files, same identity
    rows = {r.name: r for r in model_choices(tmp_path)}
    assert rows["sam3"].cached and rows["sam3"].cpu_encode_s


def test_samlabel_models_lists_sam3_with_its_speed(tmp_path, capsys, monkeypatch):
    from napari_samlabel.cli import main

    _hub_cache(monkeypatch, tmp_path)
    assert main(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    block = next(b for b in out.split("\n\n") if b.startswith("sam3:"))
    assert "family: SAM 3" in block and "s per image on 2 CPU cores" in block
    assert "huggingface.co/facebook/sam3" in block and "--checkpoint DIR" in block


@pytest.mark.parametrize("forced", ["", "int8"])
def test_default_precision_agrees_with_float32(folder, image, engine, forced, monkeypatch):
    """The default engine (bfloat16 autocast where the CPU has it, else int8 linears where
    it has VNNI) finds the same objects; so does int8 asked for."""
    from napari_samlabel.engine.base import fast_precision
    from napari_samlabel.engine.int8 import int8_available

    if forced == "int8" and not int8_available():
        pytest.skip("oneDNN's int8 linear does not run here")
    monkeypatch.setenv("SAMLABEL_PRECISION", forced)
    fast = load_engine(TINY_MODEL_TYPE, folder, device="cpu", cache=None)
    assert fast.precision == (forced or fast_precision(fast.device))
    fast.set_image(image)
    engine.set_image(image)
    a = fast.find_all("dog", threshold=0.0)
    b = engine.find_all("dog", threshold=0.0)
    assert len(a) == len(b)
    np.testing.assert_allclose([c.score for c in a], [c.score for c in b], atol=0.05)
    assert all(c.low_res_logits.dtype == np.float32 for c in a)
    pred = fast.predict(_pts((60, 40), mask_input=a[0].low_res_logits))
    assert pred.low_res_logits.dtype == np.float32


def test_pseudo_label_text_through_the_cli_and_the_real_loader(folder, tmp_path, capsys):
    """samlabel pseudo-label --kind text --model <sam3> --checkpoint DIR, end to end."""
    import json

    from PIL import Image

    from napari_samlabel.cli import main

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(
            images / f"im{k}.png")
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\npottedplant\n")
    out = tmp_path / "out"
    code = main(["pseudo-label", str(images), "--kind", "text", "--out", str(out),
                 "--classes", str(classes), "--model", TINY_MODEL_TYPE, "--checkpoint",
                 str(folder), "--score-threshold", "0", "--precise",
                 "--cache", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "scores" / "im0.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "text" and run["model_id"].startswith(f"{TINY_MODEL_TYPE}:")
    assert run["policy"]["unit"] == "concept" and run["policy"]["score_threshold"] == 0.0
    assert record["objects"], "threshold 0 keeps the tiny model's instances"
    assert {o["phrase"] for o in record["objects"]} == {"cat", "potted plant"}
    assert {o["source"] for o in record["objects"]} == {"text:cat", "text:potted plant"}
    assert (out / "SegmentationClass" / "im0.png").is_file()

"""The WPS-SAM prompter: shapes and wiring on the tiny SAM, matching, identity, resuming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_samlabel.core.candidates import Candidate  # noqa: E402
from napari_samlabel.core.classes import ClassTable  # noqa: E402
from napari_samlabel.engine.protocol import ProposalSource  # noqa: E402
from napari_samlabel.learn.prompter import (  # noqa: E402
    Prompter,
    PrompterConfig,
    PrompterError,
    PrompterInfo,
    check_engine,
    config_for,
    decode_tokens,
    load_prompter,
    save_prompter,
    teacher_tokens,
)
from napari_samlabel.learn.propose import PrompterSource  # noqa: E402
from napari_samlabel.learn.train_prompter import (  # noqa: E402
    FeatureReader,
    Sample,
    TrainConfig,
    embedding_stats,
    hungarian_match,
    match_cost,
    prompter_loss,
    resume_path,
    train,
)

TABLE = ClassTable(("background", "dog", "dog/head"))
SMALL = {"d_model": 32, "heads": 4, "encoder_layers": 1, "decoder_layers": 1,
         "feedforward": 64, "queries": 5}


def _prompter(engine, seed: int = 0) -> tuple[Prompter, PrompterInfo]:
    torch.manual_seed(seed)
    cfg = config_for(engine, len(TABLE) - 1, **SMALL)
    return Prompter(cfg).eval(), PrompterInfo(cfg, TABLE, engine.model_id)


def test_shapes_follow_the_engines_prompt_encoder(tiny_engine, rect_image):
    pe = tiny_engine.model.prompt_encoder
    model, info = _prompter(tiny_engine)
    assert info.config.in_channels == pe.embed_dim
    assert info.config.embed_size == tuple(pe.image_embedding_size)
    tiny_engine.set_image(rect_image)
    logits, tokens = model(tiny_engine.predictor.features)
    assert logits.shape == (1, 5, len(TABLE))  # 2 classes + no object
    # Tokens are shaped like SAM's sparse embedding of one box.
    box = teacher_tokens(tiny_engine, rect_image.shape[:2], boxes_xyxy=np.array([[30, 20, 89, 59]]))
    assert tokens.shape[2:] == box.shape[1:] == (2, pe.embed_dim)
    point = teacher_tokens(tiny_engine, rect_image.shape[:2], points_xy=np.array([[60, 40]]))
    assert point.shape == box.shape
    with pytest.raises(ValueError, match="image embeddings"):
        model(torch.zeros(1, 3, 64, 64))


def test_teacher_tokens_are_sams_box_embedding(tiny_engine, rect_image):
    """The teacher fed to SAM's decoder gives the mask SAM's own box prompt gives."""
    from napari_samlabel.engine.protocol import SamInputs

    tiny_engine.set_image(rect_image)
    box = np.array([30, 20, 89, 59], np.float32)
    teach = teacher_tokens(tiny_engine, rect_image.shape[:2], boxes_xyxy=box[None])
    low, _ = decode_tokens(tiny_engine, tiny_engine.predictor.features, teach)
    ref = tiny_engine.predict(SamInputs(box=box, multimask_output=False))
    np.testing.assert_allclose(low[0].numpy(), ref.low_res_logits, atol=1e-4)


def test_propose_gives_candidates_from_sams_decoder(tiny_engine, rect_image):
    model, info = _prompter(tiny_engine)
    source = PrompterSource(model, info, min_score=0.0, nms_iou=1.0)
    assert isinstance(source, ProposalSource)
    session_table = ClassTable(("background", "cat", "dog/head", "dog"))
    cands = source.propose(tiny_engine, rect_image, session_table)
    assert cands and all(isinstance(c, Candidate) for c in cands)
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for c in cands:
        assert c.mask.shape == rect_image.shape[:2] and c.mask.any()
        assert c.source == "prompter" and c.low_res_logits.shape == (256, 256)
        assert c.class_id in (2, 3)  # mapped by name into the session's table
        rows, cols = np.nonzero(c.mask)
        assert c.box.top_left == (rows.min(), cols.min())
        assert c.box.bottom_right == (rows.max(), cols.max())
    # A high threshold keeps only confident queries (an untrained prompter has none).
    assert PrompterSource(model, info, min_score=0.99).propose(tiny_engine, rect_image) == []


def test_hungarian_matching_picks_the_cheapest_pairs():
    # Greedy (cheapest first: query 0 -> teacher 0) would cost 1 + 9 + 3; the optimum 7.
    cost = np.array([[1.0, 2.0, 9.0],
                     [2.0, 9.0, 9.0],
                     [9.0, 9.0, 3.0],
                     [9.0, 9.0, 9.0]])
    rows, cols = hungarian_match(cost)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0, 2: 2}


def test_match_cost_weighs_class_and_l1():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    tokens = torch.zeros(2, 2, 4)
    tokens[1] += 1.0
    targets = torch.zeros(2, 2, 4)
    targets[0] += 1.0  # teacher 0 sits where query 1's tokens are
    cost = match_cost(probs, tokens, torch.tensor([1, 0]), targets, alpha=10, beta=1)
    assert cost.shape == (2, 2)
    assert cost[1, 0] == pytest.approx(-10 * 0.8 + 0.0)
    assert cost[0, 0] == pytest.approx(-10 * 0.05 + 1.0)
    rows, cols = hungarian_match(cost)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}


def test_loss_prefers_the_right_answer():
    cfg = TrainConfig()
    teach = torch.randn(1, 2, 8)
    targets = [(torch.tensor([1]), teach)]
    logits = torch.full((1, 3, 3), -5.0)
    logits[0, :, 2] = 5.0          # every query says "no object" ...
    good = logits.clone()
    good[0, 1] = torch.tensor([-5.0, 5.0, -5.0])  # ... but one finds class 1
    tokens = torch.zeros(1, 3, 2, 8)
    right = tokens.clone()
    right[0, 1] = teach[0]
    loss_bad, _ = prompter_loss(logits, tokens, targets, cfg)
    loss_good, parts = prompter_loss(good, right, targets, cfg)
    assert parts["reg"] == pytest.approx(0.0)
    assert loss_good < 0.1 * loss_bad
    # An image without objects only teaches "no object".
    empty, _ = prompter_loss(logits, tokens, [(torch.zeros(0, dtype=torch.long),
                                               torch.zeros(0, 2, 8))], cfg)
    assert float(empty) < 0.01


def test_saved_prompter_refuses_another_sam(tmp_path, tiny_engine, tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import save_tiny_checkpoint

    model, info = _prompter(tiny_engine)
    path = save_prompter(tmp_path / "p.pt", model, info)
    loaded, info2 = load_prompter(path)
    assert info2.model_id == tiny_engine.model_id and info2.classes == TABLE
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    check_engine(info2, tiny_engine)  # the same SAM: fine
    other = load_engine("vit_tiny_test", save_tiny_checkpoint(tmp_path / "o.pt", seed=1),
                        device="cpu", cache=None)
    assert other.model_id != tiny_engine.model_id
    with pytest.raises(PrompterError, match="trained against SAM"):
        check_engine(info2, other)
    with pytest.raises(PrompterError, match="trained against SAM"):
        PrompterSource(loaded, info2).propose(other, np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "junk.pt").write_bytes(b"not a prompter")
    with pytest.raises(PrompterError, match="junk.pt"):
        load_prompter(tmp_path / "junk.pt")


def _fake_samples(n: int = 6, dim: int = 256) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = 1 + i % 2
        out.append(Sample(f"im{i}", "val" if i == 0 else "train",
                          torch.tensor([i % 2] * k), torch.randn(k, 2, dim), f"key{i}",
                          rng.standard_normal((1, dim, 64, 64)).astype(np.float16)))
    return out


def test_training_resumes_after_a_kill(tmp_path, tiny_engine):
    """Stopping after an epoch and resuming gives exactly the uninterrupted run."""
    samples = _fake_samples()
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3)
    pcfg = PrompterConfig(len(TABLE) - 1, **SMALL)
    names = TABLE.to_list()
    whole = train(tiny_engine, samples, names, tmp_path / "whole.pt", cfg, pcfg, device="cpu")
    assert [h["epoch"] for h in whole.history] == [1, 2, 3] and whole.resumed_from == 0

    out = tmp_path / "p.pt"
    first = train(tiny_engine, samples, names, out, cfg, pcfg, device="cpu",
                  max_epochs_this_run=1)
    assert first.stopped_early and len(first.history) == 1 and resume_path(out).is_file()
    messages: list[str] = []
    second = train(tiny_engine, samples, names, out, cfg, pcfg, device="cpu",
                   log=messages.append)
    assert second.resumed_from == 1 and [h["epoch"] for h in second.history] == [1, 2, 3]
    assert any("resuming after epoch 1" in m for m in messages)
    for a, b in zip(whole.history, second.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    best = load_prompter(out)[1]
    assert best.trained["epoch"] == second.best_epoch
    # Other data: the state is not reused.
    messages.clear()
    third = train(tiny_engine, samples[1:], names, out, cfg, pcfg, device="cpu",
                  max_epochs_this_run=1, log=messages.append)
    assert third.resumed_from == 0 and any("starting over" in m for m in messages)


def test_input_standardisation_removes_a_per_channel_offset_and_scale():
    """With the statistics of its input set, a prompter sees the standardised embedding."""
    torch.manual_seed(0)
    cfg = PrompterConfig(2, **SMALL)
    plain = Prompter(cfg).eval()
    assert torch.equal(plain.input_mean, torch.zeros(256))  # identity until set
    assert torch.equal(plain.input_std, torch.ones(256))
    shifted = Prompter(cfg).eval()
    shifted.load_state_dict(plain.state_dict())
    mean, std = torch.randn(256) * 3, torch.rand(256) * 4 + 0.5
    shifted.set_input_stats(mean, std.numpy())
    x = torch.randn(2, 256, 64, 64)
    with torch.no_grad():
        a, ta = plain(x)
        b, tb = shifted(x * std[:, None, None] + mean[:, None, None])
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ta, tb, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="256 channels"):
        shifted.set_input_stats(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        shifted.set_input_stats(torch.zeros(256), torch.zeros(256))


def test_embedding_stats_are_per_channel_over_images_and_positions():
    samples = _fake_samples(3, dim=4)
    samples[1].features[0, 2] = 7.0  # channel 2 of image 1 constant ...
    samples[0].features[0, 2] = 7.0
    samples[2].features[0, 2] = 7.0  # ... in every image: std 0 -> 1
    mean, std = embedding_stats(samples, FeatureReader(None))
    x = np.concatenate([s.features for s in samples]).astype(np.float64)
    np.testing.assert_allclose(mean, x.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    expect = x.std((0, 2, 3))
    expect[2] = 1.0
    np.testing.assert_allclose(std, expect, rtol=1e-4)
    assert mean[2] == pytest.approx(7.0, rel=1e-3)
    with pytest.raises(ValueError, match="at least one"):
        embedding_stats([], FeatureReader(None))


def test_training_sets_the_input_statistics_from_the_training_images(tmp_path, tiny_engine):
    samples = _fake_samples()
    for s in samples:  # an offset and a scale the prompter must remove
        s.features = (s.features.astype(np.float32) * 2 + 5).astype(np.float16)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3)
    pcfg = PrompterConfig(len(TABLE) - 1, **SMALL)
    train(tiny_engine, samples, TABLE.to_list(), tmp_path / "p.pt", cfg, pcfg, device="cpu")
    model, _ = load_prompter(tmp_path / "p.pt")
    mean, std = embedding_stats([s for s in samples if s.split == "train"],
                                FeatureReader(tiny_engine))
    np.testing.assert_allclose(model.input_mean.numpy(), mean)
    np.testing.assert_allclose(model.input_std.numpy(), std)
    assert model.input_mean.mean() == pytest.approx(5.0, abs=0.05)
    assert model.input_std.mean() == pytest.approx(2.0, abs=0.05)


def test_a_prompter_file_without_input_statistics_loads_with_identity(tmp_path, tiny_engine):
    """Files written before the standardisation existed still load (they never used it)."""
    from napari_samlabel.learn.prompter import prompter_payload

    model, info = _prompter(tiny_engine)
    payload = prompter_payload(model, info)
    del payload["state_dict"]["input_mean"], payload["state_dict"]["input_std"]
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_prompter(tmp_path / "old.pt")
    assert torch.equal(loaded.input_mean, torch.zeros(256))
    assert torch.equal(loaded.input_std, torch.ones(256))
    payload["state_dict"]["stem.0.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(PrompterError, match="do not fit"):
        load_prompter(tmp_path / "bad.pt")


def test_prompter_config_rejects_bad_shapes():
    with pytest.raises(ValueError):
        PrompterConfig(0)
    with pytest.raises(ValueError):
        PrompterConfig(2, d_model=30, heads=8)
    assert PrompterConfig.paper(3).encoder_layers == 6


def test_unsupported_engine_is_refused(tmp_path: Path):
    from napari_samlabel.learn.prompter import sam_model

    class NotSam:
        family = "sam2"
        model = object()

    with pytest.raises(PrompterError, match="SAM and MobileSAM"):
        sam_model(NotSam())

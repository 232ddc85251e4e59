import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from napari_samlabel.engine import checkpoint as ck
from napari_samlabel.engine import registry
from napari_samlabel.engine.checkpoint import (
    CheckpointError,
    cache_root,
    file_sha256,
    load_sam,
    resolve_checkpoint,
)
from napari_samlabel.testing.models import TINY_MODEL_TYPE, build_tiny_sam


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _serve_as_vit_b(monkeypatch, url: str, sha256: str) -> None:
    spec = dataclasses.replace(registry.get_model_spec("vit_b"), url=url, sha256=sha256)
    monkeypatch.setitem(registry._MODELS, "vit_b", spec)


# --- cache root and SHA index -------------------------------------------------------------


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(ck.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(ck.CACHE_ENV_VAR)
    assert "napari-samlabel" in str(cache_root())


def test_file_sha256_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "weights.pth"
    f.write_bytes(b"abc" * 1000)
    assert file_sha256(f, tmp_path / "cache") == _sha(f)
    assert (tmp_path / "cache" / "sha256-index.json").is_file()

    def boom(path):
        raise AssertionError("should not rehash an unchanged file")

    monkeypatch.setattr(ck, "_hash_file", boom)
    assert file_sha256(f, tmp_path / "cache") == _sha(f)
    monkeypatch.undo()
    f.write_bytes(b"changed content, other size")
    assert file_sha256(f, tmp_path / "cache") == _sha(f)


# --- explicit files and loading -----------------------------------------------------------


def test_explicit_checkpoint_resolves_with_model_id(tiny_checkpoint, tmp_path):
    res = resolve_checkpoint(TINY_MODEL_TYPE, tiny_checkpoint, cache_dir=tmp_path)
    assert res.source == "explicit"
    assert res.path == tiny_checkpoint
    assert res.sha256 == _sha(tiny_checkpoint)
    assert res.model_id == f"{TINY_MODEL_TYPE}:{res.sha256[:16]}"


def test_missing_explicit_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth.*does not exist"):
        resolve_checkpoint("vit_b", missing, cache_dir=tmp_path)


def test_load_tiny_checkpoint_through_real_loader(tiny_checkpoint):
    import torch

    sam = load_sam(TINY_MODEL_TYPE, tiny_checkpoint)
    ref = build_tiny_sam(0).state_dict()
    got = sam.state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert not sam.training


def test_tiny_checkpoint_as_vit_b_is_wrong_architecture(tiny_checkpoint):
    with pytest.raises(CheckpointError) as err:
        load_sam("vit_b", tiny_checkpoint)
    msg = str(err.value)
    assert str(tiny_checkpoint) in msg
    assert "'vit_b'" in msg
    assert "looks like a 'vit_tiny_test' checkpoint" in msg


def test_missing_and_reshaped_keys_are_reported(tiny_checkpoint, tmp_path):
    import torch

    state = torch.load(tiny_checkpoint, weights_only=True)
    state.pop("mask_decoder.iou_token.weight")
    bad = tmp_path / "missing_key.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="missing_key.pth.*vit_tiny_test.*iou_token"):
        load_sam(TINY_MODEL_TYPE, bad)

    state = torch.load(tiny_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(2, 3)
    bad = tmp_path / "bad_shape.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="bad_shape.pth.*size mismatch"):
        load_sam(TINY_MODEL_TYPE, bad)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_corrupt_file_is_a_clear_error(tiny_checkpoint, tmp_path, kind):
    bad = tmp_path / f"{kind}.pth"
    if kind == "garbage":
        bad.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        bad.write_bytes(tiny_checkpoint.read_bytes()[: tiny_checkpoint.stat().st_size // 2])
    else:
        bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{kind}.pth.*'vit_tiny_test'.*corrupt"):
        load_sam(TINY_MODEL_TYPE, bad)


def test_not_a_state_dict(tmp_path):
    import torch

    bad = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), bad)
    with pytest.raises(CheckpointError, match="tensor.pth is not a state dict"):
        load_sam(TINY_MODEL_TYPE, bad)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path):
    import torch

    bad = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_sam(TINY_MODEL_TYPE, bad)


def test_test_model_cannot_be_downloaded(tmp_path):
    with pytest.raises(CheckpointError, match="FOR TESTS ONLY.*--checkpoint PATH"):
        resolve_checkpoint(TINY_MODEL_TYPE, cache_dir=tmp_path)


# --- download -----------------------------------------------------------------------------


def test_download_verifies_and_caches(monkeypatch, http_root, tmp_path):
    served, base = http_root
    payload = os.urandom(3 * (1 << 20) + 123)
    (served / "sam_vit_b_01ec64.pth").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    _serve_as_vit_b(monkeypatch, base + "sam_vit_b_01ec64.pth", sha)
    calls = []

    res = resolve_checkpoint(
        "vit_b", cache_dir=tmp_path, progress=lambda d, t, m: calls.append((d, t, m))
    )
    assert res.source == "download"
    assert res.path == tmp_path / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert res.path.read_bytes() == payload
    assert res.model_id == f"vit_b:{sha[:16]}"
    assert sorted(p.name for p in res.path.parent.iterdir()) == ["sam_vit_b_01ec64.pth"]
    assert calls and calls[-1][0] == calls[-1][1] == len(payload)
    assert calls[-1][2] == "sam_vit_b_01ec64.pth"

    # Server gone: the verified cached copy is used.
    (served / "sam_vit_b_01ec64.pth").unlink()
    again = resolve_checkpoint("vit_b", cache_dir=tmp_path)
    assert again.source == "cache" and again.sha256 == sha


def test_download_with_wrong_sha_leaves_nothing(monkeypatch, http_root, tmp_path):
    served, base = http_root
    (served / "sam_vit_b_01ec64.pth").write_bytes(b"not the real weights" * 100)
    _serve_as_vit_b(monkeypatch, base + "sam_vit_b_01ec64.pth", "0" * 64)
    with pytest.raises(CheckpointError, match="failed SHA-256 verification.*nothing was saved"):
        resolve_checkpoint("vit_b", cache_dir=tmp_path)
    folder = tmp_path / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_offline_error_says_what_where_and_how(monkeypatch, closed_port_url, tmp_path):
    _serve_as_vit_b(monkeypatch, closed_port_url, registry.get_model_spec("vit_b").sha256)
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("vit_b", cache_dir=tmp_path)
    msg = str(err.value)
    target = tmp_path / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert "sam_vit_b_01ec64.pth" in msg
    assert closed_port_url in msg
    assert str(target) in msg
    assert "--checkpoint PATH" in msg
    # the reason in words, not urllib3's nested retry report
    assert "no connection to the server" in msg
    assert "ConnectionPool" not in msg and "Max retries" not in msg
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_downloads_disabled(tmp_path):
    with pytest.raises(CheckpointError, match="downloads are disabled.*--checkpoint"):
        resolve_checkpoint("vit_h", cache_dir=tmp_path, download=False)


def test_damaged_cached_file_is_downloaded_again(monkeypatch, http_root, tmp_path):
    served, base = http_root
    payload = b"good weights" * 1000
    (served / "sam_vit_b_01ec64.pth").write_bytes(payload)
    _serve_as_vit_b(monkeypatch, base + "sam_vit_b_01ec64.pth", hashlib.sha256(payload).hexdigest())
    target = tmp_path / "checkpoints" / "sam_vit_b_01ec64.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"bit rot")
    with pytest.warns(UserWarning, match="removing it and downloading it again"):
        res = resolve_checkpoint("vit_b", cache_dir=tmp_path)
    assert res.source == "download" and target.read_bytes() == payload

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from napari_samlabel.engine.cache import (
    EMBEDDING_SHAPE,
    FORMAT_VERSION,
    Embedding,
    EmbeddingCache,
    image_key,
)

MODEL = "vit_tiny_test:0123456789abcdef"


def _emb(seed: int = 0, model_id: str = MODEL) -> Embedding:
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 0.3, EMBEDDING_SHAPE).astype(np.float32)
    return Embedding(feats, (375, 500), (768, 1024), model_id)


def _cos(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_image_key_depends_on_content_shape_and_dtype():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert image_key(img) == image_key(img.copy())
    assert image_key(img) != image_key(img.reshape(3, 2, 3))
    other = img.copy()
    other[0, 0, 0] += 1
    assert image_key(img) != image_key(other)
    # Non-contiguous views hash their pixels, not their memory layout.
    assert image_key(img[:, ::-1]) == image_key(np.ascontiguousarray(img[:, ::-1]))


def test_embedding_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(1, 256, 64, 64\)"):
        Embedding(np.zeros((256, 64, 64), np.float32), (1, 1), (1, 1), MODEL)


def test_memory_lru_is_bounded():
    cache = EmbeddingCache(None, memory_items=2)
    for i in range(3):
        cache.put(f"k{i}", _emb(i))
    assert len(cache) == 2
    assert cache.get(MODEL, "k0") is None
    assert cache.get(MODEL, "k1") is not None  # k1 is now most recent
    cache.put("k3", _emb(3))
    assert cache.get(MODEL, "k2") is None
    assert cache.get(MODEL, "k1") is not None


def test_disk_round_trip_in_documented_format(tmp_path):
    emb = _emb()
    stored = EmbeddingCache(tmp_path).put("abc", emb)
    assert stored.features.dtype == np.float16
    assert _cos(stored.features, emb.features) > 0.99999

    fresh = EmbeddingCache(tmp_path)  # empty memory: must come from disk
    got = fresh.get(MODEL, "abc")
    assert got is not None
    np.testing.assert_array_equal(got.features, stored.features)
    assert got.original_size == (375, 500) and got.input_size == (768, 1024)
    assert got.model_id == MODEL

    path = fresh.path_for(MODEL, "abc")
    assert path == tmp_path / "vit_tiny_test-0123456789abcdef" / "abc.npz"
    with np.load(path) as npz:  # plain numpy can read it
        assert set(npz.files) == {
            "embedding", "original_size", "input_size", "model_id", "precision",
            "format_version"
        }
        assert int(npz["format_version"]) == FORMAT_VERSION
        assert str(npz["model_id"]) == MODEL
        assert str(npz["precision"]) == "float32"


def test_extra_feature_maps_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    extras = {"high_res_0": rng.normal(size=(1, 32, 256, 256)).astype(np.float32),
              "high_res_1": rng.normal(size=(1, 64, 128, 128)).astype(np.float32)}
    emb = Embedding(_emb().features, (375, 500), (1024, 1024), MODEL, extras=extras)
    stored = EmbeddingCache(tmp_path).put("k", emb)
    assert {k: v.dtype for k, v in stored.extras.items()} == {
        "high_res_0": np.float16, "high_res_1": np.float16}
    got = EmbeddingCache(tmp_path).get(MODEL, "k")
    assert set(got.extras) == set(extras)
    for name, arr in extras.items():
        np.testing.assert_array_equal(got.extras[name], stored.extras[name])
        assert _cos(got.extras[name], arr) > 0.99999
    with np.load(EmbeddingCache(tmp_path).path_for(MODEL, "k")) as npz:
        assert {"extra__high_res_0", "extra__high_res_1"} <= set(npz.files)
    assert got.nbytes == stored.nbytes == sum(
        a.size * 2 for a in (emb.features, *extras.values()))


def test_precision_is_part_of_the_key(tmp_path):
    """A --precise engine never gets a bfloat16 embedding; a bfloat16 engine takes float32."""
    cache = EmbeddingCache(tmp_path, memory_items=0)
    fast = Embedding(_emb(1).features, (375, 500), (768, 1024), MODEL, precision="bfloat16")
    cache.put("k", fast)
    assert cache.path_for(MODEL, "k", "bfloat16").parent.name.endswith("-bf16")
    assert cache.get(MODEL, "k", "float32") is None
    assert not cache.contains(MODEL, "k", "float32")
    assert cache.get(MODEL, "k", "bfloat16").precision == "bfloat16"
    cache.put("j", _emb(2))  # float32
    assert cache.contains(MODEL, "j", "bfloat16")
    got = cache.get(MODEL, "j", "bfloat16")
    assert got.precision == "float32"
    # Memory level honours it too.
    mem = EmbeddingCache(None)
    mem.put("k", fast)
    assert mem.get(MODEL, "k") is None and mem.get(MODEL, "k", "bfloat16") is not None
    with pytest.raises(ValueError, match="precision"):
        cache.get(MODEL, "k", "float16")


def test_int8_embeddings_are_served_to_int8_engines_only(tmp_path):
    """int8 is the least precise: its files have their own folder, and an int8 engine also
    takes a float32 (first) or bfloat16 embedding."""
    cache = EmbeddingCache(tmp_path, memory_items=0)
    cache.put("k", Embedding(_emb(1).features, (375, 500), (768, 1024), MODEL,
                             precision="int8"))
    assert cache.path_for(MODEL, "k", "int8").parent.name.endswith("-int8")
    assert cache.get(MODEL, "k", "bfloat16") is None and cache.get(MODEL, "k") is None
    assert cache.get(MODEL, "k", "int8").precision == "int8"
    cache.put("j", Embedding(_emb(2).features, (375, 500), (768, 1024), MODEL,
                             precision="bfloat16"))
    assert cache.get(MODEL, "j", "int8").precision == "bfloat16"
    cache.put("j", _emb(2))  # a float32 one too: preferred
    assert cache.get(MODEL, "j", "int8").precision == "float32"


def test_version_1_files_are_a_silent_miss(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_items=0)
    path = cache.path_for(MODEL, "k")
    path.parent.mkdir(parents=True)
    np.savez(path, embedding=_emb().features.astype(np.float16),
             original_size=np.array([375, 500]), input_size=np.array([768, 1024]),
             model_id=np.asarray(MODEL), format_version=np.asarray(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(MODEL, "k") is None
    assert not path.exists()


def test_float32_storage_is_exact(tmp_path):
    emb = _emb()
    EmbeddingCache(tmp_path, dtype="float32").put("k", emb)
    got = EmbeddingCache(tmp_path, dtype="float32").get(MODEL, "k")
    np.testing.assert_array_equal(got.features, emb.features)


def test_other_model_is_a_miss(tmp_path):
    EmbeddingCache(tmp_path).put("k", _emb())
    assert EmbeddingCache(tmp_path).get("vit_b:ffffffffffffffff", "k") is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_model"])
def test_unreadable_file_is_ignored_with_warning_and_rewritten(tmp_path, damage):
    cache = EmbeddingCache(tmp_path, memory_items=0)
    cache.put("k", _emb())
    path = cache.path_for(MODEL, "k")
    if damage == "garbage":
        path.write_bytes(b"\x00not a zip" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        EmbeddingCache(tmp_path / "other").put("k", _emb(model_id="vit_b:1111111111111111"))
        os.replace(EmbeddingCache(tmp_path / "other").path_for("vit_b:1111111111111111", "k"),
                   path)
    with pytest.warns(UserWarning, match=f"unreadable embedding cache file {path}"):
        assert cache.get(MODEL, "k") is None
    assert not path.exists()
    cache.put("k", _emb())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(MODEL, "k") is not None


def test_disk_size_is_bounded_oldest_first(tmp_path):
    probe = EmbeddingCache(tmp_path / "probe")
    probe.put("p", _emb())
    one = probe.disk_usage()

    cache = EmbeddingCache(tmp_path / "c", memory_items=0, max_disk_bytes=int(2.5 * one))
    for i, key in enumerate(["a", "b"]):
        cache.put(key, _emb(i))
        os.utime(cache.path_for(MODEL, key), (1000 + i, 1000 + i))
    assert cache.get(MODEL, "a") is not None  # a hit refreshes "a": now "b" is oldest
    cache.put("c", _emb(2))
    assert cache.disk_usage() <= 2.5 * one
    assert cache.contains(MODEL, "a") and cache.contains(MODEL, "c")
    assert not cache.contains(MODEL, "b")


def test_concurrent_writers_and_readers_threads(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_items=0)
    errors = []

    def writer(seed):
        try:
            for _ in range(5):
                cache.put("same", _emb(seed))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def reader():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a half-written file would warn
                for _ in range(20):
                    cache.get(MODEL, "same")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2, 3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = EmbeddingCache(tmp_path).get(MODEL, "same")
    candidates = [_emb(s).features.astype(np.float16) for s in (1, 2, 3)]
    assert any(np.array_equal(got.features, c) for c in candidates)
    assert [p.name for p in cache.path_for(MODEL, "same").parent.iterdir()] == ["same.npz"]


_WRITER = """
import sys, numpy as np
from napari_samlabel.engine.cache import Embedding, EmbeddingCache
seed = int(sys.argv[2])
feats = np.random.default_rng(seed).normal(0, 0.3, (1, 256, 64, 64)).astype(np.float32)
cache = EmbeddingCache(sys.argv[1], memory_items=0)
for _ in range(10):
    cache.put("same", Embedding(feats, (375, 500), (768, 1024), "{model}"))
""".replace("{model}", MODEL)


def test_concurrent_writer_processes(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(seed)])
        for seed in (1, 2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = EmbeddingCache(tmp_path).get(MODEL, "same")
    assert got is not None
    assert [p.name for p in EmbeddingCache(tmp_path).path_for(MODEL, "same").parent.iterdir()] \
        == ["same.npz"]


def test_unwritable_disk_cache_warns_and_keeps_memory(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    cache = EmbeddingCache(blocker)
    with pytest.warns(UserWarning, match="cannot write embedding cache file"):
        stored = cache.put("k", _emb())
    assert cache.get(MODEL, "k") is stored

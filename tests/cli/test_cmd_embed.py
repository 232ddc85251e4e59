import numpy as np
import pytest
from PIL import Image

from napari_samlabel.cli import main
from napari_samlabel.engine.cache import EmbeddingCache, image_key
from napari_samlabel.engine.checkpoint import file_sha256, make_model_id
from napari_samlabel.testing.models import TINY_MODEL_TYPE


@pytest.fixture()
def images(tmp_path, astronaut, rect_image):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "a.png")
    # RGBA input: embed must see the same RGB pixels as every other command.
    rgba = np.dstack([rect_image, np.full(rect_image.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "b.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _args(*extra, checkpoint, cache):
    return ["embed", *extra, "--model", TINY_MODEL_TYPE, "--checkpoint", str(checkpoint),
            "--cache", str(cache), "--device", "cpu"]


def test_embed_folder_then_skip(images, tiny_checkpoint, tmp_path, capsys, astronaut,
                                rect_image):
    cache_root = tmp_path / "cache"
    assert main(_args(str(images), checkpoint=tiny_checkpoint, cache=cache_root)) == 0
    out = capsys.readouterr().out
    assert "2 image(s): 2 encoded, 0 already cached" in out

    model_id = make_model_id(TINY_MODEL_TYPE, file_sha256(tiny_checkpoint, cache_root))
    cache = EmbeddingCache(cache_root / "embeddings")
    for img in (astronaut, rect_image):
        emb = cache.get(model_id, image_key(img), "int8")  # any precision
        assert emb is not None and emb.original_size == img.shape[:2]

    # Second run (a file given twice and inside the folder counts once): all cached.
    assert main(_args(str(images), str(images / "a.png"), checkpoint=tiny_checkpoint,
                      cache=cache_root)) == 0
    assert "2 image(s): 0 encoded, 2 already cached" in capsys.readouterr().out


def test_embed_errors(tmp_path, tiny_checkpoint, capsys, images):
    assert main(_args(str(tmp_path / "missing"), checkpoint=tiny_checkpoint,
                      cache=tmp_path)) == 2
    assert "no such file or folder" in capsys.readouterr().err

    assert main(["embed", str(images), "--model", TINY_MODEL_TYPE, "--cache",
                 str(tmp_path)]) == 2
    assert "--checkpoint PATH" in capsys.readouterr().err

    assert main(["embed", str(images), "--model", "vit_q", "--cache", str(tmp_path)]) == 2
    assert "unknown model type 'vit_q'" in capsys.readouterr().err

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(_args(str(bad), checkpoint=tiny_checkpoint, cache=tmp_path)) == 1
    out = capsys.readouterr().out
    assert "1 unreadable" in out and "bad.png" in out


@pytest.mark.parametrize(("option", "expected"), [(None, False), ("on", True), ("off", False)])
def test_compile_auto_keeps_the_faster_eager_encoder_on_cpu(option, expected, tmp_path,
                                                             monkeypatch, capsys):
    """torch.compile is slower than the eager encoder on CPU: auto never picks it there."""
    from napari_samlabel.engine import loader
    from napari_samlabel.engine.checkpoint import CheckpointError

    seen = {}

    def fake_load_engine(*args, **kwargs):
        seen.update(kwargs)
        raise CheckpointError("stopped by the test")

    monkeypatch.setattr(loader, "load_engine", fake_load_engine)
    from napari_samlabel.cli.cmd_embed import COMPILE_MIN_IMAGES

    many = tmp_path / "many"
    many.mkdir()
    for i in range(COMPILE_MIN_IMAGES + 1):  # enough images for auto to consider compiling
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(many / f"{i}.png")
    argv = ["embed", str(many), "--model", TINY_MODEL_TYPE, "--cache", str(tmp_path),
            "--device", "cpu"] + ([] if option is None else ["--compile", option])
    assert main(argv) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert seen["compile"] is expected


@pytest.mark.parametrize("forced", ["int8", "float32"])
def test_check_precision_prints_cosine_and_mask_iou(images, tiny_checkpoint, tmp_path, capsys,
                                                    monkeypatch, forced):
    from napari_samlabel.engine.int8 import int8_available

    if forced == "int8" and not int8_available():
        pytest.skip("oneDNN's int8 linear does not run here")
    monkeypatch.setenv("SAMLABEL_PRECISION", forced)
    status = main(_args(str(images), "--check-precision", checkpoint=tiny_checkpoint,
                        cache=tmp_path / "cache"))
    out = capsys.readouterr().out
    if forced == "float32":
        assert status == 0 and "float32, the reference itself: nothing to check" in out
        return
    assert "check-precision: int8 against float32" in out
    rows = [line for line in out.splitlines() if "embedding cosine" in line]
    assert [r.split(":")[0].strip() for r in rows] == ["a.png", "b.png"]
    cos = [float(r.split("cosine ")[1].split(",")[0]) for r in rows]
    assert all(0.99 < c <= 1.0 for c in cos), rows
    met = "meets the accuracy guard" in out
    assert status == (0 if met else 1)


def test_check_precision_fails_below_the_guard(images, tiny_checkpoint, tmp_path, capsys,
                                               monkeypatch):
    """A fast mode whose embedding drifts is reported with exit status 1."""
    from napari_samlabel.engine import base

    monkeypatch.setenv("SAMLABEL_PRECISION", "bfloat16")
    real = base.CachedEngine._encoder_forward

    def drifting(self, x):
        out = real(self, x)
        return out + 0.5 * out.std() if self.precision == "bfloat16" else out

    monkeypatch.setattr(base.CachedEngine, "_encoder_forward", drifting)
    status = main(_args(str(images), "--check-precision", checkpoint=tiny_checkpoint,
                        cache=tmp_path / "cache"))
    captured = capsys.readouterr()
    assert status == 1
    assert "BELOW the accuracy guard" in captured.err and "--precise" in captured.err

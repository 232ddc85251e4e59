import importlib.util

from napari_samlabel.cli import main


def test_models_lists_cache_state(tmp_path, capsys):
    assert main(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vit_b (default)" in out and "vit_h" in out and "vit_tiny_test" not in out
    assert f"not cached (downloaded on first use to {tmp_path / 'checkpoints'}" in out
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "sam_vit_l_0b3195.pth").write_bytes(b"x")
    assert main(["models", "--cache", str(tmp_path), "--all"]) == 0
    out = capsys.readouterr().out
    assert f"cached: {tmp_path / 'checkpoints' / 'sam_vit_l_0b3195.pth'}" in out
    assert "FOR TESTS ONLY" in out and "sam2_tiny_test" in out


def test_models_lists_every_family_with_its_package_state(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "segment_anything_hq" else real(name, *a))
    assert main(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    blocks = {b.split(":", 1)[0].split(" ")[0]: b for b in out.split("\n\n")[1:]}
    assert set(blocks) >= {"vit_t", "sam_hq_vit_b", "sam2.1_hiera_large"}
    assert "(also: mobile_sam)" in blocks["vit_t"]
    assert "family: MobileSAM; package installed" in blocks["vit_t"]
    assert ("family: SAM-HQ; package missing (segment_anything_hq): "
            'pip install "napari-samlabel[hq]"') in blocks["sam_hq_vit_b"]
    assert "md5:c6b8953247bcfdc8bb8ef91e36a6cacc" in blocks["sam_hq_vit_b"]
    assert "sha256:2647878d" in blocks["sam2.1_hiera_large"]
    assert "dl.fbaipublicfiles.com/segment_anything_2/092824/" in blocks["sam2.1_hiera_large"]


def test_models_show_the_speed_of_this_cpus_precision(tmp_path, capsys, monkeypatch):
    """The speed shown is the one measured for the precision this CPU's encoder gets."""
    from napari_samlabel.engine.registry import get_model_spec

    spec = get_model_spec("vit_b")
    for precision in ("bfloat16", "int8", "float32"):
        monkeypatch.setenv("SAMLABEL_PRECISION", precision)
        assert main(["models", "--cache", str(tmp_path)]) == 0
        block = capsys.readouterr().out.split("\n\nvit_b (default)")[1].split("\n\n")[0]
        seconds = spec.cpu_seconds(precision)
        assert seconds, f"no {precision} speed measured for vit_b"
        assert (f"about {seconds:.1f} s per image on 2 CPU cores ({precision} encoder"
                in block), block
    monkeypatch.setenv("SAMLABEL_PRECISION", "int8")
    monkeypatch.setattr(type(spec), "cpu_seconds", lambda self, p: None)
    assert main(["models", "--cache", str(tmp_path)]) == 0
    assert "CPU speed in int8 not measured" in capsys.readouterr().out


def test_model_picker_label_names_the_precision(monkeypatch):
    from napari_samlabel.engine.catalogue import model_choices
    from napari_samlabel.engine.registry import get_model_spec

    monkeypatch.setenv("SAMLABEL_PRECISION", "int8")
    row = next(r for r in model_choices() if r.name == "vit_b")
    assert row.cpu_precision == "int8" and f"~{row.cpu_encode_s:.1f} s/image on CPU (int8)" \
        in row.label
    tiny_vit = next(r for r in model_choices() if r.name == "vit_t")
    assert tiny_vit.cpu_precision == "float32"  # TinyViT stays float32 on VNNI CPUs
    assert tiny_vit.cpu_encode_s == get_model_spec("vit_t").cpu_seconds("float32")

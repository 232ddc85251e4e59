"""Launcher, `samlabel annotate` arguments, npe2 manifest, sample data, help panel."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import napari_samlabel
from napari_samlabel.cli import main

MANIFEST = Path(napari_samlabel.__file__).with_name("napari.yaml")


def test_annotate_arguments_reach_the_launcher(monkeypatch, image_folder, tmp_path):
    launch = importlib.import_module("napari_samlabel._napari.launch")
    seen = {}
    monkeypatch.setattr(launch, "launch",
                        lambda *a, **kw: (seen.setdefault("args", a), seen.update(kw)))
    classes = tmp_path / "classes.txt"
    classes.write_text("dog\ndog/head\ncat\n")
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"x")
    assert main(["annotate", str(image_folder), "--classes", str(classes), "--model", "vit_l",
                 "--checkpoint", str(ckpt), "--precise", "--cache", str(tmp_path / "c")]) == 0
    folder, table, model, checkpoint, precise = seen["args"]
    assert folder == image_folder and model == "vit_l" and checkpoint == str(ckpt) and precise
    assert seen["cache_dir"] == str(tmp_path / "c")
    assert table.names == ("background", "dog", "dog/head", "cat")
    assert table.parent(2) == 1


@pytest.mark.parametrize("argv, message", [
    (["annotate", "/no/such/folder"], "not a folder of images"),
    (["annotate", ".", "--checkpoint", "/no/such.pth"], "checkpoint file not found"),
    (["annotate", ".", "--model", "vit_q"], "unknown model type 'vit_q'"),
])
def test_annotate_user_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_manifest_declares_widget_and_sample_data():
    import npe2

    pm = npe2.PluginManifest.from_file(MANIFEST)
    commands = {c.id: c.python_name for c in pm.contributions.commands}
    widget = pm.contributions.widgets[0]
    module, name = commands[widget.command].split(":")
    assert getattr(importlib.import_module(module), name).__name__ == "SamLabelWidget"
    keys = [s.key for s in pm.contributions.sample_data]
    assert keys == ["chelsea", "coffee", "astronaut"]
    for sample in pm.contributions.sample_data:
        module, name = commands[sample.command].split(":")
        [(data, meta, kind)] = getattr(importlib.import_module(module), name)()
        assert kind == "image" and data.ndim == 3 and data.shape[2] == 3 and meta["rgb"]


@pytest.mark.gui
def test_launcher_opens_the_samples_with_help(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from napari_samlabel._napari.launch import open_annotator
    from napari_samlabel._napari.panels import help_text
    from napari_samlabel.annotate import samples
    from napari_samlabel.testing.fakes import DiskEngine

    monkeypatch.setattr(samples, "sample_project_dir", lambda: tmp_path / "samples")
    viewer = make_napari_viewer()
    widget = open_annotator(viewer, None, engine=DiskEngine())
    try:
        s = widget.annotator.session
        assert [p.name for p in s.images] == ["chelsea.jpg", "coffee.jpg", "astronaut.jpg"]
        assert (tmp_path / "samples" / "samlabel-project.json").is_file()
        assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == [
            "Label", "Images", "Refine", "Model", "Review", "Proposals", "Keys"]
        text = help_text()
        for key in ("Control-z", "Escape", "Ctrl+click", "Alt-5", "Delete", "Negative boxes"):
            assert key in text
    finally:
        widget.shutdown()


def test_annotate_says_a_models_package_is_missing_before_any_window(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sam2" else real(name, *a))
    assert main(["annotate", ".", "--model", "sam2.1_hiera_tiny"]) == 2
    assert 'pip install "napari-samlabel[sam2]"' in capsys.readouterr().err

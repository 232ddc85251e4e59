"""The bundled sample images and their project, headless."""

from __future__ import annotations

from napari_samlabel.annotate import samples


def test_sample_project_is_made_once_in_the_user_data_folder(monkeypatch, tmp_path):
    assert [p.name for p in samples.sample_paths()] == [
        "chelsea.jpg", "coffee.jpg", "astronaut.jpg"]
    assert all(p.is_file() for p in samples.sample_paths())
    monkeypatch.setattr(samples, "sample_project_dir", lambda: tmp_path / "samples")
    project = samples.sample_project()
    assert project.image_ids == ["chelsea", "coffee", "astronaut"]
    assert (tmp_path / "samples" / "samlabel-project.json").is_file()
    assert samples.sample_project().image_ids == project.image_ids   # reopened, not remade

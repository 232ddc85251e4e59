"""The built sdist and wheel: complete, and working without the source tree on the path.

The editable install of the development venv reads everything from the repository, so a file
left out of the wheel goes unnoticed there (issue 14: the sample images and ``voc_parts.txt``
were missing from the wheel). These tests build the sdist and, from it, the wheel, install the
wheel into an empty folder and use it from outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "napari_samlabel"
RESOURCES = PACKAGE / "resources"

pytestmark = pytest.mark.slow

# A package resource named in text: "resources/<file>" (not a deeper path such as the
# repository's top-level resources/examples/...).
_RESOURCE_REF = re.compile(r"resources/([\w.-]+\.\w+)(?![\w/])")
_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                      "__pycache__", ".*_cache", "artifacts")


def package_resources() -> set[str]:
    """The run-time resources the package needs, derived from the source tree.

    Every file of ``napari_samlabel/resources`` (the code opens them by name, e.g. the
    sample images of ``annotate/samples.py``) and every ``resources/<file>`` the package's
    code, manifest and notes name.
    """
    names = {p.name for p in RESOURCES.iterdir() if p.is_file()}
    for path in PACKAGE.rglob("*"):
        if path.suffix in (".py", ".yaml", ".md", ".txt") and "__pycache__" not in path.parts:
            names |= set(_RESOURCE_REF.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_named_resource_exists_in_the_source_tree():
    missing = sorted(n for n in package_resources() if not (RESOURCES / n).is_file())
    assert not missing, f"named but not in napari_samlabel/resources: {missing}"


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """``(sdist, wheel)`` built from a copy of the repository, the wheel from the sdist."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_COPY_IGNORE)
    out = tmp / "dist"
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                          str(out), str(src)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_wheel_holds_the_manifest_and_every_resource(dists):
    _, wheel = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_samlabel/napari.yaml" in names
    missing = sorted(n for n in package_resources()
                     if f"napari_samlabel/resources/{n}" not in names)
    assert not missing, f"left out of the wheel: {missing}"
    manifest = yaml.safe_load((PACKAGE / "napari.yaml").read_text(encoding="utf-8"))
    for command in manifest["contributions"]["commands"]:
        module = command["python_name"].partition(":")[0]
        assert module.replace(".", "/") + ".py" in names, command["python_name"]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "napari_samlabel:napari.yaml" in text and "napari_samlabel.cli:main" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_sdist_holds_tests_docs_and_resources(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for path in ("LICENSE", "MANIFEST.in", "tests/test_packaging.py", "docs/project-format.md",
                 "scripts/test.sh", "resources/examples/points.json",
                 "napari_samlabel/napari.yaml"):
        assert path in names, path
    assert {f"napari_samlabel/resources/{n}" for n in package_resources()} <= names


_INSTALLED_CHECK = r"""
import importlib, json, sys
from pathlib import Path

import napari_samlabel
from npe2 import PluginManifest

from napari_samlabel.annotate.samples import sample_paths, sample_project
from napari_samlabel.core.classes import ClassTable

report = {"package": napari_samlabel.__file__, "commands": [], "samples": {}}
manifest = PluginManifest.from_distribution("napari-samlabel")
for command in manifest.contributions.commands:
    module, _, attr = command.python_name.partition(":")
    getattr(importlib.import_module(module), attr)  # resolves, as napari will
    report["commands"].append(command.id)
functions = {c.id: c.python_name for c in manifest.contributions.commands}
for sample in manifest.contributions.sample_data:  # File > Open Sample
    module, _, attr = functions[sample.command].partition(":")
    layers = getattr(importlib.import_module(module), attr)()
    report["samples"][sample.key] = [list(data.shape) for data, _, _ in layers]
report["sample_paths"] = [str(p) for p in sample_paths()]
project = sample_project()  # the "Sample images" button and `samlabel annotate`
report["project_images"] = len(project.image_ids)
# by name, as `--classes voc-parts` reads it, from the installed package
report["voc_parts"] = len(ClassTable.from_file("voc-parts").names)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """``(target, env, cwd)``: the wheel installed alone into ``target``, used from ``cwd``.

    The venv's python supplies the dependencies; ``PYTHONPATH`` holds only the target, so
    the editable install of the repository comes after it on ``sys.path``.
    """
    _, wheel = dists
    tmp = tmp_path_factory.mktemp("installed")
    target = tmp / "site"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                          "--quiet", "--target", str(target), str(wheel)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(target), XDG_DATA_HOME=str(tmp / "data"),
               SAMLABEL_CACHE_DIR=str(tmp / "cache"), PYTHONDONTWRITEBYTECODE="1")
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return target, env, cwd


def _run(args: list[str], installed) -> subprocess.CompletedProcess[str]:
    _, env, cwd = installed
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_installed_wheel_opens_the_samples(installed):
    target = installed[0]
    run = _run(["-c", _INSTALLED_CHECK], installed)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(target)
    assert "napari-samlabel.annotator" in report["commands"]
    assert set(report["samples"]) == {"chelsea", "coffee", "astronaut"}
    for shapes in report["samples"].values():
        assert len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][2] == 3  # one RGB image
    assert len(report["sample_paths"]) == 3
    assert all(Path(p).is_relative_to(target) for p in report["sample_paths"])
    assert report["project_images"] == 3
    assert report["voc_parts"] > 20


def test_installed_wheel_runs_the_command_line(installed):
    run = _run(["-m", "napari_samlabel", "annotate", "--help"], installed)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "usage: samlabel annotate" in run.stdout
    run = _run(["-m", "napari_samlabel", "models"], installed)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "vit_b (default)" in run.stdout
    where = _run(["-c", "import napari_samlabel; print(napari_samlabel.__file__)"], installed)
    assert Path(where.stdout.strip()).is_relative_to(installed[0])
    # The console script the wheel declares (pip --target puts it in bin/).
    target, env, cwd = installed
    run = subprocess.run([str(target / "bin" / "samlabel"), "--version"], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.startswith("samlabel "), run.stderr[-3000:]


def test_sdist_matches_version_control():
    """``check-manifest``: every tracked file is in the sdist (needs a git checkout)."""
    pytest.importorskip("check_manifest")
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    run = subprocess.run([sys.executable, "-m", "check_manifest", "--no-build-isolation",
                          str(ROOT)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_readme_example_files_pseudo_label_the_bundled_samples(tmp_path, tiny_checkpoint):
    """The README tour's example class list and point labels fit the bundled samples."""
    from napari_samlabel.cli import main

    examples = ROOT / "resources" / "examples"
    code = main(["pseudo-label", str(RESOURCES), "--weak",
                 str(examples / "points.json"), "--kind", "points", "--classes",
                 str(examples / "classes.txt"), "--out", str(tmp_path / "pl"),
                 "--model", "vit_tiny_test", "--checkpoint", str(tiny_checkpoint),
                 "--cache", str(tmp_path / "cache"), "--device", "cpu"])
    assert code == 0
    assert sorted(p.stem for p in (tmp_path / "pl" / "scores").glob("*.json")) == \
        ["astronaut", "chelsea", "coffee"]

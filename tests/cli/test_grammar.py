"""One grammar for every sub-command: positional input, --out DIR, --cache DIR, help everywhere.

Walks every sub-parser of ``samlabel`` (commands added later are checked too).
"""

from __future__ import annotations

import argparse

import pytest

from napari_samlabel.cli import build_parser
from napari_samlabel.cli._grammar import (
    BORDER_HELP,
    CACHE_HELP,
    CHECKPOINT_HELP,
    CLASSES_HELP,
    DEVICE_HELP,
)

#: Spellings replaced by the one name of the same idea.
BANNED = {"--cache-dir": "--cache", "--output": "--out", "--output-dir": "--out",
          "--out-dir": "--out", "--images": "a positional IMAGES", "--input": "a positional",
          "--train-fraction": "--split", "--image-dir": "a positional"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


COMMANDS = _subparsers()


def _visible(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def test_the_known_commands_are_there():
    assert {"annotate", "curate", "embed", "eval", "export", "import-voc", "models",
            "pseudo-label", "refine", "replay", "simulate-weak"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_and_argument_has_help(name):
    missing = [a.dest for a in _visible(COMMANDS[name]) if not (a.help or "").strip()]
    assert not missing, f"samlabel {name}: no help for {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_style_positional_input_and_out_option(name):
    p = COMMANDS[name]
    positionals = [a for a in _visible(p) if not a.option_strings]
    assert len(positionals) <= 1, f"samlabel {name}: several positionals " \
                                  f"{[a.metavar or a.dest for a in positionals]}; the output " \
                                  "is --out DIR"
    options = {s for a in _visible(p) for s in a.option_strings}
    bad = sorted(options & set(BANNED))
    assert not bad, f"samlabel {name}: {bad} should be " + ", ".join(BANNED[b] for b in bad)
    assert not p.allow_abbrev, f"samlabel {name} accepts abbreviated options"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_options_read_the_same_everywhere(name):
    by_flag = {s: a for a in COMMANDS[name]._actions for s in a.option_strings}
    if "--cache" in by_flag:
        assert by_flag["--cache"].help == CACHE_HELP and by_flag["--cache"].metavar == "DIR"
        assert by_flag["--cache"].dest == "cache_dir"
    if "--border" in by_flag:
        assert by_flag["--border"].help == BORDER_HELP and by_flag["--border"].metavar == "PX"
    if "--classes" in by_flag:
        assert by_flag["--classes"].help.startswith(CLASSES_HELP)
    if "--split" in by_flag:
        assert by_flag["--split"].metavar == "FRACTION" and by_flag["--split"].type is float
    if "--out" in by_flag:
        assert by_flag["--out"].metavar == "DIR"
    if "--checkpoint" in by_flag:
        assert by_flag["--checkpoint"].help == CHECKPOINT_HELP
    if "--device" in by_flag:
        assert by_flag["--device"].help == DEVICE_HELP


def test_abbreviations_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["models", "--cac", "x"])
    assert "unrecognized arguments: --cac" in capsys.readouterr().err


def test_deprecated_spellings_still_work_for_one_release(capsys):
    args = build_parser().parse_args(["models", "--cache-dir", "somewhere"])
    assert str(args.cache_dir) == "somewhere"
    assert "--cache-dir is deprecated" in capsys.readouterr().err
    args = build_parser().parse_args(["refine", "imgs", "--method", "slic", "--out", "o",
                                      "--train-fraction", "0.5"])
    assert args.split == 0.5 and str(args.images) == "imgs"
    args = build_parser().parse_args(["export", "p", "--out", "o", "--include-unfinished"])
    assert not args.only_done  # what the old flag asked for is the default now
    assert "exported by default now" in capsys.readouterr().err


def test_commands_reading_voc_accept_the_folder_export_writes(tmp_path, capsys):
    """export OUT -> eval PRED --gt OUT, simulate-weak OUT, import-voc OUT: no VOC2012 path."""
    import numpy as np
    from PIL import Image

    from napari_samlabel.cli import main
    from napari_samlabel.core.document import AnnotationDocument
    from napari_samlabel.core.objects import AnnotatedObject
    from napari_samlabel.io.project import Project

    (tmp_path / "images").mkdir()
    for k in range(2):
        Image.fromarray(np.full((20, 30, 3), 60 * k, np.uint8)).save(
            tmp_path / "images" / f"im{k}.png")
    proj = Project.create(tmp_path / "proj", tmp_path / "images", ["cup"])
    for k, iid in enumerate(proj.image_ids):
        mask = np.zeros((20, 30), bool)
        mask[4:12, 5 + k:20 + k] = True
        proj.save_document(AnnotationDocument(iid, (20, 30), [AnnotatedObject(1, 1, mask)],
                                              "done"))
    out = tmp_path / "export"
    assert main(["export", str(proj.folder), "--out", str(out)]) == 0
    classes = tmp_path / "classes.txt"
    classes.write_text("cup\n")
    assert main(["eval", str(out), "--gt", str(out), "--classes", str(classes)]) == 0
    assert "100.0" in capsys.readouterr().out  # the export against itself: perfect
    assert main(["simulate-weak", str(out), "--kind", "boxes", "--out", str(tmp_path / "weak"),
                 "--classes", str(classes)]) == 0
    assert sorted(p.name for p in (tmp_path / "weak").iterdir()) == ["im0.json", "im1.json"]
    assert main(["import-voc", str(out), "--out", str(tmp_path / "again")]) == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_texts_name_no_repository_path(name):
    """An installed package has no docs/ or resources/ folder: help links or names instead."""
    import re

    p = COMMANDS[name]
    texts = [p.description or ""] + [a.help or "" for a in p._actions]
    for text in texts:
        for match in re.finditer(r"(\S*)(docs/\S+\.md|resources/\S+)", text):
            assert match.group(1).startswith("https://"), f"samlabel {name}: {text!r}"

"""The options several sub-commands share, defined once so that they read the same everywhere.

The grammar of every ``samlabel`` command: the primary input is positional (``samlabel export
FOLDER``), the output folder is ``--out DIR``, the cache root is ``--cache DIR``, a class list
is ``--classes FILE``, the train share is ``--split FRACTION``, the void band is ``--border PX``;
every option has help; options are taken by their full name only (``allow_abbrev=False``, set
in :mod:`napari_samlabel.cli`). ``tests/cli/test_grammar.py`` checks every command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Where the documentation lives: help texts link there, so that they work for an installed
#: package (whose wheel has no docs/ folder) as well as from a checkout.
DOCS_URL = "https://github.com/napari-samlabel/napari-samlabel/blob/main/docs/"

CLASSES_HELP = ("class list: a text file (one name per line), a YAML list (or a 'classes:' "
                "key holding one), or a bundled list by name: voc, voc-parts (the VOC "
                "classes plus PASCAL-Part style parts); 'dog/head' is a part of 'dog'")
BORDER_HELP = ("mark a void (255) band exactly PX pixels wide across object borders (half "
               "inside, half outside; the odd pixel inside). VOC's ground truth has a 4-pixel "
               "band: --border 4 reproduces it (default 0: none)")
CACHE_HELP = ("cache root for checkpoints, embeddings and automatic masks (default: "
              "$SAMLABEL_CACHE_DIR or the user cache dir), e.g. the one 'samlabel embed "
              "--cache DIR' filled")
SPLIT_HELP = "fraction of the images that go to train, the rest to val (default 0.8)"


def add_classes(p: Any, default: str = "the 21 PASCAL VOC classes") -> None:
    """``--classes FILE``."""
    p.add_argument("--classes", type=Path, metavar="FILE",
                   help=f"{CLASSES_HELP} (default: {default})")


def add_cache(p: Any) -> None:
    """``--cache DIR`` (dest ``cache_dir``), with the old ``--cache-dir`` kept as deprecated."""
    p.add_argument("--cache", dest="cache_dir", type=Path, metavar="DIR", help=CACHE_HELP)
    deprecated_alias(p, "--cache-dir", "use --cache", dest="cache_dir", type=Path)


def add_border(p: Any) -> None:
    """``--border PX``."""
    p.add_argument("--border", type=int, default=0, metavar="PX", help=BORDER_HELP)


def add_split(p: Any, help: str = SPLIT_HELP) -> None:
    """``--split FRACTION`` (dest ``split``)."""
    p.add_argument("--split", type=float, default=0.8, metavar="FRACTION", help=help)


def add_out(p: Any, help: str, required: bool = True) -> None:
    """``--out DIR`` (dest ``out``), the output folder."""
    p.add_argument("--out", type=Path, metavar="DIR", required=required, help=help)


class _DeprecatedOption(argparse.Action):
    """Store the value like the new option does, and say once on stderr to use the new name."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "",
                 **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed: "
              f"{self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(p: Any, old: str, new: str, *, dest: str, **kwargs: Any) -> None:
    """Accept option ``old`` for one release, hidden from help; ``new`` says what to use.

    It stores into ``dest`` like the option that replaces it (``nargs=0`` for an old flag
    that does nothing now).
    """
    p.add_argument(old, dest=dest, action=_DeprecatedOption, new=new, help=argparse.SUPPRESS,
                   default=argparse.SUPPRESS, **kwargs)


CHECKPOINT_HELP = ("local weights: a checkpoint file, or for sam3 a Hugging Face folder "
                   "(default: the model's official weights, downloaded once into the cache)")
DEVICE_HELP = "torch device (default: cuda > mps > cpu)"


def add_checkpoint(p: Any) -> None:
    """``--checkpoint PATH``: local weights instead of the cached official ones."""
    p.add_argument("--checkpoint", type=Path, metavar="PATH", help=CHECKPOINT_HELP)


def add_device(p: Any) -> None:
    """``--device NAME``."""
    p.add_argument("--device", metavar="NAME", help=DEVICE_HELP)

"""The ``samlabel`` command line: argument parsing and progress only.

Each sub-command lives in its own module ``cmd_<name>.py`` in this package with two
functions: ``register(subparsers)`` adds its parser and sets ``func`` to a callable taking
the parsed ``argparse.Namespace`` and returning an exit code. Modules are discovered, so
adding a command touches no other file. The work itself is done by the layers below.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from napari_samlabel import __version__


class CLIError(Exception):
    """An error to show the user as one line, without a traceback (exit code 2)."""


#: Exit code when the reader of stdout went away (``samlabel models | head -1``): 128 + SIGPIPE,
#: what a shell reports for any Unix tool stopped by a closed pipe.
BROKEN_PIPE_EXIT = 141


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes options only by their full name.

    Prefix abbreviations (``--cache`` for ``--cache-dir``) hide renamed options and make adding
    an option a breaking change; every sub-command parser is one of these.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def user_errors() -> tuple[type[BaseException], ...]:
    """The error types whose message is for the user (file and problem named), no traceback.

    A command that lets one of these escape still gets a one-line message and exit code 2;
    so does an ``OSError`` (a read-only folder, a full disk), which names its file.
    """
    from napari_samlabel.core.filelock import LockTimeout
    from napari_samlabel.core.fsutil import WriteError
    from napari_samlabel.evaluate.metrics import EvaluationError
    from napari_samlabel.io.images import ImageReadError
    from napari_samlabel.io.project_schema import ProjectError
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.weak import WeakLabelError

    return (WriteError, LockTimeout, ProjectError, ImageReadError, VocError, WeakLabelError,
            EvaluationError, OSError)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an ``OSError`` with its file name)."""
    if isinstance(exc, OSError) and not str(exc).startswith("cannot") and exc.filename:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered sub-command."""
    parser = _Parser(
        prog="samlabel",
        description="Turn weak labels into segmentation datasets with Segment Anything.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``samlabel``; return the process exit code.

    A closed stdout (``samlabel models | head -1``) ends the command quietly with
    :data:`BROKEN_PIPE_EXIT`, never with a traceback.
    """
    try:
        try:
            code = _run(argv)
        except SystemExit:  # --help, --version, usage errors: their text is flushed here too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a pipe closed early fails here, inside the handler
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def _silence_stdout() -> None:
    """Point stdout and stderr at the null device, so that the flush at exit cannot fail again.

    Either may be the closed pipe (``samlabel export ... 2>&1 | head -1``); nothing more is
    printed after a broken pipe, so silencing both loses nothing.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # no descriptor (replaced, in tests)
            pass


def _run(argv: Sequence[str] | None) -> int:
    from napari_samlabel.engine.device import tune_memory

    tune_memory()  # before anything imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"samlabel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # an OSError, but not the user's: main() ends it quietly
        raise
    except user_errors() as exc:  # ours: they name the file and the problem
        print(f"samlabel {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

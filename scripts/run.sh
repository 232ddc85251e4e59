#!/usr/bin/env bash
# Set up a fresh machine, then run `samlabel` with the given arguments
# (default: `annotate`, the napari annotator on the bundled sample images).
# Without a display, napari runs on a virtual X server, and the terminal says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >&2
[ $# -gt 0 ] || set -- annotate
# napari's binding is PyQt6; qtpy would pick PyQt5 first where both are installed.
if [ -z "${QT_API:-}" ] && .venv/bin/python -c "import PyQt6.QtCore" 2>/dev/null; then
  export QT_API=pyqt6
fi
if [ -z "${DISPLAY:-}" ] && [ "$1" = annotate ]; then
  what="the bundled sample images"
  for a in "${@:2}"; do case "$a" in -*) ;; *) what="$a"; break;; esac; done
  cat >&2 <<MSG
run.sh: no display (DISPLAY is not set), so the napari annotator on $what
  runs on a virtual X server (xvfb-run) where nobody can see its window. It is not hung:
  it waits for input that cannot come. Stop it with Ctrl+C.
  To use it, run this on a desktop (a machine with a display), e.g.
    bash scripts/run.sh ${*}
  or forward one over SSH (ssh -X) or a remote desktop, so DISPLAY is set.
  Headless work needs no window: bash scripts/run.sh --help lists the batch commands.
MSG
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/samlabel "$@"
fi
exec .venv/bin/samlabel "$@"

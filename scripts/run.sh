#!/usr/bin/env bash
# Set up a fresh machine, then run `samlabel` with the given arguments
# (default: `annotate`, the napari annotator on the bundled sample images).
# Without a display, napari runs on a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >&2
[ $# -gt 0 ] || set -- annotate
if [ -z "${DISPLAY:-}" ] && [ "$1" = annotate ]; then
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/samlabel "$@"
fi
exec .venv/bin/samlabel "$@"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, the import contracts, mypy, and
# pytest (GUI tests included) under a virtual X server. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check napari_samlabel tests benchmarks
echo "== import contracts"; lint-imports
echo "== mypy"; mypy napari_samlabel
echo "== pytest"
# napari needs a real X server (xcb); offscreen alone fails in vispy.
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest "$@"

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
# napari's binding, PyQt6 ([all]); qtpy would pick PyQt5 first where both are installed.
QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest "$@"
# Where PyQt5 is installed too (the [pyqt5] extra), the GUI tests run under it as well (a
# few minutes): every Qt import goes through qtpy, and both bindings must keep working.
if [ $# -eq 0 ] && python -c "import PyQt5.QtCore" 2>/dev/null; then
  echo "== pytest tests/gui under PyQt5"
  QT_API=pyqt5 xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest tests/gui
fi

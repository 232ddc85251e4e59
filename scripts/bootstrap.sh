#!/usr/bin/env bash
# Set up a fresh Debian machine (root, Python 3.11, no GPU, no display) for napari-samlabel:
# the system libraries headless Qt/OpenGL needs, and a venv in .venv with the package.
# Idempotent and quick when nothing changed (a stamp records what was installed).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0
  libxkbcommon-x11-0 libgl1 libegl1 libgl1-mesa-dri libdbus-1-3 libfontconfig1)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.samlabel-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv (a few minutes the first time)"
  # pip's notes about absent local index folders are noise here; real errors still show.
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/python -m pip install -q --upgrade pip
  # torch/torchvision pinned to the builds that work together on CPU here (2.13.0 lacks
  # torchvision::nms); the rest comes from pyproject.toml.
  quiet .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  # [all]: napari's Qt binding, PyQt6 (napari's exclusions of broken PyQt6-Qt6 builds);
  # [models]: the optional SAM 2, MobileSAM and SAM-HQ packages, so their tests run too.
  # PyQt5 (the [pyqt5] extra) is not installed; scripts/test.sh also runs the GUI tests
  # under it where it is.
  quiet .venv/bin/python -m pip install -q -e ".[all,test,models]"
  echo "$want" > "$stamp"
fi

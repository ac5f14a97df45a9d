#!/bin/bash
# Make the working tree small enough for a call of the lent GPU machine, and restore it.
#
#   bash scripts/device_tree.sh out    # before the device calls
#   bash scripts/device_tree.sh back   # right after them
#
# The device tool sends the tracked and untracked-not-ignored files plus what a call carries,
# 64 MiB in all. The tracked tree is about 360 MB (the corpus store, results, earlier runs'
# checkpoints, the shipped evaluation clips), so `out` moves the big tracked folders that no
# device run reads to $HOLD (default ../device-hold) and takes them out of the index; what
# remains is about 19 MiB (code, configs, checkpoints/pretrained). `back` moves them back and
# restores the index: `git status` is then as before. Nothing is deleted; `out` refuses to run
# while those paths have uncommitted changes or a previous `out` was not undone.
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${HOLD:-$(cd .. && pwd)/device-hold}
PATHS="corpus-store results tests checkpoints/v1 checkpoints/meta metatts/eval_speakers
runs/base_v2_warm/checkpoints runs/base_v2_warm_natural/checkpoints"
case "${1:-}" in
  out)
    if [ -e "$HOLD" ]; then
      echo "$HOLD exists: run '$0 back' first (or move it away)" >&2; exit 1
    fi
    if [ -n "$(git status --porcelain -- $PATHS)" ]; then
      echo "uncommitted changes under the paths to move; commit or stash them first" >&2; exit 1
    fi
    git rm -r -q --cached $PATHS
    for p in $PATHS; do mkdir -p "$HOLD/$(dirname "$p")"; mv "$p" "$HOLD/$p"; done
    echo "moved to $HOLD; tracked files left: $(git ls-files -z | xargs -0 du -cb | tail -1)"
    ;;
  back)
    if [ ! -d "$HOLD" ]; then echo "$HOLD does not exist: nothing to move back" >&2; exit 1; fi
    for p in $PATHS; do mv "$HOLD/$p" "$p"; done
    git reset -q -- $PATHS
    find "$HOLD" -depth -type d -empty -delete
    git status --short
    ;;
  *)
    echo "usage: $0 out|back" >&2; exit 2
    ;;
esac

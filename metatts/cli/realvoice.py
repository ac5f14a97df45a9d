"""``python -m metatts realvoice --out DIR [--ship DIR]``: build the real-voice evaluation group
(one real US woman, Allison Smith, from Debian's Asterisk prompts; see metatts/corpus/real_voice.py)
into DIR: ``real_allison/<id>.flac`` + ``.txt``, ``manifest.jsonl``, COPYRIGHT, ATTRIBUTION.md.
A rerun with everything in place writes nothing. Evaluation only: never training data.

Nothing of the user's is overwritten: a DIR of other data (a manifest.jsonl of other speakers) is
refused rather than merged into, as is a --ship DIR holding anything but a previous export (it is
replaced whole); both are checked before any work, and so is the manifest.jsonl --ship edits."""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from metatts.corpus.manifest import MANIFEST
from metatts.corpus.real_voice import (DEFAULT_OUT, MIN_WORDS, SHIPPED, RealVoiceUnavailable,
                                       build_real_voice, check_ship, export_shipped,
                                       find_sources, register_in_eval_set)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metatts realvoice", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"where to build the group (default {DEFAULT_OUT})")
    p.add_argument("--min-words", type=int, default=MIN_WORDS,
                   help=f"keep prompts of at least this many spoken words (default {MIN_WORDS})")
    p.add_argument("--root", type=Path, default=Path("/"), help="file-system root the Debian "
                   "packages are installed under (default /)")
    p.add_argument("--ship", type=Path, metavar="DIR", help="also export a small set of it to "
                   f"DIR (the one in the repository is {SHIPPED.relative_to(SHIPPED.parents[2])}) "
                   "and list it in the manifest.jsonl of DIR's parent, if there is one")
    p.add_argument("--ship-clips", type=int, default=30, metavar="N",
                   help="clips in --ship (default 30, each 2-8 s)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.ship_clips < 1:
        parser.error(f"--ship-clips must be at least 1 (it is {args.ship_clips}); leave out "
                     "--ship to export nothing.")
    try:
        if args.ship:
            check_ship(args.ship)  # before the build, so that a refusal costs no work
        result = build_real_voice(args.out, find_sources(args.root), min_words=args.min_words)
        reasons = collections.Counter(result.skipped.values())
        print(f"realvoice: {len(result.clips)} prompts ({result.seconds / 60:.1f} min) in "
              f"{args.out}; {result.written} written this run" + "".join(
                  f"; left out {n}: {why}" for why, n in sorted(reasons.items())))
        if args.ship:
            shipped = export_shipped(args.out, args.ship, count=args.ship_clips)
            print(f"realvoice: shipped {len(shipped)} clips "
                  f"({sum(c.seconds for c in shipped) / 60:.1f} min) to {args.ship}")
            if (args.ship.parent / MANIFEST).is_file():
                listed = register_in_eval_set(args.ship)
                print(f"realvoice: listed them in {args.ship.parent / MANIFEST} (group "
                      f"{listed[0].group!r})")
    except (RealVoiceUnavailable, ValueError, OSError) as err:
        print(f"realvoice: {err}", file=sys.stderr)
        return 1
    return 0

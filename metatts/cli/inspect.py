"""``python -m metatts inspect PATH``: detect a dataset's layout, summarize it as one JSON line."""

from __future__ import annotations

import argparse
import json
import sys

from metatts.data.detect import LAYOUTS, read_dataset
from metatts.data.readout import DatasetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metatts inspect",
        description="Detect the layout of a dataset folder or manifest and print "
                    '{"layout", "speakers", "clips", "hours", "skipped": {reason: count}} as JSON.')
    parser.add_argument("path", help="a dataset folder, a manifest (.jsonl/.csv), or "
                                     "hf:NAME[:SPLIT] to stream a corpus from the hub")
    parser.add_argument("--layout", choices=LAYOUTS, help="read as this layout, skip detection")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also list the skipped files by reason")
    args = parser.parse_args(argv)
    try:
        readout = read_dataset(args.path, layout=args.layout)
    except DatasetError as err:
        print(f"metatts inspect: {err}", file=sys.stderr)
        return 1
    print(json.dumps(readout.summary(verbose=args.verbose)))
    return 0

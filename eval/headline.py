"""The README's headline table of a benchmark run, printed from its summary.

    python -m eval.headline results/eval_full [--methods meta finetune-encoder finetune-adam]

One row per voice group, shot count and method (in that order): ECAPA similarity at every step
count, the share of the floor-to-ceiling gap closed, WER (the mean per clip, in %) and DNSMOS;
then each group's ceiling and floor, and its real clips' WER and DNSMOS. Everything is read from
``summary.json`` as ``python -m eval`` wrote it (nothing is judged again), so that the README's
figures are copied by a command instead of by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GROUPS = ("natural", "real", "engine")
NAMES = {"meta": "meta-learned start", "finetune-encoder": "fine-tune from the encoder (twin)",
         "finetune-adam": "fine-tune from the mean"}


def _joined(values: list, fmt: str, suffix: str = "") -> str:
    return " / ".join("-" if v is None else format(v, fmt) for v in values) + suffix


def table(summary: dict, methods: list[str]) -> list[str]:
    """Markdown lines: the header and one row per group, shot count and method present."""
    rows = summary["rows"]
    steps = sorted({r["steps"] for r in rows})
    out = [f"| group, k | method | ECAPA after {' / '.join(map(str, steps))} steps "
           "| gap closed (ECAPA) | WER % | DNSMOS |", "|---|---|---|---|---|---|"]
    for group in GROUPS:
        for shots in sorted({r["shots"] for r in rows if r["group"] == group}, reverse=True):
            for method in methods:
                cells = {r["steps"]: r for r in rows if (r["group"], r["shots"], r["method"])
                         == (group, shots, method)}
                if not cells:
                    continue
                got = [cells.get(n, {}) for n in steps]
                gap = [None if c.get("gap_closed") is None else 100 * c["gap_closed"]
                       for c in got]
                wer = [None if c.get("wer") is None else 100 * c["wer"] for c in got]
                out.append(f"| {group}, {shots} | {NAMES.get(method, method)} "
                           f"| {_joined([c.get('secs') for c in got], '.3f')} "
                           f"| {_joined(gap, '.0f', ' %')} | {_joined(wer, '.1f')} "
                           f"| {_joined([c.get('mos') for c in got], '.2f')} |")
    return out


def references(summary: dict) -> list[str]:
    """A line per group: ECAPA ceiling / floor, and the real clips' WER and DNSMOS."""
    out = []
    for group in GROUPS:
        real = summary.get("reference", {}).get(group, {}).get("real")
        if real:
            out.append(f"{group}: ceiling {real['secs']:.3f}, floor {real['secs_floor']:.3f}; "
                       f"real clips' WER {100 * real['wer']:.1f} %, DNSMOS {real['mos']:.2f} "
                       f"({real['n']} clips)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.headline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a python -m eval --out folder")
    parser.add_argument("--methods", nargs="+", default=list(NAMES),
                        help="methods in row order (default: %(default)s)")
    args = parser.parse_args(argv)
    path = args.run / "summary.json"
    if not path.is_file():
        print(f"{path} does not exist: give a folder that python -m eval has written a report "
              "to (python -m eval --out DIR ..., or --report-dir).", file=sys.stderr)
        return 1
    summary = json.loads(path.read_text(encoding="utf-8"))
    print("\n".join(table(summary, args.methods)))
    print()
    print("\n".join(references(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

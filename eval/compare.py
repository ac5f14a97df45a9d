"""Two benchmark runs of the same grid on different checkpoints, compared clip by clip.

    python -m eval.compare runs/eval/span_control runs/eval/span [--out compare.json]

Each run is a ``python -m eval --out DIR`` folder, or several joined by commas (their records
read as one run, e.g. the cells of one grid run into different folders; a clip in two of them
is refused). Records are paired by (speaker, method, shots,
task, seed, steps, text), and a pair counts only when both runs adapted from the same support
clips, so that the difference is the checkpoint's alone. Per voice group, method and step count
it prints each judge's mean (WER in %) in A and in B, the mean difference B - A with its 95 %
bootstrap interval (over voices; with one voice over its draws, as in the report), the share of
clips where B is higher, and the two-sided Wilcoxon p of the pairs: of the clips, and of the
means of each draw (a speaker's task) and of each voice, since the clips of one adaptation are
not independent (the clip-level p is the optimistic one). Each of the three p columns is also
Holm-adjusted over every row of the same judge (one family per judge and level: the rows
printed). ECAPA and GE2E are also read without the real clip of each clip's own sentence among the
references ("ECAPA other", as the ceiling has none) where the records carry it. Nothing is judged
again.

    python -m eval.compare RUN RUN --cells meta:10 finetune-adam:100 [--cells A:N B:M ...]

compares two cells of one grid instead (A: the first method after its step count, B: the second;
the same run may be given twice): pairs are the same clips (speaker, shots, task, seed, text and
support clips), e.g. issue #16's "the meta-learned start after 10 steps against fine-tuning from
the mean after 100". Give ``--cells`` again for each further pair of cells; the Holm columns
then adjust over all of them: one family of claims, as #16's targets are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from eval.runner import RECORD_FIELDS, RESULTS, ResultsError, read_results
from eval.stats import cluster_test, holm, paired_test, voice_bootstrap

JUDGES = {"secs": "ECAPA", "secs_other": "ECAPA other", "secs_ge2e": "GE2E",
          "secs_ge2e_other": "GE2E other", "wer": "WER %", "mos": "DNSMOS"}
LEVELS = ("p", "p_draws", "p_voices")  # the paired test of clips, draw means, voice means
SCALE = {"wer": 100.0}  # shown as a percentage


def pair_key(r: dict) -> tuple:
    return (r["speaker"], r["method"], r["shots"], r.get("task", 0), r["seed"], r["steps"],
            r["text"])


def compare(a: list[dict], b: list[dict]) -> tuple[list[dict], int]:
    """Rows (group, method, shots, steps, judge, clips, a, b, difference, low, high, b_higher,
    p) and how many pairs were dropped for different support clips."""
    first = {pair_key(r): r for r in a}
    pairs: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    mismatched = 0
    for r in b:
        other = first.get(pair_key(r))
        if other is None:
            continue
        if other.get("support") != r.get("support"):
            mismatched += 1
            continue
        pairs[r.get("group") or "", r["method"], r["shots"], r["steps"]].append((other, r))
    rows = []
    for (group, method, shots, steps), matched in sorted(pairs.items()):
        for field, judge in JUDGES.items():
            scale = SCALE.get(field, 1.0)
            both = [(scale * x[field], scale * y[field],
                     (x["speaker"], x.get("task", 0), x["seed"])) for x, y in matched
                    if x.get(field) is not None and y.get(field) is not None]
            if not both:
                continue
            diff = voice_bootstrap([y - x for x, y, _ in both], [c[0] for _, _, c in both],
                                   [c for _, _, c in both])
            test = paired_test({i: y for i, (_, y, _) in enumerate(both)},
                               {i: x for i, (x, _, _) in enumerate(both)})
            # clips of one adaptation are not independent: the same test on draw means and on
            # voice means too
            draws = cluster_test(both)
            voices = cluster_test([(x, y, c[0]) for x, y, c in both])
            rows.append({"group": group, "method": method, "shots": shots, "steps": steps,
                         "judge": judge, "clips": len(both),
                         "a": sum(x for x, _, _ in both) / len(both),
                         "b": sum(y for _, y, _ in both) / len(both),
                         "difference": diff.mean, "low": diff.low, "high": diff.high,
                         "b_higher": sum(y > x for x, y, _ in both) / len(both),
                         "p": test.p, "p_draws": draws.p, "draws": draws.pairs,
                         "p_voices": voices.p, "voices": voices.pairs})
    holm_columns(rows)
    return rows, mismatched


def holm_columns(rows: list[dict]) -> None:
    """Add ``holm``, ``holm_draws``, ``holm_voices``: each level's p Holm-adjusted over the rows of
    the same judge."""
    for judge in {r["judge"] for r in rows}:
        same = [r for r in rows if r["judge"] == judge]
        for level in LEVELS:
            for r, p in zip(same, holm([r[level] for r in same])):
                r[level.replace("p", "holm", 1)] = p


def _folders(side: str) -> list[str]:
    """A run given on the command line: one folder, or several joined by commas."""
    return [f for f in side.split(",") if f]


def cell(spec: str) -> tuple[str, int]:
    """"METHOD:STEPS" -> (method, steps); the method may itself hold colons (variants)."""
    method, _, steps = spec.rpartition(":")
    if not method or not steps.isdigit():
        raise ValueError(f"--cells {spec!r}: give METHOD:STEPS, e.g. meta:10 or "
                         "finetune-adam:100")
    return method, int(steps)


def one_cell(records: list[dict], method: str, steps: int, label: str) -> list[dict]:
    """The records of one (method, steps) cell, relabelled ``label`` at step 0, so that
    :func:`compare` pairs two cells clip by clip."""
    return [{**r, "method": label, "steps": 0} for r in records
            if r["method"] == method and r["steps"] == steps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="the first run's folder (the reference); several joined by "
                        "commas are read as one run")
    parser.add_argument("b", help="the second run's folder (or folders, joined by commas)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--cells", nargs=2, metavar=("METHOD:STEPS", "METHOD:STEPS"),
                        action="append",
                        help="compare these two cells (A from the first run, B from the second) "
                             "instead of the same cells of two runs; give it again for more "
                             "pairs of cells (Holm adjusts over all of them)")
    args = parser.parse_args(argv)
    sides = [_folders(args.a), _folders(args.b)]
    for side, folders in zip((args.a, args.b), sides):
        if not folders:
            parser.error(f"{side!r} names no folder: give a python -m eval --out folder, or "
                         "several joined by commas")
    labels = [" vs ".join(specs) for specs in args.cells or []]
    if args.out:
        from metatts.assets import output_problem

        problem = output_problem(args.out, force=args.force, inputs=[
            Path(f) / name for folders in sides for f in folders
            for name in (RESULTS, "summary.json")])
        if problem:
            parser.error(f"--out {problem}")
    cells = None
    if args.cells:
        try:
            cells = [(cell(a), cell(b)) for a, b in args.cells]
        except ValueError as err:
            parser.error(str(err))
        repeated = {label for label in labels if labels.count(label) > 1}
        if repeated:
            parser.error(f"--cells {', '.join(sorted(repeated))} given twice: each pair of cells "
                         "once (a pair counted twice would count its clips twice)")
    runs = []
    for folders in sides:
        records, seen = [], {}
        for folder in folders:
            try:
                got = read_results(Path(folder) / RESULTS, RECORD_FIELDS)
            except ResultsError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            if not got:
                print(f"error: {folder} has no {RESULTS}: give a folder written by "
                      f"'python -m eval --out FOLDER'.", file=sys.stderr)
                return 2
            for r in got:
                key = pair_key(r)
                if key in seen:
                    print(f"error: the clip {key} is in {seen[key]} and again in {folder}: a "
                          "clip counted twice would count as two pairs; join folders that hold "
                          "different cells of a grid.", file=sys.stderr)
                    return 2
                seen[key] = folder
            records += got
        runs.append(records)
    if cells:
        picked: list[list[dict]] = [[], []]
        for specs, pair, label in zip(args.cells, cells, labels):
            for side, (spec, (method, steps), records, folder) in enumerate(
                    zip(specs, pair, runs, (args.a, args.b))):
                chosen = one_cell(records, method, steps, label)
                if not chosen:
                    present = sorted({f"{r['method']}:{r['steps']}" for r in records})
                    print(f"error: {folder} has no clip of the cell {spec}; it has "
                          f"{', '.join(present)}.", file=sys.stderr)
                    return 2
                picked[side] += chosen
        runs = picked
    rows, mismatched = compare(*runs)
    if not rows:
        print(f"error: no clip of {args.b} matches one of {args.a} (same speaker, method, shots, "
              "task, seed, steps, text and support clips): run both with the same grid.",
              file=sys.stderr)
        return 2
    missing = [label for label in labels if label not in {r["method"] for r in rows}]
    if missing:
        print(f"error: no clip of the pair {', '.join(missing)} matches (same speaker, shots, "
              "task, seed, text and support clips): the family would silently lose it; give "
              "cells of the same grid.", file=sys.stderr)
        return 2
    if cells:
        print(f"A = the first cell of each pair, from {args.a}; B = the second, from {args.b} "
              "(the method column names the pair; the steps column reads 0 for both cells)")
    else:
        print(f"A = {args.a}, B = {args.b}")
    print("| group | method | k | steps | judge | clips | A | B | B - A [95 % CI] | B higher | "
          "p (clips) | p (draws) | p (voices) | Holm (clips) | Holm (draws) | Holm (voices) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def shown(p: float | None, n: int | None = None) -> str:
        return ("n/a" if p is None else f"{p:.2g}") + ("" if n is None else f" ({n})")

    for r in rows:
        print(f"| {r['group']} | {r['method']} | {r['shots']} | {r['steps']} | {r['judge']} | "
              f"{r['clips']} | {r['a']:.3f} | {r['b']:.3f} | {r['difference']:+.3f} "
              f"[{r['low']:+.3f}, {r['high']:+.3f}] | {100 * r['b_higher']:.0f} % | "
              f"{shown(r['p'])} | {shown(r['p_draws'], r['draws'])} | "
              f"{shown(r['p_voices'], r['voices'])} | {shown(r['holm'])} | "
              f"{shown(r['holm_draws'])} | {shown(r['holm_voices'])} |")
    if mismatched:
        print(f"{mismatched} clips left out: adapted from different support clips in the two runs")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": args.a, "b": args.b, "cells": args.cells,
                                              "rows": rows, "left_out": mismatched},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two benchmark runs of the same grid on different checkpoints, compared clip by clip.

    python -m eval.compare runs/eval/span_control runs/eval/span [--out compare.json]

Each run is a ``python -m eval --out DIR`` folder. Records are paired by (speaker, method, shots,
task, seed, steps, text), and a pair counts only when both runs adapted from the same support
clips, so that the difference is the checkpoint's alone. Per voice group, method and step count
it prints each judge's mean (WER in %) in A and in B, the mean difference B - A with its 95 %
cluster bootstrap interval (a cluster is one speaker's task, as in the report), the share of
clips where B is higher, and the two-sided Wilcoxon p of the pairs: of the clips, and of the
means of each draw (a speaker's task) and of each voice, since the clips of one adaptation are
not independent (the clip-level p is the optimistic one). Nothing is judged again.

    python -m eval.compare RUN RUN --cells meta:10 finetune-adam:100

compares two cells of one grid instead (A: the first method after its step count, B: the second;
the same run may be given twice): pairs are the same clips (speaker, shots, task, seed, text and
support clips), e.g. issue #16's "the meta-learned start after 10 steps against fine-tuning from
the mean after 100".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from eval.runner import RECORD_FIELDS, RESULTS, ResultsError, read_results
from eval.stats import cluster_bootstrap, cluster_test, paired_test

JUDGES = {"secs": "ECAPA", "secs_ge2e": "GE2E", "wer": "WER %", "mos": "DNSMOS"}
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
            diff = cluster_bootstrap([y - x for x, y, _ in both], [c for _, _, c in both])
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
    return rows, mismatched


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
    parser.add_argument("a", help="the first run's folder (the reference)")
    parser.add_argument("b", help="the second run's folder")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--cells", nargs=2, metavar=("METHOD:STEPS", "METHOD:STEPS"),
                        help="compare these two cells (A from the first run, B from the second) "
                             "instead of the same cells of two runs")
    args = parser.parse_args(argv)
    if args.out:
        from metatts.assets import output_problem

        problem = output_problem(args.out, force=args.force, inputs=[
            Path(f) / name for f in (args.a, args.b) for name in (RESULTS, "summary.json")])
        if problem:
            parser.error(f"--out {problem}")
    cells = None
    if args.cells:
        try:
            cells = [cell(spec) for spec in args.cells]
        except ValueError as err:
            parser.error(str(err))
    runs = []
    for folder in (args.a, args.b):
        try:
            records = read_results(Path(folder) / RESULTS, RECORD_FIELDS)
        except ResultsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if not records:
            print(f"error: {folder} has no {RESULTS}: give a folder written by "
                  f"'python -m eval --out FOLDER'.", file=sys.stderr)
            return 2
        runs.append(records)
    if cells:
        label = " vs ".join(args.cells)
        picked = [one_cell(records, method, steps, label)
                  for records, (method, steps) in zip(runs, cells)]
        for spec, chosen, records, folder in zip(args.cells, picked, runs, (args.a, args.b)):
            if not chosen:
                present = sorted({f"{r['method']}:{r['steps']}" for r in records})
                print(f"error: {folder} has no clip of the cell {spec}; it has "
                      f"{', '.join(present)}.", file=sys.stderr)
                return 2
        runs = picked
    rows, mismatched = compare(*runs)
    if not rows:
        print(f"error: no clip of {args.b} matches one of {args.a} (same speaker, method, shots, "
              "task, seed, steps, text and support clips): run both with the same grid.",
              file=sys.stderr)
        return 2
    if cells:
        print(f"A = {args.cells[0]} of {args.a}, B = {args.cells[1]} of {args.b} "
              "(the steps column reads 0 for both cells)")
    else:
        print(f"A = {args.a}, B = {args.b}")
    print("| group | method | k | steps | judge | clips | A | B | B - A [95 % CI] | B higher | "
          "p (clips) | p (draws) | p (voices) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def shown(p: float | None, n: int | None = None) -> str:
        return ("n/a" if p is None else f"{p:.2g}") + ("" if n is None else f" ({n})")

    for r in rows:
        print(f"| {r['group']} | {r['method']} | {r['shots']} | {r['steps']} | {r['judge']} | "
              f"{r['clips']} | {r['a']:.3f} | {r['b']:.3f} | {r['difference']:+.3f} "
              f"[{r['low']:+.3f}, {r['high']:+.3f}] | {100 * r['b_higher']:.0f} % | "
              f"{shown(r['p'])} | {shown(r['p_draws'], r['draws'])} | "
              f"{shown(r['p_voices'], r['voices'])} |")
    if mismatched:
        print(f"{mismatched} clips left out: adapted from different support clips in the two runs")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": args.a, "b": args.b, "cells": args.cells,
                                              "rows": rows, "left_out": mismatched},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

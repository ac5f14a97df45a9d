"""The README's headline table of a benchmark run, printed from its summary.

    python -m eval.headline results/eval_full [--methods meta finetune-encoder finetune-adam]

One row per voice group, shot count and method (in that order): ECAPA similarity at every step
count, the share of the floor-to-ceiling gap closed, WER (the mean per clip, in %) and DNSMOS;
then each group's ceiling and floor, and its real clips' WER and DNSMOS; then the steps each
baseline needs to reach the meta-learned start's 5- and 10-step similarity (the run's own
baseline, and the one of every report beside it, e.g. ``vs_twin/`` written with ``--baseline
finetune-encoder --report-dir RUN/vs_twin``); then the run's work by stage, summed from its
records. Everything is read from what ``python -m eval`` wrote (nothing is judged again), so
that the README's figures are copied by a command instead of by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval import readable, references as refs_file, runner

GROUPS = ("natural", "real", "engine")
NAMES = {"meta": "meta-learned start", "finetune-encoder": "fine-tune from the encoder (twin)",
         "finetune-adam": "fine-tune from the mean"}


def _joined(values: list, fmt: str, suffix: str = "") -> str:
    return " / ".join("-" if v is None else format(v, fmt) for v in values) + suffix


def table(summary: dict, methods: list[str], field: str = "secs") -> list[str]:
    """Markdown lines: the header and one row per group, shot count and method present.
    ``field`` "secs_other": ECAPA and the gap closed without the real clip of each clip's own
    sentence among the references (as the ceiling has none; reports since 2026-12-08)."""
    rows = summary["rows"]
    steps = sorted({r["steps"] for r in rows})
    gap_field = "gap_closed" if field == "secs" else "gap_closed_other"
    what = "ECAPA" if field == "secs" else "ECAPA, other sentences,"
    out = [f"| group, k | method | {what} after {' / '.join(map(str, steps))} steps "
           f"| gap closed ({what.rstrip(',')}) | WER % | DNSMOS |", "|---|---|---|---|---|---|"]
    for group in GROUPS:
        for shots in sorted({r["shots"] for r in rows if r["group"] == group}, reverse=True):
            for method in methods:
                cells = {r["steps"]: r for r in rows if (r["group"], r["shots"], r["method"])
                         == (group, shots, method)}
                if not cells:
                    continue
                got = [cells.get(n, {}) for n in steps]
                gap = [None if c.get(gap_field) is None else 100 * c[gap_field]
                       for c in got]
                wer = [None if c.get("wer") is None else 100 * c["wer"] for c in got]
                out.append(f"| {group}, {shots} | {NAMES.get(method, method)} "
                           f"| {_joined([c.get(field) for c in got], '.3f')} "
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


def steps_to_match(summaries: list[dict], encoder: str = "ECAPA") -> list[str]:
    """Markdown lines: per group and k, the steps each report's baseline needs to reach the
    meta-learned start's similarity after its first two step counts (linear on the step grid;
    "> N" where it never does within the grid's N steps)."""
    baselines = [NAMES.get(b, b) for b in (_baseline(s) for s in summaries)]
    out = [f"| group | k | {' | '.join(baselines)} |", "|---|---|" + "---|" * len(baselines)]
    for group in GROUPS:
        for shots in (5, 1):
            cols = []
            for summary in summaries:
                rows = sorted((r for r in summary.get("steps_to_match", [])
                               if (r["group"], r["shots"], r["encoder"], r["method"])
                               == (group, shots, encoder, "meta")), key=lambda r: r["at"])
                cols.append(" / ".join(f"> {r['max_steps']}" if r["steps"] is None
                                       else f"{r['steps']:.1f}" for r in rows))
            if any(cols):
                out.append(f"| {group} | {shots} | {' | '.join(c or '-' for c in cols)} |")
    return out


def _baseline(summary: dict) -> str:
    found = {r["baseline"] for r in summary.get("steps_to_match", [])}
    return found.pop() if len(found) == 1 else "baseline"


def work(records: list[dict]) -> dict[str, float]:
    """Seconds of work by stage, summed from a run's records: each adaptation once (a unit's
    ``adapt_seconds`` is the time to reach its step count, so an adaptation costs its largest),
    each distinct clip (voice, speaker, text) synthesized and judged once. ``cpu``: the same sum
    of the process's CPU seconds (every thread's), where every record has them (runs since
    2026-12-07), else None."""
    adaptations: dict[tuple, tuple[float, float | None]] = {}
    for r in records:
        key = (r["method"], r["speaker"], r["shots"], r["task"], tuple(r.get("support", ())))
        wall = r.get("adapt_seconds") or 0.0
        if key not in adaptations or wall > adaptations[key][0]:
            adaptations[key] = (wall, r.get("adapt_cpu_seconds"))
    clips = list(runner.known_clips(records).values())
    cpu = [c for _, c in adaptations.values()] + \
        [c.get(f) for c in clips for f in ("synthesis_cpu_seconds", "score_cpu_seconds")]
    return {"records": len(records), "adaptations": len(adaptations), "clips": len(clips),
            "adapt": sum(w for w, _ in adaptations.values()),
            "synthesis": sum(c.get("synthesis_seconds") or 0.0 for c in clips),
            "judges": sum(c.get("score_seconds") or 0.0 for c in clips),
            "cpu": sum(cpu) if cpu and None not in cpu else None}


def work_line(w: dict[str, float]) -> str:
    total = w["adapt"] + w["synthesis"] + w["judges"]
    per_clip = w["judges"] / w["clips"] if w["clips"] else 0.0
    cpu = "" if w.get("cpu") is None else f"; CPU {w['cpu'] / 3600:.1f} core-hours"
    return (f"work: {total / 3600:.1f} h = adaptation {w['adapt'] / 60:.0f} min "
            f"({w['adaptations']} adaptations), synthesis {w['synthesis'] / 60:.0f} min, judges "
            f"{w['judges'] / 60:.0f} min ({w['clips']} distinct clips, {per_clip:.2f} s a clip "
            f"judged){cpu}; {w['records']} records")


def voices(records: list[dict], references: list[dict], method: str, shots: int,
           groups: tuple[str, ...] = ("natural", "real"), field: str = "secs") -> list[str]:
    """Markdown lines: one row per voice of ``groups`` for ``method`` at ``shots`` clips, its
    ceiling (ECAPA between its own real clips) and its mean ECAPA at every step count with the
    share of that ceiling in brackets; what a group's mean hides. A group of several voices
    ends with their means (shares: the mean of the voices' shares). ``field`` "secs_other"
    reads each clip's similarity without the real clip of its own sentence, as the ceiling has
    none (records since 2026-12-08); clips without it are left out."""
    bounds = readable.speaker_bounds(references)
    cells: dict[tuple[str, int], list[float]] = {}
    group_of: dict[str, str] = {}
    for r in records:
        if (r["method"] == method and r["shots"] == shots and r["group"] in groups
                and r.get(field) is not None):
            cells.setdefault((r["speaker"], r["steps"]), []).append(r[field])
            group_of[r["speaker"]] = r["group"]
    steps = sorted({n for _, n in cells})
    mean = {key: sum(v) / len(v) for key, v in cells.items()}  # (speaker, steps) -> mean
    out = [f"| voice | group | ceiling | {method}, k = {shots}: ECAPA after "
           f"{' / '.join(map(str, steps))} steps (share of the ceiling) |", "|---|---|---|---|"]
    for group in groups:
        for speaker in sorted(s for s, g in group_of.items() if g == group):
            top = bounds[speaker].ceiling if speaker in bounds else None
            got = []
            for n in steps:
                m = mean.get((speaker, n))
                got.append("-" if m is None else f"{m:.3f}" if top is None
                           else f"{m:.3f} ({100 * m / top:.0f} %)")
            out.append(f"| {speaker} | {group} | {'-' if top is None else format(top, '.3f')} "
                       f"| {' / '.join(got)} |")
        members = [v for v, g in group_of.items() if g == group and v in bounds]
        if len(members) > 1:
            got = []
            for n in steps:
                means = {v: mean[(v, n)] for v in members if (v, n) in mean}
                if not means:
                    got.append("-")
                    continue
                share = sum(m / bounds[v].ceiling for v, m in means.items()) / len(means)
                got.append(f"{sum(means.values()) / len(means):.3f} ({100 * share:.0f} %)")
            top = sum(bounds[v].ceiling for v in members) / len(members)
            out.append(f"| mean of {len(members)} voices | {group} | {top:.3f} | "
                       f"{' / '.join(got)} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.headline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a python -m eval --out folder")
    parser.add_argument("--methods", nargs="+", default=list(NAMES),
                        help="methods in row order (default: %(default)s)")
    parser.add_argument("--voices", metavar="METHOD:K",
                        help="instead, one row per natural and real voice for METHOD at K clips "
                             "(e.g. meta:5): its ceiling and its ECAPA at every step count")
    parser.add_argument("--without-own-sentence", action="store_true",
                        help="each clip's ECAPA without the real clip of its own sentence among "
                             "the references (secs_other), as the ceiling has none; for the "
                             "table and --voices (runs since 2026-12-08)")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except (runner.ResultsError, json.JSONDecodeError, KeyError, TypeError) as err:
        what = f"{type(err).__name__}: {err}" if not isinstance(err, runner.ResultsError) \
            else str(err)
        print(f"{args.run} is not a complete python -m eval folder ({what}); give a folder the "
              "benchmark wrote, or write its report again with python -m eval --out DIR.",
              file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    if args.voices:
        method, _, shots = args.voices.rpartition(":")
        if not method or not shots.isdigit():
            print(f"--voices {args.voices}: write METHOD:K, e.g. meta:5.", file=sys.stderr)
            return 1
        for name in (runner.RESULTS, refs_file.RECORDS):
            if not (args.run / name).is_file():
                print(f"{args.run / name} does not exist: give a python -m eval --out folder.",
                      file=sys.stderr)
                return 1
        lines = voices(runner.read_results(args.run / runner.RESULTS, runner.RECORD_FIELDS),
                       runner.read_results(args.run / refs_file.RECORDS), method, int(shots),
                       field="secs_other" if args.without_own_sentence else "secs")
        if len(lines) == 2:
            print(f"no record of {method} at k = {shots} in {args.run}.", file=sys.stderr)
            return 1
        print("\n".join(lines))
        return 0
    path = args.run / "summary.json"
    if not path.is_file():
        print(f"{path} does not exist: give a folder that python -m eval has written a report "
              "to (python -m eval --out DIR ..., or --report-dir).", file=sys.stderr)
        return 1
    summary = json.loads(path.read_text(encoding="utf-8"))
    have = {r["method"] for r in summary["rows"]}
    unknown = [m for m in args.methods if m not in have]
    if unknown and args.methods != list(NAMES):
        print(f"no rows of {', '.join(unknown)} in {path} (it has {', '.join(sorted(have))}).",
              file=sys.stderr)
        return 1
    field = "secs_other" if args.without_own_sentence else "secs"
    if field == "secs_other" and not any(r.get("secs_other") is not None
                                         for r in summary["rows"]):
        print(f"{path} has no similarity without the own sentence (secs_other): its run predates "
              "2026-12-08, or its report was written before; write the report again with "
              "python -m eval --out DIR (nothing is judged again), or leave the flag out.",
              file=sys.stderr)
        return 1
    print("\n".join(table(summary, args.methods, field)))
    print()
    print("\n".join(references(summary)))
    beside = sorted(args.run.glob("*/summary.json"))
    summaries = [summary] + [json.loads(p.read_text(encoding="utf-8")) for p in beside]
    print()
    print("\n".join(steps_to_match(summaries)))
    records = runner.read_results(args.run / runner.RESULTS, runner.RECORD_FIELDS)
    if records:
        print()
        print(work_line(work(records)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

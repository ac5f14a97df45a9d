"""Tables and plots from the per-clip records: summary.json, CSV files, report.md, PNG plots.

Every table is per speaker group (eval.groups): no row mixes two groups.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

from eval import metrics, readable, stats
from eval.groups import GROUPS, group_of
from eval.naturalness import NAME as MOS_NAME

SIMILARITY = {"secs": "ECAPA", "secs_ge2e": "GE2E"}  # record field -> encoder
# each clip's similarity without the real clip of its own sentence among the references, as the
# ceiling has none (records since 2026-12-08): field -> the field whose bounds it is read against
OTHER = {"secs_other": "secs", "secs_ge2e_other": "secs_ge2e"}
METRICS = ("wer", "secs", "secs_ge2e", "mos", "adapt_seconds", *OTHER)  # mean and interval
TESTED = ("wer", "secs", "secs_ge2e", "mos", *OTHER)  # paired tests against the baseline
TEST_NAMES = {"wer": "wer", "secs": "ecapa", "secs_ge2e": "ge2e", "mos": "mos",
              "secs_other": "ecapa other", "secs_ge2e_other": "ge2e other"}
MATCH_AT = (5, 10)  # steps-to-match targets: the meta-learned start after this many steps
NOT_AVAILABLE = "n/a"
DEFINITIONS = f"""\
## Metric definitions

- **wer**: mean of per-utterance word error rates; **wer_pooled**: all errors over all reference
  words (corpus WER). Transcripts by Whisper ({{asr}}); both texts pass the
  {metrics.NORMALIZER}; errors counted by jiwer.
- **secs (ECAPA)**: speaker similarity, the mean cosine of ECAPA (spkrec-ecapa-voxceleb)
  embeddings of a synthesized clip to the speaker's held-out real test clips (never the support
  clips). **secs (GE2E)**: the same with a second, independent encoder ({{ge2e}}). Raw cosines
  of different encoders are not comparable with each other, nor with published figures.
  **other sentences**: the same mean without the real clip of the synthesized clip's own
  sentence, as the ceiling (cosines between different real clips) has none; the fair figure to
  set against the ceiling (runs since 2026-12-08).
- **gap closed**: per speaker, (secs - floor) / (ceiling - floor) with the floor and ceiling
  of the same encoder from the `real` reference rows (ceiling: cosine between different real
  clips of the speaker; floor: cosine of its real clips to other speakers' real clips, all
  groups); then the mean over the speakers of the cell (interval: bootstrap over speakers).
  0 = no closer than another person, 1 = as close as the speaker's own other recordings.
- **steps to match**: the adaptation steps {{baseline}} needs to reach a meta-learned start's
  mean similarity after 5 and 10 steps (same group, k and encoder), linearly interpolated on the
  step grid; "> N" when it does not reach it by the grid's largest step count N.
- **mos**: {MOS_NAME}: a non-intrusive (no reference) neural predictor of ITU-T P.835
  listening-test ratings, trained on noisy and processed real speech, not on TTS. It is not a
  human MOS: compare rows with each other, not with published MOS.
- **adapt_seconds**: wall time of one adaptation (features + steps), on this machine.
- Intervals: 95 % percentile bootstrap ({{resamples}} resamples) over speakers (each speaker's
  clips resampled whole), so that an interval speaks of voices like these; a group of one
  speaker over its support draws (tasks); reference rows over speakers.
- **p (Holm)**: two-sided Wilcoxon signed-rank test (scipy, zero differences dropped) of the
  method against {{baseline}} at the same group, k and steps, on clips matched by (speaker, task,
  text); Holm-adjusted over every cell of every group, one family per metric. **pairs** is the
  number of matched clips of the cell.
- Reference rows: **real** = the real test recordings (WER of the ground truth; secs = ceiling;
  secs_floor = floor); **vocoded** = the real clips resynthesized from their mels by the
  HiFi-GAN vocoder, scored like a synthesized clip.
"""


def _interval(records: list[dict], name: str, cluster: Callable[[dict], object], seed: int,
              resamples: int, draw: Callable[[dict], object] | None = None
              ) -> tuple[float | None, list[float] | None]:
    """The mean of ``name`` with its bootstrap interval over ``cluster`` (e.g. speakers); with
    ``draw`` given, over ``draw`` (e.g. the support draws) where there is one cluster only
    (:func:`stats.voice_bootstrap`)."""
    kept = [r for r in records if r.get(name) is not None]
    if not kept:
        return None, None
    values, clusters = [r[name] for r in kept], [cluster(r) for r in kept]
    iv = stats.cluster_bootstrap(values, clusters, resamples, seed) if draw is None else \
        stats.voice_bootstrap(values, clusters, [draw(r) for r in kept], resamples, seed)
    return iv.mean, [iv.low, iv.high]


def _pooled(records: list[dict]) -> float | None:
    words = sum(r["words"] for r in records)
    return sum(r["errors"] for r in records) / words if words else None


def _group(r: dict) -> str:
    return r.get("group") or group_of(r["speaker"])


def summary_rows(records: list[dict], baseline: str, *,
                 bounds: dict[str, dict[str, readable.Bounds]] | None = None, seed: int = 0,
                 resamples: int = stats.BOOTSTRAP) -> list[dict]:
    """One row per (group, method, shots, steps); ``bounds``: encoder field -> speaker ->
    floor and ceiling (for the gap closed). p-values are Holm-adjusted across the rows."""
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((_group(r), r["method"], r["shots"], r["steps"]), []).append(r)
    order = {g: i for i, g in enumerate(GROUPS)}
    rows = []
    for (group, method, shots, steps), rs in sorted(cells.items(),
                                                    key=lambda c: (order[c[0][0]], c[0][1:])):
        row = {"group": group, "method": method, "shots": shots, "steps": steps, "n": len(rs),
               "speakers": len({r["speaker"] for r in rs}),
               "tasks": len({(r["speaker"], r["seed"]) for r in rs})}
        for name in METRICS:
            row[name], row[f"{name}_ci"] = _interval(rs, name, lambda r: r["speaker"], seed,
                                                     resamples, lambda r: r["seed"])
        row["wer_pooled"] = _pooled(rs)
        for name in (*SIMILARITY, *OTHER):
            against = OTHER.get(name, name)
            row[_gap(name)], row[f"{_gap(name)}_ci"] = _gap_closed(
                rs, (bounds or {}).get(against, {}), name, seed, resamples)
        base = cells.get((group, baseline, shots, steps))
        row["p_vs_finetune"] = None if base is None or method == baseline else \
            _paired(rs, base)
        rows.append(row)
    holm_adjust(rows)
    return rows


def _gap(name: str) -> str:
    """gap_closed (secs), gap_closed_ge2e, gap_closed_other, gap_closed_ge2e_other."""
    return "gap_closed" if name == "secs" else f"gap_closed_{name.removeprefix('secs_')}"


def _gap_closed(records: list[dict], bounds: dict[str, readable.Bounds], name: str, seed: int,
                resamples: int) -> tuple[float | None, list[float] | None]:
    per = readable.gap_closed_by_speaker(records, bounds, name)
    if not per:
        return None, None
    iv = stats.cluster_bootstrap(list(per.values()), list(per), resamples, seed)
    return readable.gap_closed(records, bounds, name), [iv.low, iv.high]


def _paired(records: list[dict], baseline: list[dict]) -> dict:
    def by_key(rs, name):
        return {(r["speaker"], r["seed"], r["text"]): r[name] for r in rs
                if r.get(name) is not None}

    out = {"pairs": len(set(by_key(records, "wer")) & set(by_key(baseline, "wer"))),
           "other_pairs": len(set(by_key(records, "secs_other"))
                              & set(by_key(baseline, "secs_other")))}
    for name in TESTED:
        out[name] = stats.paired_test(by_key(records, name), by_key(baseline, name)).p
    return out


def holm_adjust(rows: list[dict]) -> None:
    """Add ``p_vs_finetune["holm"]``: each metric's p-values Holm-adjusted over all rows."""
    tested = [r for r in rows if r.get("p_vs_finetune")]
    for r in tested:
        r["p_vs_finetune"]["holm"] = {}
    for name in TESTED:
        adjusted = stats.holm([r["p_vs_finetune"][name] for r in tested])
        for r, p in zip(tested, adjusted):
            r["p_vs_finetune"]["holm"][name] = p


def steps_to_match(rows: list[dict], baseline: str, at: tuple[int, ...] = MATCH_AT) -> list[dict]:
    """For each group, k, meta-learned method and encoder: the baseline's steps to reach the
    method's mean similarity after ``at`` steps (None: not reached by ``max_steps``)."""
    cells = {(r["group"], r["method"], r["shots"], r["steps"]): r for r in rows}
    out = []
    for (group, method, shots, steps), row in cells.items():
        if method == baseline or ":" in method or method.startswith("finetune") or \
                steps not in at:
            continue
        curve_rows = [r for (g, m, k, _), r in cells.items()
                      if (g, m, k) == (group, baseline, shots)]
        for name, encoder in SIMILARITY.items():
            curve = {r["steps"]: r[name] for r in curve_rows if r[name] is not None}
            if row[name] is None or not curve:
                continue
            out.append({"group": group, "shots": shots, "method": method, "at": steps,
                        "encoder": encoder, "target": row[name], "baseline": baseline,
                        "steps": readable.steps_to_reach(curve, row[name]),
                        "max_steps": max(curve)})
    order = {g: i for i, g in enumerate(GROUPS)}
    return sorted(out, key=lambda r: (order[r["group"]], r["shots"], r["method"], r["encoder"],
                                      r["at"]))


def power(rows: list[dict], baseline: str, target: int) -> dict:
    """Per group: the fewest and most matched clips of a cell (pairs with the baseline), and
    whether every cell reaches ``target``."""
    out = {}
    for group in GROUPS:
        pairs = [r["p_vs_finetune"]["pairs"] for r in rows
                 if r["group"] == group and r.get("p_vs_finetune")]
        if pairs:
            out[group] = {"min_pairs": min(pairs), "max_pairs": max(pairs), "cells": len(pairs),
                          "target": target, "met": min(pairs) >= target}
    return out


def reference_summary(records: list[dict], *, seed: int = 0,
                      resamples: int = stats.BOOTSTRAP) -> dict:
    """group -> kind -> row."""
    out: dict[str, dict] = {}
    for group in GROUPS:
        for kind in ("real", "vocoded"):
            rs = [r for r in records if r["kind"] == kind and _group(r) == group]
            if not rs:
                continue
            row = {"n": len(rs), "speakers": len({r["speaker"] for r in rs})}
            for name in ("wer", "secs", "secs_floor", "secs_ge2e", "secs_ge2e_floor", "mos"):
                row[name], row[f"{name}_ci"] = _interval(rs, name, lambda r: r["speaker"], seed,
                                                         resamples)
            row["wer_pooled"] = _pooled(rs)
            out.setdefault(group, {})[kind] = row
    return out


def summarize(records: list[dict], references: list[dict], baseline: str, *, seed: int = 0,
              resamples: int = stats.BOOTSTRAP, power_target: int = 100) -> dict:
    """Every table of the report from the clip records and the reference records."""
    bounds = {name: readable.speaker_bounds(references, name) for name in SIMILARITY}
    rows = summary_rows(records, baseline, bounds=bounds, seed=seed, resamples=resamples)
    return {"rows": rows, "steps_to_match": steps_to_match(rows, baseline),
            "power": power(rows, baseline, power_target),
            "reference": reference_summary(references, seed=seed, resamples=resamples),
            "speakers": {g: sorted({r["speaker"] for r in records if _group(r) == g})
                         for g in GROUPS if any(_group(r) == g for r in records)}}


def _fmt(value, ci=None, missing: str = "-") -> str:
    if value is None:
        return missing
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _p(row: dict) -> str:
    p = row.get("p_vs_finetune")
    if not p:
        return "-"
    holm = p["holm"]
    other = bool(p.get("other_pairs"))  # records with secs_other on both sides
    return ", ".join(f"{TEST_NAMES[k]} {'-' if holm.get(k) is None else f'{holm[k]:.3g}'}"
                     for k in TESTED if k not in OTHER or other)


def _table(rows: list[dict], ge2e: str) -> list[str]:
    """The Methods table; runs whose records carry ``secs_other`` get its two columns."""
    other = any(r.get("secs_other") is not None for r in rows)
    header = ("| method | k | steps | n | pairs | wer [95% CI] | wer_pooled | secs ECAPA [95% CI] "
              "| gap closed ECAPA | " + ("ECAPA, other sentences [95% CI] | gap closed, other "
                                         "sentences | " if other else "") +
              "secs GE2E [95% CI] | gap closed GE2E | mos [95% CI] | adapt s | "
              "p (Holm) vs baseline |")
    lines = [header, "|" + "---|" * (16 if other else 14)]
    for r in rows:
        pairs = r["p_vs_finetune"]["pairs"] if r.get("p_vs_finetune") else "-"
        fair = (f"{_fmt(r.get('secs_other'), r.get('secs_other_ci'))} | "
                f"{_pct(r.get('gap_closed_other'))} | ") if other else ""
        lines.append(f"| {r['method']} | {r['shots']} | {r['steps']} | {r['n']} | {pairs} | "
                     f"{_fmt(r['wer'], r['wer_ci'])} | {_fmt(r['wer_pooled'])} | "
                     f"{_fmt(r['secs'], r['secs_ci'])} | {_pct(r['gap_closed'])} | {fair}"
                     f"{_fmt(r['secs_ge2e'], r['secs_ge2e_ci'], ge2e)} | "
                     f"{_pct(r['gap_closed_ge2e']) if r['secs_ge2e'] is not None else ge2e} | "
                     f"{_fmt(r['mos'], r['mos_ci'])} | {_fmt(r['adapt_seconds'])} | {_p(r)} |")
    return lines


def _steps(value: float | None, max_steps: int) -> str:
    return f"> {max_steps}" if value is None else f"{value:.1f}"


def _match_table(entries: list[dict]) -> list[str]:
    lines = ["| k | meta-learned | encoder | its secs at 5 steps | baseline steps to match | "
             "its secs at 10 steps | baseline steps to match |", "|" + "---|" * 7]
    keys = dict.fromkeys((e["shots"], e["method"], e["encoder"]) for e in entries)
    for k, method, encoder in keys:
        cells = []
        for at in MATCH_AT:
            e = next((e for e in entries if (e["shots"], e["method"], e["encoder"], e["at"])
                      == (k, method, encoder, at)), None)
            cells += ["-", "-"] if e is None else [f"{e['target']:.3f}",
                                                  _steps(e["steps"], e["max_steps"])]
        lines.append(f"| {k} | {method} | {encoder} | " + " | ".join(cells) + " |")
    return lines


def headline_method(rows: list[dict], baseline: str) -> str | None:
    """The meta-learned method the headline table shows: "meta" if present, else the first."""
    names = [r["method"] for r in rows if r["method"] != baseline
             and not r["method"].startswith("finetune") and ":" not in r["method"]]
    return "meta" if "meta" in names else (names[0] if names else None)


def headline(summary: dict, baseline: str) -> list[str]:
    """Per group, k and steps: gap closed (ECAPA, GE2E), WER and matched clips of the meta-learned
    start beside the baseline; then its steps-to-match. The README's table."""
    rows = summary["rows"]
    meta = headline_method(rows, baseline)
    if meta is None:
        return []
    cells = {(r["group"], r["method"], r["shots"], r["steps"]): r for r in rows}
    both = f"({meta} / {baseline})"
    lines = [f"| group | k | steps | gap closed ECAPA {both} | gap closed GE2E {both} | "
             f"WER {both} | matched clips |", "|" + "---|" * 7]
    for (group, method, shots, steps), r in cells.items():
        if method != meta:
            continue
        b = cells.get((group, baseline, shots, steps), {})
        ge2e = (f"{_pct(r['gap_closed_ge2e'])} / {_pct(b.get('gap_closed_ge2e'))}"
                if r["gap_closed_ge2e"] is not None else NOT_AVAILABLE)
        pairs = r["p_vs_finetune"]["pairs"] if r.get("p_vs_finetune") else "-"
        lines.append(f"| {group} | {shots} | {steps} | {_pct(r['gap_closed'])} / "
                     f"{_pct(b.get('gap_closed'))} | {ge2e} | {_pct(r['wer'])} / "
                     f"{_pct(b.get('wer'))} | {pairs} |")
    match = {(e["group"], e["shots"], e["encoder"], e["at"]): e
             for e in summary["steps_to_match"] if e["method"] == meta}
    if match:
        lines += ["", f"Steps {baseline} needs to reach {meta}'s similarity after "
                  f"{' / '.join(map(str, MATCH_AT))} steps (\"-\": not on the step grid):", ""]
        for group, shots, encoder in dict.fromkeys(key[:3] for key in match):
            cells = [match.get((group, shots, encoder, at)) for at in MATCH_AT]
            text = " / ".join("-" if e is None else _steps(e["steps"], e["max_steps"])
                              for e in cells)
            lines.append(f"- {group}, k = {shots}, {encoder}: {text}")
    return lines


def _reference_table(reference: dict, ge2e: str) -> list[str]:
    lines = ["| kind | n | speakers | wer [95% CI] | wer_pooled | secs ECAPA (ceiling) | "
             "floor ECAPA | secs GE2E (ceiling) | floor GE2E | mos [95% CI] |", "|" + "---|" * 10]
    for kind, r in reference.items():
        lines.append(f"| {kind} | {r['n']} | {r['speakers']} | {_fmt(r['wer'], r['wer_ci'])} | "
                     f"{_fmt(r['wer_pooled'])} | {_fmt(r['secs'], r['secs_ci'])} | "
                     f"{_fmt(r['secs_floor'], r['secs_floor_ci'])} | "
                     f"{_fmt(r['secs_ge2e'], r['secs_ge2e_ci'], ge2e)} | "
                     f"{_fmt(r['secs_ge2e_floor'], r['secs_ge2e_floor_ci'], ge2e)} | "
                     f"{_fmt(r['mos'], r['mos_ci'])} |")
    return lines


def _is_study(row: dict) -> bool:
    """A row of the inner-optimizer experiment: finetune-sgd and its variants."""
    return row["method"].split(":")[0] == "finetune-sgd"


def _is_main(row: dict) -> bool:
    """Any other method, with its options (e.g. ``meta:piece_frames=400``): the Methods table."""
    return row["method"] == "finetune-sgd" or not _is_study(row)


def markdown(summary: dict, links: dict[str, str] | None = None) -> str:
    """report.md's text; ``links``: plot file name -> where report.md finds it (default: beside
    it)."""
    config = summary["config"]
    baseline = config["baseline"]
    missing = config.get("second_speaker_model_missing")
    ge2e = NOT_AVAILABLE if missing else "-"
    intro = (f"Data: `{config['data']}`; methods: {', '.join(config['methods'])}; seed "
             f"{config['seed']}; {config['test_sentences']} test sentences per speaker, "
             f"{config['tasks']} support draw(s) per speaker and k. Every table is one speaker "
             "group; no row averages two groups.")
    lines = ["# Few-shot adaptation benchmark", "", intro, ""]
    if missing:
        lines += [f"GE2E similarity: {NOT_AVAILABLE} ({missing}).", ""]
    lines += ["## Headline", "", *headline(summary, baseline), "", "## Matched clips per cell",
              ""]
    for group, p in summary.get("power", {}).items():
        target = (f" (the full preset's target: {p['target']} per cell; "
                  f"{'met' if p['met'] else 'not met here'})") \
            if group == "natural" else ""
        spread = p["min_pairs"] if p["min_pairs"] == p["max_pairs"] else \
            f"{p['min_pairs']}-{p['max_pairs']}"
        lines.append(f"- {group}: {spread} matched clips in each of {p['cells']} cells"
                     f"{target}")
    for group in GROUPS:
        rows = [r for r in summary["rows"] if r["group"] == group]
        reference = summary["reference"].get(group)
        if not rows and not reference:
            continue
        speakers = summary.get("speakers", {}).get(group, [])
        lines += ["", f"## Group: {group} ({len(speakers)} speaker(s): {', '.join(speakers)})",
                  ""]
        main = [r for r in rows if _is_main(r)]
        if main:
            lines += ["### Methods", "", *_table(main, ge2e), ""]
        match = [e for e in summary["steps_to_match"] if e["group"] == group]
        if match:
            lines += ["### Steps fine-tuning needs to match the meta-learned start", "",
                      *_match_table(match), ""]
        if reference:
            lines += ["### Reference rows", "", *_reference_table(reference, ge2e), ""]
        study = [r for r in rows if _is_study(r)]
        if any(":" in r["method"] for r in study):
            lines += ["### Inner optimizer", "",
                      "Plain SGD from the pretrained model: full-batch, stochastic (one clip per "
                      "step) and mini-batch steps, and a learning-rate sweep (`finetune-sgd` is "
                      "full-batch at its default learning rate; with k = 1 the batchings "
                      "coincide).", "", *_table(study, ge2e), ""]
    if summary.get("problems"):
        lines += ["## Left out", "", *(f"- {p}" for p in summary["problems"]), ""]
    lines += [*(f"![{alt}]({(links or {}).get(name, name)})" for name, alt in PLOTS.items()), "",
              DEFINITIONS.format(asr=config["asr_model"], resamples=config["bootstrap"],
                                 baseline=f"`{baseline}`",
                                 ge2e=config.get("second_speaker_model") or
                                 f"{NOT_AVAILABLE} in this run: {missing}")]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    flat = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()}
            for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(flat)


def _panels(rows: list[dict]):
    """A figure with one panel per (group, k): (fig, axes, [(group, k, i, j)])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    shots = sorted({r["shots"] for r in rows})
    fig, axes = plt.subplots(len(groups), len(shots), squeeze=False,
                             figsize=(4.5 * len(shots), 3.5 * len(groups)))
    return plt, fig, axes, [(g, k, i, j) for i, g in enumerate(groups)
                            for j, k in enumerate(shots)]


def plot(path: Path, rows: list[dict], metrics_: tuple[str, ...], title: str) -> None:
    """``metric`` against steps, one panel per (group, k), one line per method and metric with
    its interval as a band."""
    plt, fig, axes, panels = _panels(rows)
    for group, k, i, j in panels:
        ax = axes[i][j]
        for name in metrics_:
            for method in dict.fromkeys(r["method"] for r in rows):
                rs = sorted((r for r in rows if (r["method"], r["shots"], r["group"]) ==
                             (method, k, group) and r[name] is not None),
                            key=lambda r: r["steps"])
                if not rs:
                    continue
                x = [r["steps"] for r in rs]
                label = method if len(metrics_) == 1 else f"{method} {name}"
                ax.plot(x, [r[name] for r in rs], marker="o", label=label)
                ax.fill_between(x, [r[f"{name}_ci"][0] for r in rs],
                                [r[f"{name}_ci"][1] for r in rs], alpha=0.2)
        ax.set(xlabel="adaptation steps", ylabel=", ".join(metrics_),
               title=f"{title}, {group}, k={k}")
        if max((r["steps"] for r in rows), default=0) > 20:
            ax.set_xscale("symlog", linthresh=5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tradeoff(path: Path, rows: list[dict], name: str = "secs") -> None:
    """Similarity against WER, one panel per (group, k), one line per method through its step
    counts (each point labelled with its steps)."""
    plt, fig, axes, panels = _panels(rows)
    for group, k, i, j in panels:
        ax = axes[i][j]
        for method in dict.fromkeys(r["method"] for r in rows):
            rs = sorted((r for r in rows if (r["method"], r["shots"], r["group"]) ==
                         (method, k, group) and r[name] is not None and r["wer"] is not None),
                        key=lambda r: r["steps"])
            if not rs:
                continue
            ax.plot([r["wer"] for r in rs], [r[name] for r in rs], marker="o", label=method)
            for r in rs:
                ax.annotate(str(r["steps"]), (r["wer"], r[name]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set(xlabel="WER (mean per utterance)", ylabel=f"similarity ({SIMILARITY[name]})",
               title=f"{group}, k={k} (labels: steps)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PLOTS = {"secs_vs_steps.png": "speaker similarity", "wer_vs_steps.png": "WER",
         "secs_vs_wer.png": "similarity against WER"}


def write_report(out: Path, summary: dict, run_dir: Path | None = None) -> None:
    """summary.json, summary.csv, references.csv, report.md and the PNG plots into ``out``.

    With ``run_dir`` (the run's folder, when ``out`` is another report of it inside that folder,
    e.g. against another baseline), a plot equal byte for byte to the one of that name in
    ``run_dir`` is not written again: report.md links to the run folder's. The plots show each method's rows, which no
    baseline changes, so a report that covers the run's methods shares them."""
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=1))
    write_csv(out / "summary.csv", summary["rows"])
    write_csv(out / "references.csv", [{"group": g, "kind": k, **v}
                                       for g, kinds in summary["reference"].items()
                                       for k, v in kinds.items()])
    write_csv(out / "steps_to_match.csv", summary["steps_to_match"])
    main = [r for r in summary["rows"] if _is_main(r)]
    study = [r for r in summary["rows"] if _is_study(r)]
    links = {}
    if main:
        similarity = ("secs", "secs_ge2e") if any(r["secs_ge2e"] is not None for r in main) \
            else ("secs",)
        plot(out / "secs_vs_steps.png", main, similarity, "similarity")
        plot(out / "wer_vs_steps.png", main, ("wer",), "WER")
        plot_tradeoff(out / "secs_vs_wer.png", main)
        links = {name: _shared_plot(out, name, run_dir) for name in PLOTS}
    (out / "report.md").write_text(markdown(summary, links), encoding="utf-8")
    if any(":" in r["method"] for r in study):
        write_csv(out / "optimizer.csv", study)
        plot(out / "optimizer.png", study, ("wer", "secs"), "inner optimizer")


def _shared_plot(out: Path, name: str, run_dir: Path | None) -> str:
    """Where report.md finds the plot ``name`` just written into ``out``: the run folder's copy
    (a relative link; ``out``'s own is removed) when it is the same file and ``out`` lies inside
    the run folder, else ``out``'s own."""
    mine, theirs = out / name, (run_dir / name) if run_dir is not None else None
    if theirs is None or theirs.resolve() == mine.resolve() or not theirs.is_file() \
            or not out.resolve().is_relative_to(run_dir.resolve()) \
            or theirs.read_bytes() != mine.read_bytes():
        return name  # a report outside the run folder keeps its own copy (it may travel alone)
    mine.unlink()
    return Path(os.path.relpath(theirs, out)).as_posix()


def _finite(value):
    """NaN and infinities as null, so that summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value

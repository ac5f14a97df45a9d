"""Tables and plots from the per-clip records: summary.json, CSV files, report.md, PNG plots."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from eval import metrics, stats
from eval.naturalness import NAME as MOS_NAME

METRICS = ("wer", "secs", "mos", "adapt_seconds")  # per clip, each with a mean and an interval
DEFINITIONS = f"""\
## Metric definitions

- **wer**: mean of per-utterance word error rates; **wer_pooled**: all errors over all reference
  words (corpus WER). Transcripts by Whisper ({{asr}}); both texts pass the
  {metrics.NORMALIZER}; errors counted by jiwer.
- **secs**: speaker similarity, the mean cosine of ECAPA (spkrec-ecapa-voxceleb) embeddings of a
  synthesized clip to the speaker's held-out real test clips (never the support clips).
- **mos**: {MOS_NAME}; a predictor trained on real speech, comparable between rows only.
- **adapt_seconds**: wall time of one adaptation (features + steps), on this machine.
- Intervals: 95 % percentile bootstrap ({{resamples}} resamples) over clusters of one speaker and
  one support draw (task); reference rows over speakers.
- **p_vs_finetune**: two-sided Wilcoxon signed-rank test (scipy, zero differences dropped) of the
  method against {{baseline}} at the same k and steps, on clips matched by (speaker, task,
  text); `pairs` is the number of matched clips.
- Reference rows: **real** = the real test recordings (WER of the ground truth; secs = ceiling,
  cosine between *different* real clips of the same speaker; secs_floor = cosine to other
  speakers' real clips); **vocoded** = the real clips resynthesized from their mels by the
  HiFi-GAN vocoder.
"""


def _interval(records: list[dict], name: str, cluster: Callable[[dict], object], seed: int,
              resamples: int) -> tuple[float | None, list[float] | None]:
    kept = [r for r in records if r.get(name) is not None]
    if not kept:
        return None, None
    iv = stats.cluster_bootstrap([r[name] for r in kept], [cluster(r) for r in kept],
                                 resamples, seed)
    return iv.mean, [iv.low, iv.high]


def _pooled(records: list[dict]) -> float | None:
    words = sum(r["words"] for r in records)
    return sum(r["errors"] for r in records) / words if words else None


def summary_rows(records: list[dict], baseline: str, *, seed: int = 0,
                 resamples: int = stats.BOOTSTRAP) -> list[dict]:
    """One row per (method, shots, steps)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["shots"], r["steps"]), []).append(r)
    rows = []
    for (method, shots, steps), rs in sorted(groups.items()):
        row = {"method": method, "shots": shots, "steps": steps, "n": len(rs),
               "speakers": len({r["speaker"] for r in rs}),
               "tasks": len({(r["speaker"], r["seed"]) for r in rs})}
        for name in METRICS:
            row[name], row[f"{name}_ci"] = _interval(rs, name, lambda r: (r["speaker"], r["seed"]),
                                                     seed, resamples)
        row["wer_pooled"] = _pooled(rs)
        base = groups.get((baseline, shots, steps))
        row["p_vs_finetune"] = None if base is None or method == baseline else \
            _paired(rs, base)
        rows.append(row)
    return rows


def _paired(records: list[dict], baseline: list[dict]) -> dict:
    def by_key(rs, name):
        return {(r["speaker"], r["seed"], r["text"]): r[name] for r in rs
                if r.get(name) is not None}

    out = {}
    for name in ("wer", "secs", "mos"):
        test = stats.paired_test(by_key(records, name), by_key(baseline, name))
        out[name], out["pairs"] = test.p, test.pairs
    return out


def reference_summary(records: list[dict], *, seed: int = 0,
                      resamples: int = stats.BOOTSTRAP) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in records}):
        rs = [r for r in records if r["kind"] == kind]
        row = {"n": len(rs), "speakers": len({r["speaker"] for r in rs})}
        for name in ("wer", "secs", "secs_floor", "mos"):
            row[name], row[f"{name}_ci"] = _interval(rs, name, lambda r: r["speaker"], seed,
                                                     resamples)
        row["wer_pooled"] = _pooled(rs)
        out[kind] = row
    return out


def _fmt(value, ci=None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def _p(row: dict) -> str:
    p = row.get("p_vs_finetune")
    if not p:
        return "-"
    return ", ".join(f"{k} {'-' if p[k] is None else f'{p[k]:.3g}'}"
                     for k in ("wer", "secs", "mos")) + f" (n={p['pairs']})"


def _table(rows: list[dict]) -> list[str]:
    header = ("| method | k | steps | n | wer [95% CI] | wer_pooled | secs [95% CI] | "
              "mos [95% CI] | adapt s | p vs fine-tuning |")
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['method']} | {r['shots']} | {r['steps']} | {r['n']} | "
                     f"{_fmt(r['wer'], r['wer_ci'])} | {_fmt(r['wer_pooled'])} | "
                     f"{_fmt(r['secs'], r['secs_ci'])} | {_fmt(r['mos'], r['mos_ci'])} | "
                     f"{_fmt(r['adapt_seconds'])} | {_p(r)} |")
    return lines


def markdown(summary: dict) -> str:
    config = summary["config"]
    main = [r for r in summary["rows"] if ":" not in r["method"]]
    study = [r for r in summary["rows"] if ":" in r["method"] or r["method"] == "finetune-sgd"]
    intro = (f"Data: `{config['data']}`; methods: {', '.join(config['methods'])}; seed "
             f"{config['seed']}; {config['test_sentences']} test sentences per speaker, "
             f"{config['tasks']} support draw(s) per speaker and k.")
    header = ("| kind | n | wer [95% CI] | wer_pooled | secs [95% CI] | secs_floor [95% CI] | "
              "mos [95% CI] |")
    lines = ["# Few-shot adaptation benchmark", "", intro, "", "## Methods", "", *_table(main),
             "", "## Reference rows", "", header, "|" + "---|" * 7]
    for kind, r in summary["reference"].items():
        lines.append(f"| {kind} | {r['n']} | {_fmt(r['wer'], r['wer_ci'])} | "
                     f"{_fmt(r['wer_pooled'])} | {_fmt(r['secs'], r['secs_ci'])} | "
                     f"{_fmt(r['secs_floor'], r['secs_floor_ci'])} | "
                     f"{_fmt(r['mos'], r['mos_ci'])} |")
    if any(":" in r["method"] for r in study):
        about = ("Plain SGD from the pretrained model: full-batch, stochastic (one clip per "
                 "step) and mini-batch steps, and a learning-rate sweep (`finetune-sgd` is "
                 "full-batch at its default learning rate; with k = 1 the batchings coincide).")
        lines += ["", "## Inner optimizer", "", about, "", *_table(study), "",
                  "![inner optimizer](optimizer.png)"]
    if summary.get("problems"):
        lines += ["", "## Left out", "", *(f"- {p}" for p in summary["problems"])]
    lines += ["", "![speaker similarity](secs_vs_steps.png)", "![WER](wer_vs_steps.png)", "",
              DEFINITIONS.format(asr=config["asr_model"], resamples=config["bootstrap"],
                                 baseline=f"`{config['baseline']}`")]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    flat = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()}
            for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(flat)


def plot(path: Path, rows: list[dict], metrics_: tuple[str, ...], title: str) -> None:
    """``metric`` against steps, one panel per (metric, k), one line per method with its
    interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = sorted({r["shots"] for r in rows})
    fig, axes = plt.subplots(len(metrics_), len(shots), squeeze=False,
                             figsize=(4.5 * len(shots), 3.5 * len(metrics_)))
    for i, name in enumerate(metrics_):
        for j, k in enumerate(shots):
            ax = axes[i][j]
            for method in dict.fromkeys(r["method"] for r in rows):
                rs = sorted((r for r in rows if r["method"] == method and r["shots"] == k
                             and r[name] is not None), key=lambda r: r["steps"])
                if not rs:
                    continue
                x = [r["steps"] for r in rs]
                ax.plot(x, [r[name] for r in rs], marker="o", label=method)
                ax.fill_between(x, [r[f"{name}_ci"][0] for r in rs],
                                [r[f"{name}_ci"][1] for r in rs], alpha=0.2)
            ax.set(xlabel="adaptation steps", ylabel=name, title=f"{title}, k={k}")
            if max((r["steps"] for r in rows), default=0) > 20:
                ax.set_xscale("symlog", linthresh=5)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, summary: dict) -> None:
    """summary.json, summary.csv, references.csv, report.md and the PNG plots into ``out``."""
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=1))
    write_csv(out / "summary.csv", summary["rows"])
    write_csv(out / "references.csv", [{"kind": k, **v} for k, v in summary["reference"].items()])
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    main = [r for r in summary["rows"] if ":" not in r["method"]]
    study = [r for r in summary["rows"] if ":" in r["method"] or r["method"] == "finetune-sgd"]
    if main:
        plot(out / "secs_vs_steps.png", main, ("secs",), "speaker similarity")
        plot(out / "wer_vs_steps.png", main, ("wer",), "WER")
    if any(":" in r["method"] for r in study):
        write_csv(out / "optimizer.csv", study)
        plot(out / "optimizer.png", study, ("wer", "secs"), "inner optimizer")


def _finite(value):
    """NaN and infinities as null, so that summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value

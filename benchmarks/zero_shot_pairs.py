"""Pair two zero-shot reads of ``benchmarks/acoustic.py`` clip by clip (same voice, same sentence).

    python benchmarks/zero_shot_pairs.py A.json:KIND B.json:KIND [A.json:KIND B.json:KIND ...] \\
        [--out compare.json]

KIND is a row of the read ("encoder", "encoder_references", "mean", "mean_references",
"nearest_known"). For each pair and voice group (natural, real): the clips both reads spoke,
their mean ECAPA to the voice's centroid of real clips, the mean difference (B - A), the share of
clips where B is higher, the Wilcoxon signed-rank p (more than 5 pairs only) and both DNSMOS
means. Nothing is judged again: the reads keep every clip's figures (acoustic.py's "clips").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon


def clips(spec: str) -> tuple[str, dict]:
    path, _, kind = spec.rpartition(":")
    if not path or not kind:
        raise SystemExit(f"{spec!r}: give FILE.json:KIND, e.g. results/refattn/"
                         "acoustic_shipped.json:encoder")
    read = json.loads(Path(path).read_text())["zero_shot"]
    if "clips" not in read:
        raise SystemExit(f"{path} holds no per-clip figures (written before 2026-12-06); run "
                         "benchmarks/acoustic.py again.")
    chosen = {(c["group"], c["speaker"], c["text"]): c for c in read["clips"] if c["kind"] == kind}
    if not chosen:
        kinds = sorted({c["kind"] for c in read["clips"]})
        raise SystemExit(f"{path} has no {kind!r} clips; it has {kinds}.")
    return f"{Path(path).stem}:{kind}", chosen


def pair(a: dict, b: dict) -> dict:
    out = {}
    for group in ("natural", "real"):
        keys = sorted(k for k in set(a) & set(b) if k[0] == group)
        if not keys:
            continue
        x = np.array([a[k]["secs"] for k in keys])
        y = np.array([b[k]["secs"] for k in keys])
        out[group] = {
            "clips": len(keys), "a": round(float(x.mean()), 4), "b": round(float(y.mean()), 4),
            "diff": round(float((y - x).mean()), 4),
            "b_higher_share": round(float((y > x).mean()), 3),
            "p": float(wilcoxon(y, x).pvalue) if len(keys) > 5 and np.any(y != x) else None,
            "dnsmos_a": round(float(np.mean([a[k]["dnsmos"] for k in keys])), 3),
            "dnsmos_b": round(float(np.mean([b[k]["dnsmos"] for k in keys])), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reads", nargs="+", help="pairs of FILE.json:KIND")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if len(args.reads) % 2:
        p.error("give the reads in pairs: A.json:KIND B.json:KIND ...")
    result = {}
    for first, second in zip(args.reads[::2], args.reads[1::2]):
        (name_a, a), (name_b, b) = clips(first), clips(second)
        result[f"{name_a} -> {name_b}"] = pair(a, b)
        for group, row in result[f"{name_a} -> {name_b}"].items():
            p_text = "n/a" if row["p"] is None else f"{row['p']:.2g}"
            print(f"{group:8s} {name_a} {row['a']:.3f} -> {name_b} {row['b']:.3f} "
                  f"({row['diff']:+.3f}, p = {p_text}, {row['clips']} clips; DNSMOS "
                  f"{row['dnsmos_a']:.2f} -> {row['dnsmos_b']:.2f})")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

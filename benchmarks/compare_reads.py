"""Two judge-free validation-voice reads (``benchmarks/inner_rate_voice.py --out``), clip by clip.

Reads of two checkpoints cannot share one run of ``inner_rate_voice.py``; with the same voices,
draws, sentences and seeds they speak the same clips' words, so their rows pair by (voice, draw,
step count, sentence). For each step count both hold, the mean of each instrument in A and B
and B - A with the benchmark's 95 % bootstrap interval (``eval.stats.cluster_bootstrap``, one
cluster per pair, 2,000 resamples, seed 0 for each instrument and count):

    python benchmarks/compare_reads.py results/meta_verifier/read_shipped.json \\
        results/meta_verifier/read_query_verifier_100.json [--rate-a 0.0005] [--rate-b 0.0005]

``own`` (the model's own speaker encoder) compares only checkpoints that share an encoder. A
``benchmarks/frames_keys.py`` read pairs the same way, its keys given as ``--rate-a``/``--rate-b``
(the same file twice compares two keys of one read).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval.stats import cluster_bootstrap  # noqa: E402

INSTRUMENTS = {"own": "own encoder", "ver": "verifier", "nat": "Distill-MOS"}


def variant(row: dict) -> str:
    """A clip's variant: its ``rate`` (inner_rate_voice.py) or ``key`` (frames_keys.py)."""
    return row["rate"] if "rate" in row else row["key"]


def rows(path: str, rate: str) -> dict[tuple, dict]:
    read = json.loads(Path(path).read_text())
    clips = [r for r in read["clips"] if variant(r) == rate]
    if not clips:
        raise SystemExit(f"{path}: no clips of variant {rate!r} (it has "
                         f"{sorted({variant(r) for r in read['clips']})}); give --rate-a/--rate-b.")
    # a frames_keys.py read is of the zero-shot voice: 0 steps
    return {(r["speaker"], r["draw"], r.get("steps", 0), r["text"]): r for r in clips}


def compare(a: dict[tuple, dict], b: dict[tuple, dict], seed: int = 0) -> list[dict]:
    out = []
    for steps in sorted({k[2] for k in a} & {k[2] for k in b}):
        keys = sorted(k for k in a if k[2] == steps and k in b)
        row = {"steps": steps, "clips": len(keys)}
        for name in INSTRUMENTS:
            if not all(name in a[k] and name in b[k] for k in keys):
                continue
            x = np.array([a[k][name] for k in keys])
            d = np.array([b[k][name] for k in keys]) - x
            # the benchmark's bootstrap (eval.stats), one cluster per pair
            diff = cluster_bootstrap(d, range(len(d)), seed=seed)
            row[name] = {"a": float(x.mean()), "b": float(x.mean() + diff.mean),
                         "diff": diff.mean, "ci": [diff.low, diff.high]}
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rate-a", default="0.0005",
                   help="which of A's variants (its 'rate', or a frames_keys.py read's 'key')")
    p.add_argument("--rate-b", default="0.0005")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    table = compare(rows(args.a, args.rate_a), rows(args.b, args.rate_b))
    names = [n for n in INSTRUMENTS if any(n in r for r in table)]
    print("| steps | clips | " + " | ".join(f"{INSTRUMENTS[n]}: A -> B (B - A, 95 %)"
                                          for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in table:
        cells = [f"{r[n]['a']:.3f} -> {r[n]['b']:.3f} ({r[n]['diff']:+.3f}, "
                 f"{r[n]['ci'][0]:+.3f} to {r[n]['ci'][1]:+.3f})" if n in r else "" for n in names]
        print(f"| {r['steps']} | {r['clips']} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": args.a, "b": args.b, "rows": table},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Would more Kokoro packs bring the held-out voices inside what training spans?

Kokoro's npm tarball holds 54 voice packs: the 28 English ones the corpus uses and 26 of other
languages (Spanish, French, Hindi, Italian, Japanese, Portuguese, Chinese) that can speak English
phonemes with an accent. Before rendering any of them this reads, in Kokoro's own style space
(row ``--row`` of each pack, a 256-vector: the first 128 condition Kokoro's decoder, the timbre; the
last 128 its prosody predictor), how far each test and validation pack lies from what the training
packs span: the relative residual ||x - A c|| / ||x|| of the closest convex combination (blends,
what the corpus makes) and of the closest linear one (blends and extrapolations), with the
training packs alone and with the foreign packs added. No audio, no judge: seconds on one core.

    python benchmarks/pack_span.py [--row 60] [--out results/pack_span.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.corpus import kokoro_packs  # noqa: E402
from metatts.corpus.voices import NATURAL_TEST, NATURAL_TRAIN, NATURAL_VAL  # noqa: E402

HALVES = {"all": slice(0, 256), "timbre": slice(0, 128), "prosody": slice(128, 256)}


def residual(x: np.ndarray, basis: np.ndarray, convex: bool) -> float:
    """Relative distance from ``x`` to the convex hull (``convex``) or the linear span of the
    columns of ``basis``."""
    from scipy.optimize import nnls

    if convex:  # non-negative weights; a heavily weighted row of ones makes them sum to 1
        weight = 100.0 * float(np.abs(x).max())
        a = np.vstack([basis, np.full((1, basis.shape[1]), weight)])
        coef, _ = nnls(a.astype(np.float64), np.append(x, weight).astype(np.float64))
    else:
        coef = np.linalg.lstsq(basis, x, rcond=None)[0]
    return float(np.linalg.norm(basis @ coef - x) / np.linalg.norm(x))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--row", type=int, default=60, help="pack row (utterance length in tokens)")
    p.add_argument("--out", type=Path, default=Path("results/pack_span.json"))
    args = p.parse_args(argv)
    if kokoro_packs.missing():
        raise SystemExit(kokoro_packs.missing())
    packs = {k: v[args.row].astype(np.float64)
             for k, v in kokoro_packs.all_packs(kokoro_packs.tarball_path()).items()}
    foreign = sorted(n for n in packs if n not in kokoro_packs.ENGLISH)
    bases = {"train": list(NATURAL_TRAIN), "train+foreign": list(NATURAL_TRAIN) + foreign}
    rows = []
    for role, names in (("test", NATURAL_TEST), ("val", NATURAL_VAL)):
        for name in names:
            row = {"pack": name, "role": role}
            for half, sl in HALVES.items():
                x = packs[name][sl]
                for base, members in bases.items():
                    basis = np.stack([packs[m][sl] for m in members], 1)
                    for kind in ("convex", "linear"):
                        row[f"{half}/{base}/{kind}"] = round(residual(x, basis, kind == "convex"), 3)
            rows.append(row)
    columns = [f"{h}/{b}/{k}" for h in HALVES for b in bases for k in ("convex", "linear")]
    mean = {c: round(float(np.mean([r[c] for r in rows if r["role"] == "test"])), 3) for c in columns}
    print(f"relative residual to the training packs' span (row {args.row}); {len(foreign)} foreign "
          f"packs: {', '.join(foreign)}")
    print("pack | role | " + " | ".join(columns))
    for r in rows:
        print(f"{r['pack']} | {r['role']} | " + " | ".join(f"{r[c]:.3f}" for c in columns))
    print("test mean | | " + " | ".join(f"{mean[c]:.3f}" for c in columns))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"row": args.row, "foreign": foreign, "rows": rows,
                                    "test_mean": mean}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

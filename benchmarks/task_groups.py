"""How hard adaptation tasks are by kind of voice: mean query loss after 0..N inner steps for
episodes drawn from each kind of speaker (training packs, blends with and without a shift, engine
voices, the validation packs), from one checkpoint, with the meta config's inner loop.

Meta-training draws its tasks from training speakers; a test voice is a pack nobody trained on.
If tasks of one kind are much easier than the validation voices, meta-training on them optimises
for the wrong tasks. No judge model is involved (teacher-forced query loss, as meta-training's
validation computes it).

    python benchmarks/task_groups.py --checkpoint checkpoints/pretrained \
        --config configs/meta_v2_decoder.json --episodes 8 --out results/task_groups.json
With ``--reserved-only``, training groups keep only the speakers the checkpoint's pretraining
left out for meta-training (``data.meta_speakers``): voices it never heard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.data.episodes import EpisodeSampler  # noqa: E402
from metatts.data.splits import split_speakers  # noqa: E402
from metatts.train.data import read_utterances  # noqa: E402
from metatts.train.meta import (episode_task, reserved_speakers, usable, validate,  # noqa: E402
                                with_checkpoint)


def speaker_kinds(manifest: Path) -> dict[str, str]:
    """speaker -> pack | blend | blend_shifted | pack_shifted_beyond | engine, from the corpus
    manifest's recipe."""
    kinds: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if row["speaker"] in kinds:
            continue
        if row.get("group") != "natural":
            kinds[row["speaker"]] = "engine"
        elif row["speaker"].startswith("shifted_"):  # scripts/shifted_task_voices.py
            kinds[row["speaker"]] = "pack_shifted_beyond"
        elif row["speaker"].startswith("kokoro_en_"):
            kinds[row["speaker"]] = "pack"
        else:
            shifted = row.get("formant", 1.0) != 1.0 or row.get("pitch", 1.0) != 1.0
            kinds[row["speaker"]] = "blend_shifted" if shifted else "blend"
    return kinds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/pretrained")
    p.add_argument("--config", default="configs/meta_v2_decoder.json")
    p.add_argument("--steps", default="0,10")
    p.add_argument("--episodes", type=int, default=8, help="episodes per group")
    p.add_argument("--reserved-only", action="store_true")
    p.add_argument("--groups", nargs="+", metavar="GROUP",
                   help="only these rows (e.g. train_pack_shifted_beyond val_pack)")
    p.add_argument("--out", default="runs/bench/task_groups.json")
    args = p.parse_args(argv)

    base, config, cache = with_checkpoint(args.checkpoint, args.config)
    d = config.data
    splits = split_speakers(read_utterances(d), d.val_speakers, d.test_speakers, d.split_seed)
    kinds: dict[str, str] = {}
    for source in d.datasets:
        kinds.update(speaker_kinds(Path(source) / "manifest.jsonl"))
    reserved = reserved_speakers(base.config.data) if args.reserved_only else None
    if args.reserved_only and not reserved:
        raise SystemExit(f"{args.checkpoint} reserved no speakers (data.meta_speakers is 0)")

    groups: dict[str, list] = {}
    for u in splits.train:
        if reserved is None or u.speaker in reserved:
            groups.setdefault(f"train_{kinds.get(u.speaker, 'engine')}", []).append(u)
    for u in splits.val:
        groups.setdefault(f"val_{kinds.get(u.speaker, 'engine')}", []).append(u)

    counts = [int(s) for s in args.steps.split(",")]
    meta = dataclasses.replace(config.meta, val_steps=tuple(counts))
    rows = []
    for name, utts in sorted(groups.items()):
        if args.groups and name not in args.groups:
            continue
        sampler = EpisodeSampler(usable(utts, cache), meta.k, meta.q, config.train.seed,
                                 skip_small_speakers=True)
        episodes = [sampler.sample(i) for i in range(args.episodes)]
        tasks = [episode_task(e, cache) for e in episodes]
        started = time.perf_counter()
        losses = validate(base.model, tasks, meta, torch.device("cpu"))
        row = {"group": name, "speakers": len(sampler.speakers), "tasks": len(tasks),
               "task_speakers": sorted({e.speaker for e in episodes}),
               "seconds": round(time.perf_counter() - started, 1), **losses}
        rows.append(row)
        print(f"{name:20s} speakers={row['speakers']:3d} "
              + " ".join(f"q@{c}={row[f'query_after_{c}']:.3f}" for c in counts)
              + f"  ({row['seconds']} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": base.step,
                               "config": args.config, "reserved_only": args.reserved_only,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

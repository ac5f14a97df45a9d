"""Seconds per pretraining step (forward, backward, AdamW) of a model config on corpus clips.

Batches are drawn as the trainer draws them (metatts.train.data.StepBatches): a window of 8
batches of random training clips is sorted by length and cut into batches, so padding is what
training pays. ``--attention written`` times the written-out attention that the meta-learning
inner loop uses instead of PyTorch's fused kernel, for a paired comparison on the same batches.

    python benchmarks/train_step.py --config configs/base_v2_warm.json --data data/corpus
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.cli.train import parse_set  # noqa: E402
from metatts.data import FeatureSettings, read_dataset  # noqa: E402
from metatts.data.batch import Example  # noqa: E402
from metatts.data.features import compute_features  # noqa: E402
from metatts.model import layers  # noqa: E402
from metatts.model.config import load_config, replace  # noqa: E402
from metatts.model.fastspeech2 import FastSpeech2, count_parameters  # noqa: E402
from metatts.text import SYMBOLS  # noqa: E402
from metatts.train.data import collate_train  # noqa: E402


def batches(config, data: str, batch_size: int, count: int, seed: int) -> list:
    """``count`` batches (a multiple of 8) as the trainer's sampler makes them."""
    m = config.model
    clips = [u for u in read_dataset(data).utterances
             if u.split in (None, "train") and u.duration <= config.data.max_seconds]
    rng = random.Random(seed)
    chosen = rng.sample(clips, batch_size * count)
    settings = FeatureSettings(tokens=config.data.tokens, pitch=m.pitch)
    feats = [compute_features(u, settings) for u in chosen]
    out = []
    for w in range(0, len(feats), 8 * batch_size):
        window = sorted(feats[w: w + 8 * batch_size], key=lambda f: f.mel.shape[-1])
        for b in range(0, len(window), batch_size):
            items = []
            for j, f in enumerate(window[b: b + batch_size]):
                ref = feats[(w + b + j + 1) % len(feats)].mel[:, : m.speaker_encoder_crop or None]
                items.append((Example("x", j, f.tokens, f.mel), f.f0 if m.pitch else None,
                              ref if m.speaker_encoder else None))
            out.append(collate_train(items))
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/base_v2_warm.json")
    p.add_argument("--data", default="data/corpus")
    p.add_argument("--speakers", type=int, default=360, help="rows of the speaker table")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=8, help="timed steps (a multiple of 8)")
    p.add_argument("--attention", choices=("fused", "written", "both"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config setting, e.g. --set model.hidden=192")
    args = p.parse_args(argv)
    config = load_config(args.config, parse_set(args.set))
    config = replace(config, model={"n_symbols": len(SYMBOLS), "n_speakers": args.speakers})
    data = batches(config, args.data, args.batch_size, args.batches, args.seed)
    modes = ("fused", "written") if args.attention == "both" else (args.attention,)
    times: dict[str, list[float]] = {m: [] for m in modes}
    fused = layers.fused_attention
    for mode in modes:
        layers.fused_attention = fused if mode == "fused" else (lambda q: False)
        torch.manual_seed(0)
        model = FastSpeech2(config.model, config.loss).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for i, batch in enumerate([data[0], *data]):  # the first step warms up
            started = time.perf_counter()
            out = model(batch, 1.0)
            optimizer.zero_grad()
            out.total.backward()
            optimizer.step()
            if i:
                times[mode].append(time.perf_counter() - started)
    layers.fused_attention = fused
    frames = [int(b.mel_lengths.max()) for b in data]
    result = {"config": args.config, "overrides": args.set, "parameters": count_parameters(model),
              "batch_size": args.batch_size, "steps": len(data),
              "threads": torch.get_num_threads(),
              "mean_clip_s": round(sum(int(b.mel_lengths.sum()) for b in data) * 256 / 22050
                                   / (len(data) * args.batch_size), 2),
              "padded_frames_median": statistics.median(frames),
              "seconds_per_step": {m: round(statistics.mean(t), 3) for m, t in times.items()}}
    if len(modes) == 2:
        result["written_over_fused"] = round(statistics.mean(
            w / f for w, f in zip(times["written"], times["fused"])), 3)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

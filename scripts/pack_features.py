"""Pack a sample of a run's cached features into one small file, for training on a machine that
has no corpus (the lent GPU machine takes 64 MiB of files in all).

    python scripts/pack_features.py --config configs/meta_v2_gpu.json \
        --per-speaker 9 --max-frames 450 --out .pack/features.pack.xz

Which clips: for every speaker of the run's training and validation splits (the same
:func:`metatts.data.split_speakers` call as meta-training; test voices are never packed),
``--per-speaker`` clips with distinct texts, drawn with a fixed seed among those of at most
``--max-frames`` frames (then the shortest of the rest, where too few are that short). What is
stored, per clip: the token ids, the frame F0 (float16) and the log-mel quantized to 8 bits
(step ``MEL_STEP`` above ``audio.LOG_CLAMP``: rounding error at most 0.028, against a mel loss
near 0.46), delta-coded along time; the whole is a safetensors file compressed with xz.
:class:`PackedFeatures` (scripts/device_meta_train.py) reads it back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import lzma
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.data import split_speakers  # noqa: E402
from metatts.data.episodes import text_key  # noqa: E402
from metatts.model.config import load_config  # noqa: E402
from metatts.train.data import feature_cache, read_utterances  # noqa: E402

MEL_FLOOR = math.log(1e-5)  # audio.LOG_CLAMP's value: the floor of every log-mel
MEL_STEP = 0.055  # 256 levels reach MEL_FLOOR + 14.0


def quantize(mel: torch.Tensor) -> np.ndarray:
    """(N_MELS, T) float log-mel -> (T, N_MELS) uint8 deltas along time."""
    q = np.clip(np.round((mel.numpy().T - MEL_FLOOR) / MEL_STEP), 0, 255).astype(np.uint8)
    deltas = np.diff(q, axis=0, prepend=np.zeros((1, q.shape[1]), np.uint8))  # wraps mod 256
    return np.ascontiguousarray(deltas)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--per-speaker", type=int, default=10)
    ap.add_argument("--max-frames", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parts", type=int, default=1,
                    help="write that many packs, each readable alone (clips dealt round-robin; "
                    "OUT gets -0, -1, ... before its suffix), for a device that takes one "
                    "part per call")
    args = ap.parse_args()
    config = load_config(args.config)
    d = config.data
    cache = feature_cache(d, Path(config.train.run_dir), pitch=True)
    splits = split_speakers(read_utterances(d), d.val_speakers, d.test_speakers, d.split_seed)
    chosen = []
    for split, utterances in (("train", splits.train), ("val", splits.val)):
        by_speaker = defaultdict(list)
        for u in utterances:
            by_speaker[u.speaker].append(u)
        for speaker, clips in sorted(by_speaker.items()):
            clips = sorted(clips, key=lambda u: u.id)
            random.Random(f"{args.seed}:{speaker}").shuffle(clips)
            frames = {u.id: cache.get(u).mel.shape[-1] for u in clips}
            # those under the cap in random order, then the shortest of the rest
            order = ([u for u in clips if frames[u.id] <= args.max_frames]
                     + sorted((u for u in clips if frames[u.id] > args.max_frames),
                              key=lambda u: frames[u.id]))
            texts, picked = set(), []
            for u in order:
                f = cache.get(u)
                if f.mel.shape[-1] < len(f.tokens) or text_key(u.text) in texts:
                    continue
                texts.add(text_key(u.text))
                picked.append((dataclasses.replace(u, split=split), f))  # as split here
                if len(picked) == args.per_speaker:
                    break
            chosen += picked
    outs = [args.out] if args.parts == 1 else [
        args.out.with_name(f"{args.out.name.split('.')[0]}-{i}{''.join(args.out.suffixes)}")
        for i in range(args.parts)]
    for i, out in enumerate(outs):
        write_pack(chosen[i::len(outs)], out)
    frames = sum(f.mel.shape[-1] for _, f in chosen)
    hours = frames * 256 / 22050 / 3600
    sizes = " + ".join(f"{out.stat().st_size / 2**20:.1f}" for out in outs)
    print(f"{len(chosen)} clips of {len({u.speaker for u, _ in chosen})} speakers, {frames} "
          f"frames ({hours:.2f} h): {sizes} MiB")


def write_pack(clips: list, path: Path) -> None:
    """(Utterance, Features) pairs -> one xz-compressed safetensors file at ``path``."""
    tensors, records = {}, []
    for i, (u, f) in enumerate(clips):
        records.append({"id": u.id, "speaker": u.speaker, "text": u.text, "audio": str(u.audio),
                        "duration": u.duration, "split": u.split, "group": u.group})
        tensors[f"{i}.mel"] = torch.from_numpy(quantize(f.mel))
        tensors[f"{i}.tokens"] = f.tokens.to(torch.int16)
        tensors[f"{i}.f0"] = f.f0.to(torch.float16)
    blob = save(tensors, metadata={"utterances": json.dumps(records),
                                   "mel_floor": repr(MEL_FLOOR), "mel_step": repr(MEL_STEP)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME))


if __name__ == "__main__":
    main()

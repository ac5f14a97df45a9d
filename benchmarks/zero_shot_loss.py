"""Which checkpoint speaks unseen voices better from their clips alone? A paired, judge-free test.

The training log's ``zero_shot`` split scores 8 clips of each validation voice from one set of 3
reference clips: too few to tell two runs apart (it moves by 0.02 between checkpoints of one
run). This scores *every* clip of every validation-split voice (never trained on, never a test
voice), each from ``--draws`` different sets of ``--references`` other clips of that voice, with
each checkpoint's speaker encoder (no gradient step), and compares the checkpoints clip by clip:
teacher-forced mel L1, pitch and duration loss, the same terms training minimizes. No judge model
(ECAPA, GE2E, Whisper, DNSMOS) is involved, so the result may decide what the corpus holds.

    python benchmarks/zero_shot_loss.py --data-config configs/base_v2_warm.json \\
        --checkpoints runs/base_v2_warm runs/base_v2_warm_natural

``--gains 1.0 1.5`` speaks each encoded vector v as m + g (v - m) (m: the mean training voice),
one row per checkpoint and gain. ``--starts`` adds other ways to turn v into the voice spoken,
one row each: ``nearest`` (the training speaker whose table row is closest to v in cosine: the
"closest known voice" the encoder must beat) and ``blend:T`` (the table rows weighted by a
softmax of their cosine to v at temperature T: v projected onto voices the decoder was trained
to speak), ``crops:N`` (v encoded from windows of N frames of the reference clips, pooled: the
encoder was trained on windows of ``model.speaker_encoder_crop`` frames, 256). "cycle" is how much of v the model's own encoder hears in what the model speaks
(cosine, higher is better).

Prints, per voice group (natural, engine) and checkpoint, the mean of each term over all scored
(clip, draw) pairs, and for each checkpoint after the first the paired mean difference to the
first with a 95 % interval (t over voices x clips, draws averaged per clip first) and the share
of clips it does better on. ``--out`` writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.data.batch import example  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.model.config import Config, from_dict  # noqa: E402
from metatts.model.fastspeech2 import NEW_SPEAKER  # noqa: E402
from metatts.model.losses import acoustic_loss  # noqa: E402
from metatts.train.data import collate_train, feature_cache, prepare  # noqa: E402
from metatts.train.zero_shot import outputs_as, with_references  # noqa: E402

TERMS = ("mel", "pitch", "duration", "energy", "cycle")


def start_vector(start: str, encoded: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The vector spoken for a voice encoded as ``encoded``: ``gain:G`` m + G (v - m) (m: the
    mean row of ``table``; ``gain:1`` is v itself), ``nearest`` the row closest to v in cosine,
    ``blend:T`` the rows weighted by softmax(cosine / T)."""
    kind, _, value = start.partition(":")
    if kind == "gain":
        mean = table.mean(0)
        return mean + float(value) * (encoded - mean)
    similarity = torch.nn.functional.cosine_similarity(table, encoded[None], dim=1)
    if kind == "nearest":
        return table[int(similarity.argmax())]
    if kind == "blend":
        return torch.softmax(similarity / float(value), dim=0) @ table
    raise ValueError(f"unknown start {start!r}: use gain:G, nearest or blend:T (crops:N is "
                     "handled where the clips are encoded).")


def windows(mels: list[torch.Tensor], frames: int) -> list[torch.Tensor]:
    """Each clip (n_mels, T) cut into consecutive windows of ``frames`` (the last one the clip's
    final ``frames``, overlapping its neighbour; a shorter clip whole)."""
    out = []
    for m in mels:
        T = m.shape[-1]
        starts = list(range(0, max(T - frames, 0) + 1, frames))
        if starts[-1] + frames < T:
            starts.append(T - frames)
        out += [m[:, s: s + frames] for s in starts]
    return out


def scores(checkpoint, voices, cache, references: int, draws: int, start: str = "gain:1"
           ) -> dict:
    """(speaker, clip id) -> term -> mean over draws, for one checkpoint, each voice spoken
    with :func:`start_vector` of its encoded vector v. "cycle": the cosine between the speaker
    encoder's vector of the clip the model speaks and v (no judge)."""
    model = checkpoint.model
    pitch = checkpoint.config.model.pitch
    table = model.speaker.table.weight.detach()
    out: dict[tuple[str, str], dict[str, float]] = {}
    with torch.no_grad():
        for speaker, clips in voices.items():
            batches = {u.id: collate_train([(example(u, cache, {speaker: NEW_SPEAKER}),
                                             cache.get(u).f0 if pitch else None, None)])
                       for u in clips}
            sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            counts: dict[str, int] = defaultdict(int)
            for d in range(draws):
                refs = [clips[(d * references + i) % len(clips)] for i in range(references)]
                mels = [cache.get(u).mel for u in refs]
                kind, _, value = start.partition(":")
                if kind == "crops":  # windows of at most N frames, as in training; v itself
                    mels = windows(mels, int(value))
                encoded = model.encode_speaker(mels)
                vector = start_vector("gain:1" if kind == "crops" else start, encoded, table)
                ref_ids = {u.id for u in refs}
                for u in clips:
                    if u.id in ref_ids:
                        continue
                    # a model with reference attention also reads the encoded clips' frames
                    batch = with_references(model, batches[u.id], mels)
                    spoken = outputs_as(model, vector, batch)
                    terms = acoustic_loss(spoken, batch, model.loss_config, 1.0).items()
                    for k in TERMS:
                        if k in terms:
                            sums[u.id][k] += float(terms[k])
                    heard = model.speaker_encoder(spoken.spoken, batch.mel_lengths)
                    sums[u.id]["cycle"] += float(torch.nn.functional.cosine_similarity(
                        heard, encoded[None], dim=1).mean())
                    counts[u.id] += 1
            for uid, n in counts.items():
                out[speaker, uid] = {k: v / n for k, v in sums[uid].items()}
    return out


def summary(per_ckpt: list[dict], names: list[str], group_of: dict[str, str]) -> dict:
    report: dict = {}
    keys = sorted(set.intersection(*(set(s) for s in per_ckpt)))
    for group in sorted(set(group_of.values())):
        rows = [k for k in keys if group_of[k[0]] == group]
        entry: dict = {"clips": len(rows), "voices": len({k[0] for k in rows})}
        for name, s in zip(names, per_ckpt):
            entry[name] = {t: round(float(np.mean([s[k][t] for k in rows])), 4)
                           for t in TERMS if t in s[rows[0]]}
        for name, s in zip(names[1:], per_ckpt[1:]):
            diffs = {}
            for t in TERMS:
                if t not in s[rows[0]] or t not in per_ckpt[0][rows[0]]:
                    continue
                d = np.array([s[k][t] - per_ckpt[0][k][t] for k in rows])
                half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
                diffs[t] = {"mean": round(float(d.mean()), 4),
                            "ci95": [round(float(d.mean() - half), 4),
                                     round(float(d.mean() + half), 4)],
                            # cycle: higher is better; the losses: lower
                            "better_share": round(float(((d > 0) if t == "cycle"
                                                         else (d < 0)).mean()), 3)}
            entry[f"{name} - {names[0]}"] = diffs
        report[group] = entry
    return report


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-config", default="configs/base_v2_warm.json",
                        help="whose data section (corpus, feature cache) gives the voices")
    parser.add_argument("--checkpoints", nargs="+", required=True,
                        help="checkpoint or run directories (a run's latest checkpoint)")
    parser.add_argument("--references", type=int, default=3, help="clips encoded per draw")
    parser.add_argument("--draws", type=int, default=3, help="reference sets per voice")
    parser.add_argument("--gains", type=float, nargs="+", default=[1.0],
                        help="speak each voice with mean + g (encoded - mean) for each g "
                             "(each checkpoint x gain is one row; the first row is the baseline)")
    parser.add_argument("--starts", nargs="+", default=[],
                        help="further rows per checkpoint: nearest (closest table row to the "
                             "encoded vector), blend:T (table rows softmax-weighted by cosine / T), "
                             "crops:N (the clips encoded as windows of N frames, pooled)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for start in args.starts:
        kind, _, value = start.partition(":")
        if not (start == "nearest" or (kind == "blend" and _positive(value))
                or (kind == "crops" and value.isdigit() and int(value) > 0)):
            parser.error(f"--starts {start}: use nearest, blend:T with a temperature T > 0 "
                         "or crops:N with N > 0 frames.")

    config = from_dict(Config, json.loads(Path(args.data_config).read_text()))
    cache = feature_cache(config.data, Path("."), pitch=True)
    data = prepare(config.data, cache)
    voices: dict[str, list] = defaultdict(list)
    for u in sorted(data.held_out, key=lambda u: u.id):
        voices[u.speaker].append(u)
    group_of = {s: (c[0].group or "") for s, c in voices.items()}
    print(f"{len(voices)} validation voices, {sum(map(len, voices.values()))} clips, "
          f"{args.draws} draws of {args.references} references", file=sys.stderr)
    per_ckpt, names = [], []
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        if ckpt.model.speaker_encoder is None:
            parser.error(f"{path}: this model has no speaker encoder (model.speaker_encoder).")
        starts = [(f" gain {g:g}" if len(args.gains) > 1 else "", f"gain:{g}")
                  for g in args.gains] + [(f" {s}", s) for s in args.starts]
        for label, start in starts:
            names.append(f"{path}@{ckpt.step}{label}")
            per_ckpt.append(scores(ckpt, voices, cache, args.references, args.draws, start))
    report = {"draws": args.draws, "references": args.references,
              "groups": summary(per_ckpt, names, group_of)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

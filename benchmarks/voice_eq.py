"""Does a voice equalizer bring a zero-shot voice closer to its clips? A diagnostic read.

The equalizer: a voice spoken from a vector the decoder never trained on comes out with a
spectral balance of its own. Each support clip is spoken teacher-forced (its own text, durations
and pitch, the voice's parameters, the checkpoint's post-filter); the mean real-minus-spoken
log-mel over the clips' speech frames, per mel band, is the voice's equalizer (80 numbers), added
to the speech frames of every mel synthesized for it. No gradient step, no judge.

Two reads of the same question, kept apart:

- ``--read loss`` (judge-free, the decision's measure): the validation voices of the data config
  (held out of training, never a test voice). Per voice and draw, ``--support`` clips give the
  encoder's vector and the equalizer; every other clip (up to ``--targets``) is spoken
  teacher-forced with that vector and the checkpoint's post-filter, and its mel L1 to the real
  clip is measured without and with each equalizer variant (``--variants``: smooth:strength).
- ``--read judged`` (a report; the judges select nothing): the benchmark's test-only voices
  (natural and real groups of metatts/eval_speakers). Per voice, ``--support`` seeded clips give
  the vector and the equalizer of ``--variant``; ``--sentences`` texts of its other clips are
  synthesized free-running without and with it; ECAPA to the centroid of its real clips not in
  the support (the synthesized sentence's own clip left out), Whisper WER and DNSMOS, paired.

    python benchmarks/voice_eq.py --read loss --out results/voice_eq/loss.json
    python benchmarks/voice_eq.py --read judged --variant 1:1 --out results/voice_eq/judged.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts import audio  # noqa: E402
from metatts.data.batch import Example, collate  # noqa: E402
from metatts.meta.support import fixed_alignment  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.model.config import PostFilterConfig  # noqa: E402
from metatts.model.fastspeech2 import NEW_SPEAKER  # noqa: E402
from metatts.postfilter import apply as apply_postfilter  # noqa: E402
from metatts.postfilter import local_mean  # noqa: E402
from metatts.train.zero_shot import outputs_with  # noqa: E402


def parse_variant(text: str) -> tuple[int, float]:
    smooth, _, strength = text.partition(":")
    return int(smooth), float(strength or 1.0)


# frames whose mean log-mel is within SPEECH_RANGE of the clip's loudest frame are speech (weight
# 1), those more than SPEECH_RANGE + 1 below it silence (0), linear in between (log units: 4 is
# 35 dB of magnitude)
SPEECH_RANGE = 4.0


def speech_weight(mel: torch.Tensor) -> torch.Tensor:
    """(n_mels, T) log-mel -> (T,) weight in [0, 1]: 1 on speech frames, 0 on silence."""
    loudness = mel.mean(0)
    return ((loudness - (loudness.max() - SPEECH_RANGE - 1.0))).clamp(0.0, 1.0)


@torch.no_grad()
def estimate(model, params: Mapping[str, torch.Tensor], support: Sequence[Example],
             postfilter: PostFilterConfig | None = None, smooth: int = 1) -> torch.Tensor:
    """The voice's equalizer (n_mels,): over the speech frames of the ``support`` examples
    (speaker NEW_SPEAKER, with F0 for pitch models, ideally aligned), the mean of real minus
    spoken log-mel, the spoken mel being the model's teacher-forced output with ``params``
    (e.g. ``{"speaker.new": vector}``) after ``postfilter``. ``smooth``: a moving average over
    that many bands (1: none)."""
    if not support:
        raise ValueError("the equalizer needs at least one clip of the voice.")
    was_training = model.training
    model.eval()
    try:
        batch = collate(list(support)).to(next(model.parameters()).device)
        out = outputs_with(model, params, batch)
    finally:
        model.train(was_training)
    total, weight = 0.0, 0.0
    for i, frames in enumerate(batch.mel_lengths.tolist()):
        real = batch.mels[i, :, :frames].float().cpu()
        spoken = out.spoken[i, :, :frames].float().cpu()
        if postfilter is not None and postfilter.active:
            spoken = apply_postfilter(spoken, postfilter)
        w = speech_weight(real)
        total = total + ((real - spoken) * w).sum(1)
        weight += float(w.sum())
    eq = total / max(weight, 1e-6)
    return local_mean(eq[:, None], smooth, 0)[:, 0] if smooth > 1 else eq


def equalize(mel: torch.Tensor, eq: torch.Tensor | None, strength: float = 1.0) -> torch.Tensor:
    """(n_mels, T) log-mel -> the same with ``strength * eq`` added to its speech frames."""
    if eq is None or strength == 0:
        return mel
    return mel + strength * eq.to(mel)[:, None] * speech_weight(mel)[None]


def loss_read(args, ckpt) -> dict:
    from metatts.model.config import Config, from_dict
    from metatts.train.data import feature_cache, prepare

    config = from_dict(Config, json.loads(Path(args.data_config).read_text()))
    cache = feature_cache(config.data, Path("."), pitch=True)
    data = prepare(config.data, cache)
    model = ckpt.model.eval()
    pf = ckpt.config.postfilter
    variants = [parse_variant(v) for v in args.variants]
    voices: dict[str, list] = defaultdict(list)
    for u in sorted(data.held_out, key=lambda u: u.id):
        voices[u.speaker].append(u)
    rows = []
    with torch.no_grad():
        for speaker, clips in sorted(voices.items()):
            if len(clips) <= args.support:
                continue
            items = [Example(u.id, NEW_SPEAKER, cache.get(u).tokens, cache.get(u).mel,
                             f0=cache.get(u).f0) for u in clips]
            items = fixed_alignment(model, items, ["speaker.new"])
            for d in range(args.draws):
                ids = [(d * args.support + i) % len(items) for i in range(args.support)]
                support = [items[i] for i in ids]
                targets = [x for i, x in enumerate(items) if i not in ids][: args.targets]
                batch = collate(targets)
                vector = model.encode_speaker([x.mel for x in support])
                params = {"speaker.new": vector}
                eqs = {v: estimate(model, params, support, pf, smooth=v[0]) for v in variants}
                spoken = outputs_with(model, params, batch).spoken
                for i, x in enumerate(targets):
                    frames = x.mel.shape[-1]
                    mel = apply_postfilter(spoken[i, :, :frames].float(), pf)
                    row = {"speaker": speaker, "group": clips[0].group or "", "draw": d,
                           "id": x.id, "none": float((mel - x.mel).abs().mean())}
                    for v, eq in eqs.items():
                        row[f"{v[0]}:{v[1]:g}"] = float((equalize(mel, eq, v[1])
                                                         - x.mel).abs().mean())
                    rows.append(row)
            print(f"{speaker}: {len(rows)} rows", file=sys.stderr, flush=True)
    summary: dict = {}
    for group in sorted({r["group"] for r in rows}):
        chosen = [r for r in rows if r["group"] == group]
        cell = {"clips": len(chosen), "none": float(np.mean([r["none"] for r in chosen]))}
        for v in variants:
            key = f"{v[0]}:{v[1]:g}"
            diffs = np.array([r[key] - r["none"] for r in chosen])
            cell[key] = {"mel_l1": float(np.mean([r[key] for r in chosen])),
                         "difference": float(diffs.mean()),
                         "better_share": float((diffs < 0).mean())}
        summary[group] = cell
    return {"read": "loss", "support": args.support, "draws": args.draws, "summary": summary,
            "rows": rows}


def judged_read(args, ckpt) -> dict:
    from eval.metrics import pooled_wer
    from eval.naturalness import dnsmos
    from metatts import speaker as ecapa
    from metatts.adapt import make_clip, support_examples
    from metatts.asr import transcribe
    from metatts.data import read_dataset
    from metatts.synthesis import synthesize
    from metatts.vocoder import load_vocoder

    smooth, strength = parse_variant(args.variant)
    model = ckpt.model.eval()
    pf = ckpt.config.postfilter
    vocoder = load_vocoder()
    held = [u for u in read_dataset(args.voices).utterances if u.group in ("natural", "real")]
    rows, reals = [], []
    for name in sorted({u.speaker for u in held}):
        own = sorted((u for u in held if u.speaker == name), key=lambda u: u.id)
        random.Random(f"{args.seed}:{name}").shuffle(own)
        support, others = own[: args.support], own[args.support:]
        clips = [make_clip(audio.prepare_clip(u.audio), audio.SAMPLE_RATE, u.text, u.id)
                 for u in support]
        examples = fixed_alignment(model, support_examples(clips, ckpt), ["speaker.new"])
        vector = model.encode_speaker([x.mel for x in examples])
        params = {"speaker.new": vector}
        eq = estimate(model, params, examples, pf, smooth=smooth)
        for u in others:
            reals.append({"speaker": name, "source": u.id,
                          "wav": audio.load_audio(u.audio)})
        for u in others[: args.sentences]:
            for arm, voc in (("none", vocoder),
                             ("eq", lambda m: vocoder(equalize(m, eq, strength)))):
                out = synthesize(ckpt, u.text, params, vocoder=voc)
                rows.append({"speaker": name, "group": u.group, "arm": arm, "text": u.text,
                             "source": u.id, "wav": out.wav})
        print(f"{name}: equalizer range {float(eq.min()):+.2f}..{float(eq.max()):+.2f}",
              file=sys.stderr, flush=True)
    real_emb = ecapa.embed([r["wav"] for r in reals], audio.SAMPLE_RATE)
    emb = ecapa.embed([r["wav"] for r in rows], audio.SAMPLE_RATE)
    mos = [n.ovrl for n in dnsmos([r["wav"] for r in rows], audio.SAMPLE_RATE)]
    heard = transcribe([r.pop("wav") for r in rows], audio.SAMPLE_RATE, model=args.asr)
    for r, e, m, t in zip(rows, emb, mos, heard):
        centroid = torch.stack([x for x, s in zip(real_emb, reals) if s["speaker"] == r["speaker"]
                                and s["source"] != r["source"]]).mean(0)
        r.update(secs=float(ecapa.similarity(e, centroid)), dnsmos=m, transcript=t)
    summary = {}
    for group in ("natural", "real"):
        pairs = defaultdict(dict)
        for r in rows:
            if r["group"] == group:
                pairs[r["speaker"], r["source"]][r["arm"]] = r
        if not pairs:
            continue
        diffs = np.array([p["eq"]["secs"] - p["none"]["secs"] for p in pairs.values()])
        cell = {"clips": len(pairs), "speakers": len({s for s, _ in pairs}),
                "ecapa_difference": float(diffs.mean()), "eq_higher": float((diffs > 0).mean())}
        for arm in ("none", "eq"):
            chosen = [p[arm] for p in pairs.values()]
            cell[arm] = {"ecapa": float(np.mean([r["secs"] for r in chosen])),
                         "wer": pooled_wer([r["text"] for r in chosen],
                                           [r["transcript"] for r in chosen]),
                         "dnsmos": float(np.mean([r["dnsmos"] for r in chosen]))}
        if len(diffs) > 5:
            from scipy.stats import wilcoxon

            cell["p"] = float(wilcoxon(diffs).pvalue)
        summary[group] = cell
    return {"read": "judged", "variant": args.variant, "support": args.support,
            "summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--read", choices=("loss", "judged"), required=True)
    parser.add_argument("--checkpoint", default="checkpoints/pretrained")
    parser.add_argument("--data-config", default="configs/base_v2_warm.json",
                        help="loss read: whose data section gives the validation voices")
    parser.add_argument("--voices", default=str(Path(__file__).resolve().parents[1] / "metatts"
                                                / "eval_speakers"),
                        help="judged read: the held-out voices")
    parser.add_argument("--support", type=int, default=5)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["1:1", "5:1", "1:0.5"],
                        help="loss read: equalizers as smooth:strength")
    parser.add_argument("--variant", default="1:1", help="judged read: the one equalizer")
    parser.add_argument("--sentences", type=int, default=5)
    parser.add_argument("--asr", default="base")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.model.speaker_encoder is None:
        parser.error(f"{args.checkpoint}: this model has no speaker encoder.")
    torch.set_grad_enabled(False)
    result = loss_read(args, ckpt) if args.read == "loss" else judged_read(args, ckpt)
    result["checkpoint"] = args.checkpoint
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the pretrained acoustic model speak, and how fast is it? (issue #4's bar and figures)

Quality: for ``--speakers`` training speakers of the checkpoint (spread over the corpus'
engines), synthesize ``--sentences`` sentences each whose text no training clip says (the
corpus' validation/test speakers' sentences), and score them with the project's scorer: Whisper
WER (EnglishTextNormalizer, pooled over clips) and ECAPA cosine to ``--real`` real clips of the
same speaker. The same speaker's real clips give the reference: their WER, and the ECAPA cosine
between different real clips (the ceiling). The bar: synthesized WER within 5 points of the real
audio's, mean ECAPA >= 0.75 to the speaker's centroid (the mean embedding of the real clips;
leave-one-out for a real clip), as speaker verification scores a voice against its enrollment
clips. The mean clip-to-clip cosine is reported beside it. The real clips are also passed
through mel -> vocoder and scored the same way ("vocoded"): the ceiling a perfect acoustic model
would reach with this vocoder.

Zero-shot (issue #15's targets, ``--zero-shot DIR``, default the shipped evaluation speakers,
which no checkpoint trains on): for each held-out speaker of the natural and real groups,
``--support`` of its clips are the reference; ``--zs-sentences`` sentences no training clip says
are spoken three ways: from the speaker encoder's vector of the support clips (no gradient step),
from the mean training vector (today's adaptation start), and as the training speaker whose
learned vector is nearest to the encoder's (cosine in the model's speaker space: "pick the
closest known voice", no judge involved). Each is scored against the speaker's *other* clips:
ECAPA cosine to their centroid, Whisper WER, DNSMOS OVRL; the other clips themselves and their
vocoded copies give the references. The bars: encoder >= 0.60 on the natural test voices, >= 0.40
on the real voice and above the nearest known voice there, DNSMOS within 0.3 of the vocoded real
clips; and adapting 5 clips x 20 steps (encoder start when there is one) in 5 s or less.
With ``--include-known`` (and ``--voices``, ``--zs-clips``) the same read speaks voices the
checkpoint trained on, from their clips as if unseen: a diagnostic of where the zero-shot voice is
capped, not a target.

Speed: training steps per second (forward, backward, AdamW; batch ``--batch-size`` of corpus
clips), synthesis real-time factor of the acoustic model and of the vocoder separately,
parameter count, and peak resident memory after synthesis and after training steps.

    python benchmarks/acoustic.py --checkpoint checkpoints/pretrained --data data/corpus
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts import audio  # noqa: E402
from metatts.data import read_dataset  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.model.fastspeech2 import count_parameters  # noqa: E402
from metatts.frames import NEIGHBOURS, UPPER_NEIGHBOURS  # noqa: E402

WER_MARGIN = 0.05  # synthesized WER may exceed the real audio's by at most 5 points
MIN_SECS = 0.75


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engines(data: Path) -> dict[str, str]:
    """speaker -> engine from the corpus manifest, when it has one."""
    manifest = data / "manifest.jsonl"
    if not manifest.is_file():
        return {}
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return {r["speaker"]: r.get("engine", "") for r in rows}


def pick_speakers(trained: tuple[str, ...], engine: dict[str, str], n: int, seed: int) -> list:
    """n training speakers, round-robin over engines (seeded within an engine)."""
    rng = random.Random(seed)
    by_engine: dict[str, list[str]] = defaultdict(list)
    for s in sorted(trained):
        by_engine[engine.get(s, "")].append(s)
    for names in by_engine.values():
        rng.shuffle(names)
    picked, groups = [], [by_engine[e] for e in sorted(by_engine)]
    while len(picked) < min(n, len(trained)):
        for names in groups:
            if names and len(picked) < n:
                picked.append(names.pop())
    return picked


def leave_one_out(rows: list[dict], refs: torch.Tensor) -> tuple[list[float], list[float]]:
    """ECAPA cosine of rows[j] to the real clips other than refs[j] (their mean, and their
    centroid): a real clip, or the vocoded copy of one, is never scored against its source."""
    from metatts import speaker as ecapa

    clip, centroid = [], []
    for j, r in enumerate(rows):
        others = torch.cat([refs[:j], refs[j + 1:]])
        clip.append(float(ecapa.similarity(r["emb"][None], others).mean()))
        centroid.append(float(ecapa.similarity(r["emb"], others.mean(0))))
    return clip, centroid


def quality(args, ckpt, utterances, vocoder) -> dict:
    from metatts.synthesis import synthesize

    trained = set(ckpt.speakers)
    train_texts = {u.text for u in utterances if u.speaker in trained}
    unseen = sorted({u.text for u in utterances if u.text not in train_texts})
    n_speakers = args.speakers or len(ckpt.speakers)
    speakers = pick_speakers(ckpt.speakers, engines(Path(args.data)), n_speakers, args.seed)
    need = len(speakers) * args.sentences
    if len(unseen) < need:
        raise SystemExit(f"only {len(unseen)} sentences outside training; lower --sentences.")
    rng = random.Random(args.seed)
    texts = rng.sample(unseen, need)
    synth, real, vocoded = [], [], []
    # transcripts and embeddings of the real and vocoded clips, which do not depend on the
    # checkpoint: reused from --reference-cache when it has them
    cache = Path(args.reference_cache) if args.reference_cache else None
    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    acoustic_s = vocoder_s = audio_s = 0.0
    for i, name in enumerate(speakers):
        own = sorted((u for u in utterances if u.speaker == name), key=lambda u: u.id)
        for u in random.Random(f"{args.seed}:{name}").sample(own, min(args.real, len(own))):
            wav = audio.load_audio(u.audio)
            clip = f"{u.audio}@{Path(u.audio).stat().st_mtime_ns}|{args.asr}"
            real.append({"speaker": name, "text": u.text, "wav": wav, "key": "real|" + clip})
            # the same clip through mel -> vocoder: what a perfect acoustic model would give
            key = "vocoded|" + clip
            vocoded.append({"speaker": name, "text": u.text, "key": key, "wav": None if key in
                            known else vocoder(audio.mel_spectrogram(wav)).numpy()})
        for text in texts[i * args.sentences: (i + 1) * args.sentences]:
            out = synthesize(ckpt, text, speaker=name, vocoder=vocoder,
                             postfilter=not args.no_postfilter)
            acoustic_s += out.acoustic_seconds
            vocoder_s += out.vocoder_seconds
            audio_s += out.seconds
            synth.append({"speaker": name, "text": text, "wav": out.wav})
        print(f"synthesized {name}", file=sys.stderr, flush=True)
    memory_synthesis = peak_mb()

    from metatts import speaker as ecapa
    from metatts.asr import transcribe
    from eval.metrics import pooled_wer, wer

    for rows in (synth, real, vocoded):
        for r in rows:
            if r.get("key") in known:
                r.update(transcript=known[r["key"]]["transcript"],
                         emb=torch.tensor(known[r["key"]]["embedding"]))
        todo = [r for r in rows if "emb" not in r]
        if todo:
            heard = transcribe([r["wav"] for r in todo], audio.SAMPLE_RATE, model=args.asr)
            embeddings = ecapa.embed([r["wav"] for r in todo], audio.SAMPLE_RATE)
            for r, t, e in zip(todo, heard, embeddings):
                r.update(transcript=t, emb=e)
                if "key" in r:
                    known[r["key"]] = {"transcript": t, "embedding": e.tolist()}
        for r in rows:
            r["wer"] = wer(r["text"], r["transcript"])
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    table = []
    for name in speakers:
        s = [r for r in synth if r["speaker"] == name]
        g = [r for r in real if r["speaker"] == name]
        v = [r for r in vocoded if r["speaker"] == name]  # v[j] is g[j] vocoded
        refs = torch.stack([r["emb"] for r in g])
        s_secs = [float(ecapa.similarity(r["emb"][None], refs).mean()) for r in s]
        s_centroid = [float(ecapa.similarity(r["emb"], refs.mean(0))) for r in s]
        g_secs, g_centroid = leave_one_out(g, refs)
        v_secs, v_centroid = leave_one_out(v, refs)  # against the real clips it did not come from
        table.append({
            "speaker": name,
            "synth_wer": pooled_wer([r["text"] for r in s], [r["transcript"] for r in s]),
            "real_wer": pooled_wer([r["text"] for r in g], [r["transcript"] for r in g]),
            "synth_secs": float(np.mean(s_secs)), "real_secs": float(np.mean(g_secs)),
            "synth_secs_centroid": float(np.mean(s_centroid)),
            "real_secs_centroid": float(np.mean(g_centroid)),
            "vocoded_wer": pooled_wer([r["text"] for r in v], [r["transcript"] for r in v]),
            "vocoded_secs": float(np.mean(v_secs)),
            "vocoded_secs_centroid": float(np.mean(v_centroid)),
            "n_synth": len(s), "n_real": len(g)})
    overall = {
        "synth_wer": pooled_wer([r["text"] for r in synth], [r["transcript"] for r in synth]),
        "real_wer": pooled_wer([r["text"] for r in real], [r["transcript"] for r in real]),
        "synth_secs": float(np.mean([t["synth_secs"] for t in table])),
        "real_secs": float(np.mean([t["real_secs"] for t in table])),
        "synth_secs_centroid": float(np.mean([t["synth_secs_centroid"] for t in table])),
        "real_secs_centroid": float(np.mean([t["real_secs_centroid"] for t in table])),
        "vocoded_wer": pooled_wer([r["text"] for r in vocoded],
                                  [r["transcript"] for r in vocoded]),
        "vocoded_secs": float(np.mean([t["vocoded_secs"] for t in table])),
        "vocoded_secs_centroid": float(np.mean([t["vocoded_secs_centroid"] for t in table])),
        "sentences": len(synth), "speakers": len(speakers)}
    overall["wer_ok"] = overall["synth_wer"] <= overall["real_wer"] + WER_MARGIN
    # judged against the speaker's centroid, as speaker verification scores a voice against its
    # enrollment clips; clip-to-clip is reported beside it (on the corpus the real clips and the
    # vocoded real clips stay below 0.75 on it themselves)
    overall["secs_ok"] = overall["synth_secs_centroid"] >= MIN_SECS
    overall["secs_clip_ok"] = overall["synth_secs"] >= MIN_SECS
    examples = [{k: r[k] for k in ("speaker", "text", "transcript", "wer")} for r in synth[:: max(
        1, len(synth) // 12)]]
    speed = {"acoustic_rtf": acoustic_s / audio_s, "vocoder_rtf": vocoder_s / audio_s,
             "peak_mb_synthesis": memory_synthesis}
    return {"speakers": table, "overall": overall, "examples": examples, "synthesis": speed}


ZS_BARS = {"natural": 0.60, "real": 0.40}  # encoder's ECAPA to the speaker's centroid
DNSMOS_MARGIN = 0.3  # synthesized DNSMOS OVRL at most this far below the vocoded real clips


def zero_shot(args, ckpt, utterances, vocoder) -> dict:
    """Held-out voices from their clips with no gradient step, against the mean start and the
    nearest known voice (see the module docstring)."""
    from eval.metrics import pooled_wer
    from eval.naturalness import dnsmos
    from metatts import speaker as ecapa
    from metatts.asr import transcribe
    from metatts.adapt import make_clip, support_examples
    from metatts.frames import frame_bank
    from metatts.synthesis import synthesize

    held = [u for u in read_dataset(args.zero_shot).utterances
            if u.group in ("natural", "real")
            and (args.include_known or u.speaker not in set(ckpt.speakers))
            and (not args.voices or u.speaker in args.voices)]
    if args.zs_clips:  # each voice's first clips by id
        first: dict[str, list] = defaultdict(list)
        for u in sorted(held, key=lambda u: u.id):
            first[u.speaker].append(u)
        held = [u for clips in first.values() for u in clips[: args.zs_clips]]
    if not held:
        raise SystemExit(f"no voice of {args.zero_shot} to speak zero-shot (--voices, "
                         "--include-known).")
    train_texts = {u.text for u in utterances if u.speaker in set(ckpt.speakers)}
    held_texts = {u.text for u in held}
    unseen = sorted({u.text for u in utterances} - train_texts - held_texts)
    if len(unseen) < args.zs_sentences:
        raise SystemExit(f"only {len(unseen)} sentences outside training; lower --zs-sentences.")
    texts = random.Random(args.seed).sample(unseen, args.zs_sentences)
    model = ckpt.model.eval()
    table = model.speaker.table.weight.detach()
    mean = table.mean(0)
    rows, refs = [], []
    for name in sorted({u.speaker for u in held}):
        own = sorted((u for u in held if u.speaker == name), key=lambda u: u.id)
        random.Random(f"{args.seed}:{name}").shuffle(own)
        support, others = own[: args.support], own[args.support:]
        group = own[0].group
        for u in others:
            wav = audio.load_audio(u.audio)
            refs.append({"speaker": name, "group": group, "kind": "real", "text": u.text,
                         "wav": wav, "source": u.id})
            refs.append({"speaker": name, "group": group, "kind": "vocoded", "text": u.text,
                         "wav": vocoder(audio.mel_spectrogram(wav)).numpy(), "source": u.id})
        starts = {"mean": ({"speaker.new": mean}, None, None, None)}
        nearest = None
        if model.speaker_encoder is not None:
            mels = [audio.mel_spectrogram(audio.prepare_clip(u.audio)) for u in support]
            encoded = model.encode_speaker(mels)
            cos = torch.nn.functional.cosine_similarity(table, encoded[None], dim=-1)
            nearest = ckpt.speakers[int(cos.argmax())]
            starts = {"encoder": ({"speaker.new": encoded}, None, None, None), **starts,
                      "nearest_known": (None, nearest, None, None)}
            if getattr(model, "reference_in", None) is not None:  # the vector and the frames
                starts["encoder_references"] = ({"speaker.new": encoded}, None, mels, None)
                starts["mean_references"] = ({"speaker.new": mean}, None, mels, None)
            if not args.no_frames:  # the vector, and each frame corrected by the clips' own
                clips = [make_clip(audio.prepare_clip(u.audio), audio.SAMPLE_RATE, u.text, u.id)
                         for u in support]
                bank = frame_bank(ckpt, {"speaker.new": encoded}, support_examples(clips, ckpt),
                                  key=args.frames_key, neighbours=args.frames_neighbours,
                                  upper_neighbours=args.frames_upper)
                starts["encoder_frames"] = ({"speaker.new": encoded}, None, None, bank)
        for method, (params, who, references, bank) in starts.items():
            for text in texts:
                out = synthesize(ckpt, text, params, who, vocoder=vocoder,
                                 postfilter=not args.no_postfilter, references=references,
                                 frames=bank)
                rows.append({"speaker": name, "group": group, "kind": method, "text": text,
                             "wav": out.wav, "nearest": nearest})
        print(f"zero-shot {name} (nearest known voice {nearest})", file=sys.stderr, flush=True)
    everything = refs + rows
    heard = [transcribe(r["wav"], audio.SAMPLE_RATE, model=args.asr)[0] for r in everything]
    embeddings = ecapa.embed([r["wav"] for r in everything], audio.SAMPLE_RATE)
    mos = [n.ovrl for n in dnsmos([r["wav"] for r in everything], audio.SAMPLE_RATE)]
    for r, t, e, m in zip(everything, heard, embeddings, mos):
        r.update(transcript=t, emb=e, dnsmos=m)
    for r in everything:  # a real clip, or its vocoded copy, is left out of the centroid
        real = [x["emb"] for x in refs if x["speaker"] == r["speaker"] and x["kind"] == "real"
                and x["source"] != r.get("source")]
        r["secs"] = float(ecapa.similarity(r["emb"], torch.stack(real).mean(0)))
    table_rows = []
    for group in ("natural", "real"):
        for kind in ("encoder", "encoder_frames", "encoder_references", "mean", "mean_references",
                     "nearest_known", "real", "vocoded"):
            chosen = [r for r in everything if r["group"] == group and r["kind"] == kind]
            if not chosen:
                continue
            per_speaker = defaultdict(list)
            for r in chosen:
                per_speaker[r["speaker"]].append(r["secs"])
            table_rows.append({
                "group": group, "kind": kind, "clips": len(chosen), "speakers": len(per_speaker),
                "secs_centroid": float(np.mean([np.mean(v) for v in per_speaker.values()])),
                "wer": pooled_wer([r["text"] for r in chosen], [r["transcript"] for r in chosen]),
                "dnsmos": float(np.mean([r["dnsmos"] for r in chosen])),
                "per_speaker": {k: round(float(np.mean(v)), 3) for k, v in per_speaker.items()}})
    out = {"support_clips": args.support, "sentences": texts, "rows": table_rows,
           "nearest_known": {r["speaker"]: r["nearest"] for r in rows},
           # every synthesized clip's figures, for paired comparisons between checkpoints
           "clips": [{"speaker": r["speaker"], "group": r["group"], "kind": r["kind"],
                      "text": r["text"], "secs": round(r["secs"], 4),
                      "transcript": r["transcript"], "dnsmos": round(float(r["dnsmos"]), 3)}
                     for r in rows]}
    natural_support = [u for u in held if u.group == "natural"]
    if natural_support:  # adaptation cost: 5 clips x 20 steps, as adapt would take them
        from metatts.adapt import adapt, default_settings, make_clip, with_changes

        first = sorted({u.speaker for u in natural_support})[0]
        clips = [make_clip(audio.load_audio(u.audio), audio.SAMPLE_RATE, u.text, u.id)
                 for u in sorted(natural_support, key=lambda u: u.id) if u.speaker == first][:5]
        start = "encoder" if model.speaker_encoder is not None else "mean"
        # the shipped settings from that start (pieces, bfloat16 where fast, the encoder
        # start's inner loop), as benchmarks/adapt_speed.py's "now" path times them
        settings = with_changes(default_settings("pretrained", ckpt, start), steps=20)
        adapt(clips, ckpt, settings)  # warm-up
        timed = adapt(clips, ckpt, settings)
        out["adapt"] = {"speaker": first, "clips": len(clips), "steps": 20, "start": start,
                        "seconds": round(timed.seconds, 3)}
    return out


def print_zero_shot(z: dict) -> None:
    print(f"| group | voice from | clips | speakers | ECAPA to centroid | WER | DNSMOS OVRL |\n"
          "|---|---|---|---|---|---|---|")
    for r in z["rows"]:
        print(f"| {r['group']} | {r['kind']} | {r['clips']} | {r['speakers']} | "
              f"{r['secs_centroid']:.3f} | {r['wer']:.1%} | {r['dnsmos']:.2f} |")
    cell = {(r["group"], r["kind"]): r for r in z["rows"]}
    for group, bar in ZS_BARS.items():
        enc = cell.get((group, "encoder"))
        if enc is None:
            print(f"bar {group}: no speaker encoder in this checkpoint")
            continue
        parts = [f"encoder {enc['secs_centroid']:.3f} >= {bar}: "
                 f"{'met' if enc['secs_centroid'] >= bar else 'NOT met'}"]
        if group == "real" and (group, "nearest_known") in cell:
            near = cell[(group, "nearest_known")]["secs_centroid"]
            parts.append(f"above the nearest known voice ({near:.3f}): "
                         f"{'met' if enc['secs_centroid'] > near else 'NOT met'}")
        if (group, "vocoded") in cell:
            voc = cell[(group, "vocoded")]["dnsmos"]
            parts.append(f"DNSMOS {enc['dnsmos']:.2f} within {DNSMOS_MARGIN} of vocoded "
                         f"{voc:.2f}: {'met' if enc['dnsmos'] >= voc - DNSMOS_MARGIN else 'NOT met'}")
        print(f"bar {group}: " + "; ".join(parts))
    if "adapt" in z:
        a = z["adapt"]
        print(f"adapt {a['clips']} clips x {a['steps']} steps ({a['start']} start): "
              f"{a['seconds']:.2f} s, bar 5 s: {'met' if a['seconds'] <= 5 else 'NOT met'}")


def training_speed(args, ckpt, utterances) -> dict:
    from metatts.data.batch import Example, collate
    from metatts.text import text_to_ids

    index = {s: i for i, s in enumerate(ckpt.speakers)}
    pool = [u for u in utterances if u.speaker in index]
    rng = random.Random(args.seed)
    model = ckpt.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for step in range(args.train_steps + 1):
        examples = []
        for u in rng.sample(pool, args.batch_size):
            wav = audio.load_audio(u.audio)
            ids = text_to_ids(u.text, mode=ckpt.config.data.tokens, table=ckpt.symbols)
            examples.append(Example(u.id, index[u.speaker], torch.tensor(ids),
                                    audio.mel_spectrogram(wav)))
        batch = collate(examples)
        started = time.perf_counter()
        loss = model(batch).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - started)
    model.eval()
    return {"steps_per_second": 1 / float(np.mean(times)), "batch_size": args.batch_size,
            "threads": torch.get_num_threads(), "peak_mb_training": peak_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/pretrained")
    parser.add_argument("--data", default="data/corpus", help="the corpus it was trained on")
    parser.add_argument("--speakers", type=int, default=6, help="0: every training speaker")
    parser.add_argument("--sentences", type=int, default=10, help="per speaker")
    parser.add_argument("--real", type=int, default=10, help="real clips per speaker")
    parser.add_argument("--asr", default="base")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--reference-cache", default="runs/bench/references.json",
                        help="where the real and vocoded clips' transcripts and embeddings are "
                             "kept between runs ('' to recompute every time)")
    parser.add_argument("--no-postfilter", action="store_true",
                        help="synthesize without the checkpoint's mel post-filter")
    parser.add_argument("--zero-shot", default=str(Path(__file__).resolve().parents[1] / "metatts"
                                                   / "eval_speakers"),
                        help="held-out voices for the zero-shot figures ('' to skip)")
    parser.add_argument("--include-known", action="store_true",
                        help="a diagnostic: also speak --zero-shot voices the checkpoint trained "
                             "on (from their clips, as if unseen), to tell an encoder that cannot "
                             "place any voice from one that cannot place a new one")
    parser.add_argument("--voices", nargs="+", default=None,
                        help="only these speakers of --zero-shot")
    parser.add_argument("--zs-clips", type=int, default=0,
                        help="each --zero-shot voice's first N clips by id (0: all)")
    parser.add_argument("--support", type=int, default=5, help="reference clips per voice")
    parser.add_argument("--no-frames", action="store_true",
                        help="leave out the zero-shot voice with frame matching "
                             "(metatts.frames: the encoder's vector, each frame corrected by "
                             "the support clips' own)")
    parser.add_argument("--frames-key", choices=("mel", "hidden"), default="hidden",
                        help="what frame matching compares (metatts.frames.KEYS; default hidden, "
                             "as shipped since 2026-12-06; mel before)")
    parser.add_argument("--frames-neighbours", type=int, default=NEIGHBOURS,
                        help="twin frames a match averages (metatts.frames.NEIGHBOURS, shipped "
                             f"{NEIGHBOURS}; AdaptSettings.frames_neighbours)")
    parser.add_argument("--frames-upper", type=int, default=UPPER_NEIGHBOURS,
                        help="... in the mel bins from metatts.frames.UPPER_BIN up (0: as "
                             "below; AdaptSettings.frames_upper)")
    parser.add_argument("--zs-sentences", type=int, default=5, help="sentences per voice")
    parser.add_argument("--out", default="runs/bench/acoustic.json")
    args = parser.parse_args(argv)

    ckpt = load_checkpoint(args.checkpoint)
    utterances = list(read_dataset(args.data).utterances)
    from metatts.vocoder import load_vocoder

    vocoder = load_vocoder()
    result = {"checkpoint": str(ckpt.path), "step": ckpt.step,
              "parameters": count_parameters(ckpt.model), "torch_threads": torch.get_num_threads(),
              "frames_key": args.frames_key, "frames_neighbours": args.frames_neighbours,
              "frames_upper": args.frames_upper,
              "postfilter": (None if args.no_postfilter or not ckpt.config.postfilter.active
                             else dataclasses.asdict(ckpt.config.postfilter))}
    if not args.skip_quality:
        result |= quality(args, ckpt, utterances, vocoder)
    if args.zero_shot:
        result["zero_shot"] = zero_shot(args, ckpt, utterances, vocoder)
    if args.train_steps > 0:  # a v2 model's steps: benchmarks/train_step.py
        result["training"] = training_speed(args, ckpt, utterances)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"checkpoint {result['checkpoint']} (step {result['step']}), "
          f"{result['parameters']:,} parameters, post-filter {result['postfilter'] or 'off'}")
    if "overall" in result:
        print("| speaker | synth WER | real WER | vocoded WER | synth ECAPA | real-real ECAPA "
              "| vocoded-real ECAPA | synth to centroid | real to centroid | vocoded to centroid |"
              "\n|---|---|---|---|---|---|---|---|---|---|")
        o = result["overall"]
        rows = result["speakers"] + [
            o | {"speaker": f"all ({o['sentences']} sentences, {o['speakers']} speakers)"}]
        for t in rows:
            print(f"| {t['speaker']} | {t['synth_wer']:.1%} | {t['real_wer']:.1%} | "
                  f"{t['vocoded_wer']:.1%} | {t['synth_secs']:.3f} | {t['real_secs']:.3f} | "
                  f"{t['vocoded_secs']:.3f} | {t['synth_secs_centroid']:.3f} | "
                  f"{t['real_secs_centroid']:.3f} | {t['vocoded_secs_centroid']:.3f} |")
        print(f"bar: WER within 5 points of real: {'met' if o['wer_ok'] else 'NOT met'}; "
              f"ECAPA >= {MIN_SECS} to centroid: {'met' if o['secs_ok'] else 'NOT met'} "
              f"(clip-to-clip: {'met' if o['secs_clip_ok'] else 'not met'}; real clips among "
              f"themselves {o['real_secs']:.3f}, vocoded {o['vocoded_secs']:.3f})")
        s = result["synthesis"]
        print(f"synthesis RTF: acoustic {s['acoustic_rtf']:.3f}, vocoder {s['vocoder_rtf']:.3f}; "
              f"peak RSS after synthesis {s['peak_mb_synthesis']:.0f} MB")
    if "zero_shot" in result:
        print_zero_shot(result["zero_shot"])
    if "training" in result:
        t = result["training"]
        print(f"training: {t['steps_per_second']:.2f} steps/s at batch {t['batch_size']} on "
              f"{t['threads']} threads; peak RSS {t['peak_mb_training']:.0f} MB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The meta start's inner rate, chosen on validation voices without the benchmark's judges.

``benchmarks/inner_rate.py`` reads the inner rate by the teacher-forced query loss, a weak proxy
for whose voice it is (it stops falling at 10 steps while ECAPA rises to 100). This script reads
what the adapted voice *says and sounds like*, but with instruments the benchmark does not judge
with, so that the choice it informs is not made by a judge that then scores it:

- **own-encoder similarity**: the cosine between the model's own speaker encoder's vector of a
  synthesized clip and its vector of 8 of the voice's other real clips (the encoder is part of
  the model, trained with it; ECAPA and GE2E are not used);
- **WER by Whisper tiny.en** (the benchmark judges with Whisper base);
- with ``--verifier DIR`` and ``--naturalness``, the corpus-trained speaker verifier and
  Distill-MOS (``frames_grid.Instruments``).

For each voice (default: the four natural validation voices, which no checkpoint trains on and
the benchmark never reports) and support draw, ``--support`` clips are adapted on with the
checkpoint's own inner loop (``adapt --init meta``, frame matching on), once per ``--rates``
value, keeping every ``--steps`` count; five sentences no support clip says are spoken at each.
``--variants`` compares other settings instead: each ``RATE[:NAME=VALUE...]`` adapts at RATE
with those ``AdaptSettings`` fields changed (e.g. ``0.0005:verifier=0.5``, the verifier term);
RATE ``learned`` adapts with the checkpoint's learned rates (``meta.learn_inner_lrs``).

    python benchmarks/inner_rate_voice.py --rates 0.0005 0.001 0.002 --steps 0,10,20,50 \\
        --out results/inner_rate_voice.json
    python benchmarks/inner_rate_voice.py --variants 0.0005 0.0005:verifier=0.5 --steps 0,10,20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frames_grid import (TEXTS, Instruments, clips_of, instrument_cells,  # noqa: E402
                         own_cell, voice_arguments, voice_files, write_read)

from metatts import audio  # noqa: E402
from metatts.adapt import adapt, default_settings, load_base, with_changes  # noqa: E402
from metatts.synthesis import synthesize  # noqa: E402


def variant_changes(variant: str) -> dict:
    """``RATE[:NAME=VALUE...]`` -> the AdaptSettings changes (``lr`` and the named fields, their
    values read as numbers where they are). RATE ``learned`` keeps the checkpoint's own rates
    (Meta-SGD's, where it learned them), which any number replaces."""
    rate, *rest = variant.split(":")
    out: dict = {} if rate == "learned" else {"lr": float(rate)}
    for item in rest:
        name, _, value = item.partition("=")
        try:
            out[name] = int(value) if value.isdigit() else float(value)
        except ValueError:
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    voice_arguments(p, "checkpoints/meta")
    p.add_argument("--draws", type=int, default=2, help="support draws per voice")
    p.add_argument("--rates", nargs="+", type=float, default=[0.0005, 0.001, 0.002])
    p.add_argument("--variants", nargs="+", default=None,
                   help="RATE[:NAME=VALUE...] each (replaces --rates)")
    p.add_argument("--steps", default="0,10,20,50")
    p.add_argument("--asr", default="tiny.en", help="not the benchmark's judge (base)")
    p.add_argument("--verifier", default=None,
                   help="a benchmarks/verifier.py model folder: a second judge-free similarity")
    p.add_argument("--naturalness", action="store_true",
                   help="also Distill-MOS of every spoken clip (benchmarks/naturalness.py)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    variants = args.variants or [f"{r:g}" for r in args.rates]
    changes = {v: variant_changes(v) for v in variants}
    # whose 0-step voice each variant speaks: the first variant's unless it changes more than the
    # rate (e.g. frames_neighbours, which the zero-shot voice's frame bank has too)
    unrated = {v: {k: x for k, x in c.items() if k != "lr"} for v, c in changes.items()}
    zero_of = {v: next(u for u in variants if unrated[u] == unrated[v]) for v in variants}
    counts = sorted({int(s) for s in args.steps.split(",")})
    refs = {v: voice_files(args.data, v, args.support * args.draws + 8)[-8:] for v in args.voices}
    instruments = Instruments(args.verifier, args.naturalness, refs)

    from metatts.vocoder import load_vocoder

    base = load_base("meta", args.checkpoint)
    model = base.model.eval()
    vocoder = load_vocoder()
    settings = default_settings("meta", base)
    rows = []
    for name in args.voices:
        files = voice_files(args.data, name, args.support * args.draws + 8)
        refs = files[-8:]
        target = model.encode_speaker([audio.mel_spectrogram(audio.prepare_clip(f))
                                       for f in refs])
        for draw in range(args.draws):
            support = files[draw * args.support:(draw + 1) * args.support]
            clips = clips_of(support)
            for rate in variants:
                started = time.perf_counter()
                result = adapt(clips, base, with_changes(settings, steps=counts[-1],
                                                         **changes[rate]), keep=counts)
                seconds = time.perf_counter() - started
                for n in counts:
                    if n == 0 and zero_of[rate] != rate:
                        continue  # the same voice as an earlier variant's
                    kept = result.kept[n]
                    for text in TEXTS:
                        wav = synthesize(base, text, kept.params, vocoder=vocoder,
                                         frames=kept.frames).wav
                        own = model.encode_speaker([audio.mel_spectrogram(wav)])
                        rows.append({"speaker": name, "draw": draw, "rate": rate, "steps": n,
                                     "text": text, "wav": wav,
                                     "own": float(torch.nn.functional.cosine_similarity(
                                         own, target, dim=0))})
                        instruments.read(rows[-1], wav)
                print(f"{name} draw {draw} {rate}: {counts[-1]} steps in {seconds:.1f} s",
                      file=sys.stderr, flush=True)
    instruments.hear(rows, args.asr)
    table = {}
    titles, cells = instruments.header()
    print(f"| rate | steps | clips | own-encoder similarity | WER ({args.asr}) |{titles}\n"
          f"|---|---|---|---|---|{cells}")
    for rate in variants:
        for n in counts:
            chosen = [r for r in rows if r["steps"] == n
                      and r["rate"] == (zero_of[rate] if n == 0 else rate)]
            cell = table[f"{rate}@{n}" if args.variants else f"{rate}:{n}"] = {**own_cell(chosen), **instrument_cells(chosen)}
            print(f"| {rate} | {n} | {cell['clips']} | {cell['own']:.3f} | {cell['wer']:.1%} |"
                  + instruments.row(cell))
    write_read(args.out, args, table, rows, **instruments.extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

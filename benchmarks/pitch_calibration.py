"""Pitch calibration of a zero-shot voice (metatts.pitch_calibration), read without the judges.

For each voice (default: the four natural validation voices, which no checkpoint trains on and the
benchmark never reports) and support draw, ``--support`` clips give the speaker encoder's vector,
its pitch calibration and the frame bank; five sentences no support clip says are spoken four
ways: the vector alone (post-filtered, as shipped without frames), the vector with its pitch
calibrated, frame matching, and frame matching on the calibrated vector (its bank rendered with
the calibration). Read against 8 of the voice's other real clips, with no benchmark judge:

- pitch: median offset (semitones) and spread ratio of voiced log-F0 (Praat, as the feature cache);
- own-encoder similarity: the model's own speaker encoder, cosine of the spoken clip's vector to
  the other clips' vector;
- WER by Whisper tiny.en (the benchmark judges with base).

    python benchmarks/pitch_calibration.py --out results/pitch_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frames_grid import TEXTS, clips_of, vector_of, voice_arguments, voice_files  # noqa: E402

from metatts import audio  # noqa: E402
from metatts.adapt import support_examples  # noqa: E402
from metatts.data.pitch import extract_f0  # noqa: E402
from metatts.frames import frame_bank  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.pitch_calibration import KEY, calibration, measured_line  # noqa: E402
from metatts.synthesis import synthesize  # noqa: E402

VARIANTS = ("vector", "vector+cal", "frames", "frames+cal")


def log_f0(wavs: list[np.ndarray]) -> np.ndarray:
    """Voiced log2-F0 (octaves) of the clips' frames, pooled."""
    f0 = np.concatenate([np.asarray(extract_f0(w, audio.SAMPLE_RATE)) for w in wavs])
    return np.log2(f0[f0 > 0])


def iqr(x: np.ndarray) -> float:
    return float(np.subtract(*np.percentile(x, [75, 25])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    voice_arguments(p)
    p.add_argument("--draws", type=int, default=2, help="support draws per voice")
    p.add_argument("--asr", default="tiny.en", help="not the benchmark's judge (base)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    from eval.metrics import pooled_wer
    from metatts.asr import transcribe
    from metatts.vocoder import load_vocoder

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    vocoder = load_vocoder()
    rows, lines = [], []
    for name in args.voices:
        files = voice_files(args.data, name, args.support * args.draws + 8)
        others = files[-8:]
        real_wavs = [audio.prepare_clip(f) for f in others]
        real = log_f0(real_wavs)
        target = model.encode_speaker([audio.mel_spectrogram(w) for w in real_wavs])
        for draw in range(args.draws):
            clips = clips_of(files[draw * args.support:(draw + 1) * args.support])
            examples = support_examples(clips, ckpt)
            vector = {"speaker.new": vector_of(model, clips)}
            line = measured_line(ckpt, vector, examples, vocoder)
            calibrated = {**vector, KEY: calibration(line)}
            after = measured_line(ckpt, calibrated, examples, vocoder)
            lines.append({"speaker": name, "draw": draw, "before": line, "after": after,
                          "calibration": calibrated[KEY].tolist()})
            print(f"{name} draw {draw}: line {line}, calibration "
                  f"{[round(v, 3) for v in calibrated[KEY].tolist()]}, after {after}",
                  file=sys.stderr, flush=True)
            setups = {"vector": (vector, None), "vector+cal": (calibrated, None),
                      "frames": (vector, frame_bank(ckpt, vector, examples)),
                      "frames+cal": (calibrated, frame_bank(ckpt, calibrated, examples))}
            for variant, (params, bank) in setups.items():
                wavs = [synthesize(ckpt, t, params, vocoder=vocoder, frames=bank).wav
                        for t in TEXTS]
                said = log_f0(wavs)
                for text, wav in zip(TEXTS, wavs):
                    own = model.encode_speaker([audio.mel_spectrogram(wav)])
                    rows.append({"speaker": name, "draw": draw, "variant": variant, "text": text,
                                 "wav": wav, "offset": float(12 * (np.median(said)
                                                                   - np.median(real))),
                                 "spread": iqr(said) / iqr(real),
                                 "own": float(torch.nn.functional.cosine_similarity(
                                     own, target, dim=0))})
    heard = transcribe([r["wav"] for r in rows], audio.SAMPLE_RATE, model=args.asr)
    for r, h in zip(rows, heard):
        r["heard"] = h
    table = {}
    print(f"| variant | clips | |offset| (semitones) | spread ratio | own-encoder similarity | "
          f"WER ({args.asr}) |\n|---|---|---|---|---|---|")
    for variant in VARIANTS:
        chosen = [r for r in rows if r["variant"] == variant]
        per = defaultdict(list)
        for r in chosen:
            per[r["speaker"]].append(r)
        cell = {"clips": len(chosen),
                "abs_offset": float(np.mean([abs(r["offset"]) for r in chosen])),
                "spread": float(np.mean([r["spread"] for r in chosen])),
                "own": float(np.mean([np.mean([r["own"] for r in v]) for v in per.values()])),
                "own_per_voice": {k: float(np.mean([r["own"] for r in v])) for k, v in per.items()},
                "offset_per_voice": {k: float(np.mean([r["offset"] for r in v]))
                                     for k, v in per.items()},
                "wer": pooled_wer([r["text"] for r in chosen], [r["heard"] for r in chosen])}
        table[variant] = cell
        print(f"| {variant} | {cell['clips']} | {cell['abs_offset']:.2f} | {cell['spread']:.2f} | "
              f"{cell['own']:.3f} | {cell['wer']:.1%} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "checkpoint": args.checkpoint, "voices": args.voices, "texts": list(TEXTS),
            "asr": args.asr, "table": table, "lines": lines,
            "clips": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                       if k != "wav"} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

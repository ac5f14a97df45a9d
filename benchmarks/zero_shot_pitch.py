"""Does a zero-shot voice speak at its voice's pitch? A read with no judge.

The decoder sees normalized pitch only: how high a voice sounds is carried by the speaker
vector alone. For each voice (default: the four natural validation voices) ``--support`` clips
(seeded shuffle, as ``benchmarks/frames_grid.py``) give the speaker encoder's vector and the frame
bank; five sentences are spoken with the vector alone (post-filtered, as shipped without frames)
and with frame matching; Praat's F0 tracker (:func:`metatts.data.pitch.extract_f0`, the one the
feature cache uses) reads the median and spread of voiced log-F0 of what is spoken and of 8 of
the voice's other real clips. Prints per voice the offset in semitones (spoken minus real) and
the ratio of spreads.

    python benchmarks/zero_shot_pitch.py --out results/zero_shot_pitch.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frames_grid import TEXTS, clips_of, vector_of, voice_arguments, voice_files  # noqa: E402

from metatts import audio  # noqa: E402
from metatts.adapt import support_examples  # noqa: E402
from metatts.data.pitch import extract_f0  # noqa: E402
from metatts.frames import frame_bank  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.synthesis import synthesize  # noqa: E402


def log_f0(wavs: list[np.ndarray]) -> np.ndarray:
    """Voiced log2-F0 (octaves) of the clips' frames, pooled."""
    f0 = np.concatenate([np.asarray(extract_f0(w, audio.SAMPLE_RATE)) for w in wavs])
    return np.log2(f0[f0 > 0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    voice_arguments(p)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    from metatts.vocoder import load_vocoder

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    vocoder = load_vocoder()
    rows = {}
    print("| voice | real median F0 (Hz) | vector: offset (semitones), spread ratio | "
          "vector + frames: offset, spread ratio |\n|---|---|---|---|")
    for name in args.voices:
        files = voice_files(args.data, name, args.support + 8)
        support, others = files[: args.support], files[args.support:args.support + 8]
        clips = clips_of(support)
        params = {"speaker.new": vector_of(model, clips)}
        bank = frame_bank(ckpt, params, support_examples(clips, ckpt))
        real = log_f0([audio.prepare_clip(f) for f in others])
        row = {"real_median_hz": float(2 ** np.median(real)), "real_iqr_octaves":
               float(np.subtract(*np.percentile(real, [75, 25])))}
        for kind, frames in (("vector", None), ("frames", bank)):
            said = log_f0([synthesize(ckpt, t, params, vocoder=vocoder, frames=frames).wav
                           for t in TEXTS])
            row[kind] = {"offset_semitones": float(12 * (np.median(said) - np.median(real))),
                         "spread_ratio": float(np.subtract(*np.percentile(said, [75, 25]))
                                               / row["real_iqr_octaves"])}
        rows[name] = row
        print(f"| {name} | {row['real_median_hz']:.0f} | "
              f"{row['vector']['offset_semitones']:+.2f}, {row['vector']['spread_ratio']:.2f} | "
              f"{row['frames']['offset_semitones']:+.2f}, {row['frames']['spread_ratio']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "texts": list(TEXTS),
                                              "voices": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

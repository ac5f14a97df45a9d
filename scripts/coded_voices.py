"""Validation voices as the real voice's clips come: through the G.722 telephone codec.

The real voice of the benchmark (Asterisk's prompts, ``metatts.corpus.real_voice``) reaches the
project as G.722 at 16 kHz: band-limited to 7 kHz and coded at 64 kbit/s. The natural validation
voices are clean 24 kHz renderings, so a judge-free read on them cannot see what such a recording
does to a choice (e.g. how many twin frames a frame match averages: one neighbour carried the
real voice's clips into speech Whisper misheard, docs/experiments.md). This writes each
validation voice's clips the same way round: resampled to 16 kHz, coded to G.722 and decoded by
ffmpeg, resampled back, with the same file names and transcripts, so the validation-voice scripts
read them with ``--data OUT`` in the same shuffled order:

    python scripts/coded_voices.py --out data/validation_g722
    python benchmarks/inner_rate_voice.py --data data/validation_g722 ...

Only validation voices (never a test voice); a clip already written is kept.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frames_grid import VOICES  # noqa: E402

from metatts.audio import resample  # noqa: E402
from metatts.corpus.real_voice import G722_RATE, ffmpeg_exe  # noqa: E402


def g722_round_trip(wav: np.ndarray, rate: int, ffmpeg: str) -> np.ndarray:
    """``wav`` (float, ``rate`` Hz) coded to G.722 and decoded, back at ``rate``."""
    pcm = np.clip(resample(wav, rate, G722_RATE), -1.0, 1.0)
    coded = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "s16le", "-ar",
                            str(G722_RATE), "-ac", "1", "-i", "-", "-c:a", "g722", "-f", "g722",
                            "-"], input=(pcm * 32767).astype("<i2").tobytes(),
                           capture_output=True, check=True).stdout
    decoded = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "g722", "-i", "-", "-f",
                              "s16le", "-ac", "1", "-ar", str(G722_RATE), "-"], input=coded,
                             capture_output=True, check=True).stdout
    back = np.frombuffer(decoded, dtype="<i2").astype(np.float32) / 32768.0
    return resample(back, G722_RATE, rate)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data/corpus", help="speaker folders")
    p.add_argument("--voices", nargs="+", default=list(VOICES))
    p.add_argument("--out", type=Path, default=ROOT / "data/validation_g722")
    args = p.parse_args(argv)
    ffmpeg = ffmpeg_exe()
    for name in args.voices:
        files = sorted((args.data / name).glob("*.wav"))
        if not files:
            raise SystemExit(f"{args.data}/{name}: no clips; build the corpus first")
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            target = folder / f.name
            if not target.exists():
                wav, rate = sf.read(f, dtype="float32")
                sf.write(target, g722_round_trip(wav, rate, ffmpeg), rate)
            shutil.copyfile(f.with_suffix(".txt"), target.with_suffix(".txt"))
        print(f"{name}: {len(files)} clips", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

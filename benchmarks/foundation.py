"""Speed and memory of the pretrained components on this machine.

    python benchmarks/foundation.py [--repeats 3]

Prints one line per component: Whisper base and tiny.en real-time factor (seconds of compute per
second of audio, batched over the speech fixtures), ECAPA clips per second, HiFi-GAN vocoder
real-time factor, and each component's peak resident memory (measured in a fresh process).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIPS = sorted((ROOT / "tests" / "fixtures" / "speech").glob("*/*.wav"))


def _clips(rate: int):
    from metatts.audio import load_audio

    return [load_audio(p, rate) for p in CLIPS]


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: loading, first-call allocation
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def run_component(name: str, repeats: int) -> dict:
    import torch

    torch.set_num_threads(2)
    if name.startswith("whisper-"):
        from metatts import asr

        model = name.removeprefix("whisper-")
        wavs = _clips(16000)
        secs = _timed(lambda: asr.transcribe(wavs, 16000, model=model), repeats)
        result = {"rtf": secs / (sum(map(len, wavs)) / 16000)}
    elif name == "ecapa":
        from metatts import speaker

        wavs = _clips(16000)
        secs = _timed(lambda: speaker.embed(wavs, 16000), repeats)
        result = {"clips_per_second": len(wavs) / secs,
                  "mean_clip_seconds": sum(map(len, wavs)) / 16000 / len(wavs)}
    elif name == "vocoder":
        from metatts import audio, vocoder

        wavs = _clips(audio.SAMPLE_RATE)
        mels = [audio.mel_spectrogram(w) for w in wavs]
        secs = _timed(lambda: [vocoder.vocode(m) for m in mels], repeats)
        result = {"rtf": secs / (sum(map(len, wavs)) / audio.SAMPLE_RATE)}
    else:
        raise SystemExit(f"unknown component {name}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--component", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.component:
        print(json.dumps(run_component(args.component, args.repeats)))
        return 0
    if not CLIPS:
        raise SystemExit("no speech fixtures under tests/fixtures/speech")
    import os

    print(f"{len(CLIPS)} speech clips, {os.cpu_count()} CPU cores, torch threads 2")
    for name in ("whisper-base", "whisper-tiny.en", "ecapa", "vocoder"):
        out = subprocess.run([sys.executable, __file__, "--component", name,
                              "--repeats", str(args.repeats)], capture_output=True, text=True)
        if out.returncode:
            print(f"{name:16s} FAILED\n{out.stderr[-2000:]}")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:16s} " + "  ".join(f"{k}={v:.3f}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

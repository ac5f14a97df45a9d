"""Distill-MOS: a naturalness instrument for choosing settings, never one of the benchmark's judges.

The benchmark reads naturalness with DNSMOS (``eval.naturalness``), and a judge must not choose
what it then judges, so reads that choose settings (``benchmarks/frames_keys.py`` and the like)
had no naturalness instrument at all, only speaker similarity and WER. Distill-MOS (Stahl and
Gamper, ICASSP 2025; pip ``distillmos==0.9.1``, MIT, weights inside the wheel) is a small
convolution + transformer speech-quality model distilled from an XLS-R based one, trained on
other data than DNSMOS, so it is a second, independent reading; it is used here only to choose.

Its checkpoint is checked by sha256 and loaded with ``weights_only=True`` (the package's own
loader does the same, but without the check). The package imports torchaudio at import time for
its file reader, which nothing here uses: :func:`metatts._torchaudio.import_torchaudio` makes
that import work beside the CPU torch.

    python benchmarks/naturalness.py CLIP.wav [CLIP.wav ...]   # one score (1-5) per clip
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metatts import audio  # noqa: E402
from metatts.assets import package_dir, verify_sha256  # noqa: E402

PIP = "distillmos==0.9.1"
WEIGHTS = "weights/distill_mos_v7.pt"
WEIGHTS_SHA256 = "b18b3ac60227267cfb91e5d00ce22cc7b73716fd92f269484da1446e27031a40"
RATE = 16000  # what the model reads
NAME = "Distill-MOS v7 (distillmos 0.9.1)"


@functools.cache
def load() -> torch.nn.Module:
    """The model in eval mode, its weights checked by sha256 and loaded without pickle."""
    try:
        folder = package_dir("distillmos", f"{PIP} xls-r-sqa==0.1.0")
    except FileNotFoundError as e:
        raise SystemExit(f"{e}; it is in requirements.txt: bash scripts/setup.sh") from None
    path = verify_sha256(folder / WEIGHTS, WEIGHTS_SHA256, NAME)
    from metatts._torchaudio import import_torchaudio

    import_torchaudio()  # distillmos.sqa imports it for a file reader this module never calls
    from distillmos.sqa import ConvTransformerSQAModel

    model = ConvTransformerSQAModel(load_weights=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def score(wavs: list[np.ndarray], sample_rate: int) -> list[float]:
    """Distill-MOS (1 bad .. 5 excellent) of each (T,) waveform at ``sample_rate``, one clip at a
    time (the model segments a clip longer than 7.68 s itself and pads a shorter one)."""
    model = load()
    out = []
    with torch.inference_mode():
        for wav in wavs:
            x = audio.resample(np.asarray(wav, dtype=np.float32), sample_rate, RATE)
            if not np.any(x):
                raise ValueError("a silent clip has no naturalness to read.")
            out.append(float(model(torch.from_numpy(np.ascontiguousarray(x))[None])[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+", help="audio files")
    args = p.parse_args(argv)
    for path in args.clips:
        if not Path(path).is_file():
            print(f"no such file: {path}", file=sys.stderr)
            return 2
    unread = 0
    for path in args.clips:
        try:
            s = score([audio.load_audio(path, audio.SAMPLE_RATE)], audio.SAMPLE_RATE)[0]
        except ValueError as e:  # not audio, or silent: said, and the other clips still read
            print(str(e) if path in str(e) else f"{path}: {e}", file=sys.stderr)
            unread += 1
            continue
        print(f"{s:.3f}  {path}")
    return 1 if unread else 0


if __name__ == "__main__":
    raise SystemExit(main())

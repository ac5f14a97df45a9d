"""What storing a voice's parameters in 16 bits does to the speech it makes.

Synthesizes sentences with a voice's float32 parameters and with the same parameters rounded to
float16 (what voice files store) and to bfloat16, and prints the log-mel difference per sentence
and whether any token duration changed (the frame counts differ). Use a voice file written before
voice files were float16 (else its parameters are already rounded), e.g. one made with
``python -m metatts adapt ... --out voice.safetensors`` on an older checkout, or pass
``--adapt CLIP ...`` to adapt one here first (from ``--init``, its default inner loop).

    python benchmarks/voice_precision.py --adapt metatts/eval_speakers/real_allison/*.flac \
        --clips 5 [--out results/voice_precision.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.model.checkpoint import load_checkpoint, shipped_checkpoint  # noqa: E402
from metatts.synthesis import synthesize  # noqa: E402
from metatts.voice import Voice  # noqa: E402

SENTENCES = ("The quick brown fox jumps over the lazy dog.",
             "Please hold while I connect your call to the next available agent.",
             "On Tuesday, the library opens at nine and closes at half past five.")


def adapted_params(args) -> tuple[dict[str, torch.Tensor], Path]:
    """float32 parameters: adapted here from ``--adapt`` clips, or read from ``--voice``."""
    if args.voice:
        voice = Voice.load(args.voice)
        return voice.params, Path(voice.base.path or shipped_checkpoint(args.init))
    from metatts.adapt import adapt, default_settings, load_clips

    base = load_checkpoint(shipped_checkpoint(args.init))
    clips = load_clips(args.adapt[: args.clips]).clips
    result = adapt(clips, base, default_settings(args.init, base))
    return result.voice.params, Path(base.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--voice", type=Path, help="a float32 voice file")
    src.add_argument("--adapt", nargs="+", type=Path, help="clips to adapt a voice from")
    ap.add_argument("--clips", type=int, default=5, help="with --adapt: how many clips")
    ap.add_argument("--init", default="meta", choices=("meta", "pretrained"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    params, checkpoint = adapted_params(args)
    base = load_checkpoint(checkpoint)
    no_vocoder = lambda mel: torch.zeros(1)  # noqa: E731 - only the mels are compared
    rows = []
    for text in SENTENCES:
        ref = synthesize(base, text, params, vocoder=no_vocoder).mels[0]
        for dtype in (torch.float16, torch.bfloat16):
            rounded = {k: v.to(dtype).float() for k, v in params.items()}
            mel = synthesize(base, text, rounded, vocoder=no_vocoder).mels[0]
            row = {"text": text, "dtype": str(dtype).removeprefix("torch."),
                   "frames": [int(ref.shape[-1]), int(mel.shape[-1])]}
            if mel.shape == ref.shape:
                diff = (mel - ref).abs()
                row.update(mean_abs=float(diff.mean()), max_abs=float(diff.max()))
            rows.append(row)
            print(json.dumps(row))
    numbers = sum(v.numel() for v in params.values())
    summary = {"checkpoint": str(checkpoint), "parameters": numbers,
               "bytes": {"float32": 4 * numbers, "float16": 2 * numbers}, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

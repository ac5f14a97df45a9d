"""Frame matching's settings read without any judge: held-out clips, frame by frame.

``benchmarks/frames_grid.py`` reads frame matching's variants with the benchmark's judges (ECAPA,
Whisper base, DNSMOS) on the validation voices. This reads them with no judge at all: for each
voice (default: the four natural validation voices) and support draw, ``--support`` clips give
the speaker encoder's vector and the frame bank; every other clip of the voice (up to
``--held-out``) is rendered teacher-forced with that vector (its words, the aligner's durations,
its own pitch and energy), so that each rendered frame has a real frame of the same moment; each
variant corrects the rendering, and the mean absolute log-mel difference to the real clip is
reported (per clip, then per voice, then over voices), beside the rendering with the mel
post-filter (the vector alone, as shipped) and without. Lower is closer to the real voice.

Variants as in ``frames_grid.py`` (``MODE:K:C[:MIX[:T[:F]]]``); the shipped setting is
``residual:4:0:1:3``. Runs in about a minute on 2 cores (no vocoder, no judge).

    python benchmarks/frames_loss.py --variants residual:4:0:1:3 residual:2:0:1:1 \\
        --out results/frames/loss_grid.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import frames_grid as grid  # noqa: E402

from metatts.adapt import support_examples  # noqa: E402
from metatts.frames import frame_bank  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.postfilter import apply as postfilter  # noqa: E402

DEFAULT_VARIANTS = ["residual:4:0:1:3", "residual:4:0", "residual:2:0:1:3", "residual:8:0:1:3",
                    "residual:16:0:1:3", "residual:4:0:1:5", "residual:4:1:1:3",
                    "residual:4:0:0.7:3", "residual:4:0:1.3:3", "select:4:0"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    grid.voice_arguments(p)
    p.add_argument("--draws", type=int, default=2, help="support draws per voice")
    p.add_argument("--held-out", type=int, default=12, help="held-out clips per voice and draw")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    grid.check_variants(args.variants)

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    pf = ckpt.config.postfilter if ckpt.config.postfilter.active else None
    kinds = ["vector", "vector+postfilter", *args.variants]
    l1 = defaultdict(lambda: defaultdict(list))  # kind -> voice -> per-clip L1
    for name in args.voices:
        clips = grid.clips_of(grid.voice_files(args.data, name, args.support * args.draws + 1))
        for draw in range(args.draws):
            first, last = draw * args.support, (draw + 1) * args.support
            support = clips[first:last]
            held = support_examples((clips[:first] + clips[last:])[:args.held_out], ckpt)
            params = {"speaker.new": grid.vector_of(model, support)}
            bank = frame_bank(ckpt, params, support_examples(support, ckpt), smoothing=1)
            rendered = frame_bank(ckpt, params, held, smoothing=1)
            start = 0
            for clip in held:
                n = clip.mel.shape[-1]
                twin = rendered.twin[start:start + n].T  # (n_mels, n)
                real = rendered.real[start:start + n].T
                start += n
                outs = {"vector": twin,
                        "vector+postfilter": postfilter(twin, pf) if pf else twin}
                outs.update({v: grid.convert(twin, bank, v) for v in args.variants})
                for kind, mel in outs.items():
                    l1[kind][name].append(float((mel - real).abs().mean()))
        print(f"{name}: {args.draws} draws, {bank.frames} frames in the last bank",
              file=sys.stderr, flush=True)
    table = {}
    base = {v: np.mean(c) for v, c in l1["vector+postfilter"].items()}
    print("| voice from | clips | mel L1 to the real clip | vs vector+postfilter "
          "| voices better |\n"
          "|---|---|---|---|---|")
    for kind in kinds:
        per = {v: float(np.mean(c)) for v, c in l1[kind].items()}
        table[kind] = {"clips": sum(len(c) for c in l1[kind].values()),
                       "l1": float(np.mean(list(per.values()))), "per_voice": per}
        diff = table[kind]["l1"] - float(np.mean(list(base.values())))
        better = sum(per[v] < base[v] for v in per)
        print(f"| {kind} | {table[kind]['clips']} | {table[kind]['l1']:.4f} | {diff:+.4f} | "
              f"{better} of {len(per)} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "checkpoint": args.checkpoint, "voices": args.voices, "support": args.support,
            "draws": args.draws, "held_out": args.held_out, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

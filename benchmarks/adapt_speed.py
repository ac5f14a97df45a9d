"""Seconds to adapt a voice: 5 clips x 20 steps from the speaker encoder's start (issues #15/#16
target: 5 s or less on 2 cores, encoder and features included), now and with the previous code
paths, in one process on the same clips, alternating, so the ratio is paired.

    python benchmarks/adapt_speed.py [--checkpoint checkpoints/pretrained] [--rounds 3]

Paths compared:
- ``now``: the shipped settings (``default_settings("pretrained", base, "encoder")``): clips
  longer than ``PIECE_FRAMES`` step as pieces of whole words (``AdaptSettings.piece_frames``),
  with the code paths of ``whole``, in the arithmetic ``fast_precision()`` picks;
- ``bfloat16`` or ``float32``: the same in the other arithmetic (``AdaptSettings.precision``);
- ``whole``: the same as ``now`` in float32 with whole clips: attention through PyTorch's fused
  kernel wherever one backward suffices (first-order adaptation runs inside one ``torch.func.grad``), the library's
  convolution on AVX-512 CPUs, and the clips run as parts of similar length
  (``metatts.data.batch.split_collate``) instead of one batch padded to the longest;
- ``before``: whole clips, attention written out inside every ``torch.func`` transform, the FFN's
  convolution as one matrix product over shifted copies, one padded batch, Adam written out (the
  code until 2026-12-04);
- ``written``: ``now`` with Adam's step written out per tensor (:func:`metatts.meta.inner_optim.
  adam_step`, ten passes over each of the decoder's 111 tensors) where ``now`` runs PyTorch's
  fused kernel over all of them (:class:`metatts.meta.inner_optim.FusedAdam`; the code until
  the night of 2026-12-07). The same steps up to rounding;
- ``no_frames``: ``now`` without the voice's frame bank (``AdaptSettings.frames``; the bank is
  one teacher-forced pass over the clips after the last step, :mod:`metatts.frames`), which
  every path before 2026-12-06 left out;
- ``last``: ``now`` as it ran until the night of 2026-12-05: attention through the fused kernel
  in bfloat16 too (slower there than written out), the text encoder run at every step instead of
  once (``metatts.meta.support.fixed_text_states``), and the pieces split into parts wherever
  padding would waste a tenth of the frames (``metatts.adapt.PIECE_WASTE`` was 0.1). The same
  voice up to rounding.
``whole`` and ``before`` give the same voice up to float rounding (the script checks the losses);
``now`` fits the same frames in pieces, a slightly different voice (its quality is measured in
``python -m eval``, see metatts.adapt.PIECE_FRAMES).
Clips: the first 5 shipped clips of af_nicole (a test-only Kokoro voice). Run it on idle cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import metatts.adapt  # noqa: E402
import metatts.meta.inner_loop  # noqa: E402,F401  (the module; the package exports the function)
from metatts import audio  # noqa: E402
from metatts.adapt import (AdaptSettings, adapt, default_settings,  # noqa: E402
                           load_base, make_clip, with_changes)
from metatts.data.batch import collate, split_collate  # noqa: E402
from metatts.model import layers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints/pretrained"))
    p.add_argument("--speaker", default="kokoro_en_af_nicole")
    p.add_argument("--clips", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    folder = ROOT / "metatts/eval_speakers" / args.speaker
    files = sorted(folder.glob("*.flac"))[: args.clips]
    clips = [make_clip(audio.load_audio(f), audio.SAMPLE_RATE,
                       f.with_suffix(".txt").read_text().strip(), f.stem) for f in files]
    speech = sum(c.seconds for c in clips)
    base = load_base("pretrained", args.checkpoint)
    shipped = with_changes(default_settings("pretrained", base, "encoder"), steps=args.steps)
    whole = with_changes(shipped, piece_frames=0)
    other = "float32" if shipped.precision == "bfloat16" else "bfloat16"
    fused, native = layers.fused_attention, layers._NATIVE_CONV
    text_states, waste = metatts.adapt.fixed_text_states, metatts.adapt.PIECE_WASTE
    inner = sys.modules["metatts.meta.inner_loop"]
    fusable = inner.fusable

    def use(path: str) -> AdaptSettings:
        layers.fused_attention = {"before": lambda q: False,
                                  "last": lambda q: not layers.needs_higher_order(q)
                                  }.get(path, fused)
        layers._NATIVE_CONV = native if path != "before" else False
        metatts.adapt.split_collate = (split_collate if path != "before" else
                                       lambda items, waste=0.0, stats=None: collate(items))
        metatts.adapt.fixed_text_states = (text_states if path not in ("before", "last") else
                                           lambda model, items, *rest: list(items))
        metatts.adapt.PIECE_WASTE = waste if path != "last" else 0.1
        # Adam fused everywhere but ``written`` and the paths of the code before it
        inner.fusable = (fusable if path in ("now", "no_frames", other, "whole")
                         else lambda *args, **kwargs: False)
        if path == "last":
            return shipped
        if path == "no_frames":
            return with_changes(shipped, frames=False)
        if path == other:
            return with_changes(shipped, precision=other)
        return shipped if path in ("now", "written") else with_changes(whole, precision="float32")

    seconds: dict[str, list[float]] = {"now": [], "written": [], "no_frames": [], "last": [],
                                       other: [], "whole": [], "before": []}
    losses: dict[str, float] = {}
    for path in seconds:  # warm-up
        adapt(clips, base, use(path))
    for _ in range(args.rounds):
        for path in seconds:
            result = adapt(clips, base, use(path))
            seconds[path].append(result.seconds)
            losses[path] = result.final_loss
    settings = use("now")
    out = {"clips": len(clips), "speech_seconds": round(speech, 2), "steps": args.steps,
           "settings": settings.to_dict(), "cpu": torch.backends.cpu.get_cpu_capability(),
           "seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
           "best": {k: round(min(v), 3) for k, v in seconds.items()},
           "speedup": round(min(seconds["before"]) / min(seconds["now"]), 2),
           "speedup_last": round(min(seconds["last"]) / min(seconds["now"]), 2),
           # paired: the ratio in each round (the two run back to back), then the median
           "ratio_to_last": round(statistics.median(
               n / p for n, p in zip(seconds["now"], seconds["last"])), 3),
           "ratio_to_written": round(statistics.median(
               n / w for n, w in zip(seconds["now"], seconds["written"])), 3),
           "speedup_pieces": round(min(seconds["whole"]) / min(seconds["now"]), 2),
           "speedup_precision": round(min(seconds[other]) / min(seconds["now"]), 2),
           # what the frame bank adds (one teacher-forced pass over the clips), paired per round
           "frames_seconds": round(statistics.median(
               n - p for n, p in zip(seconds["now"], seconds["no_frames"])), 3),
           "final_loss": losses}
    print(f"{len(clips)} clips ({speech:.1f} s of speech) x {args.steps} steps, encoder start, "
          f"CPU {out['cpu']}")
    for path, values in seconds.items():
        print(f"  {path:6s}: best {min(values):.2f} s of {', '.join(f'{v:.2f}' for v in values)}"
              f"  (final support loss {losses[path]:.4f})")
    print(f"  now / written per round (median): {out['ratio_to_written']}")
    print(f"  now / last per round (median): {out['ratio_to_last']}; the frame bank adds "
          f"{out['frames_seconds']:.2f} s (now - no_frames per round, median)")
    print(f"  speedup {out['speedup']}x over before, {out['speedup_last']}x over last, "
          f"{out['speedup_pieces']}x over whole clips, "
          f"{out['speedup_precision']}x over {other}; "
          "target 5 s: "
          f"{'met' if min(seconds['now']) <= 5 else 'NOT met'}")
    if abs(losses["whole"] - losses["before"]) > 1e-3:
        print("  WARNING: whole and before ended at different losses", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

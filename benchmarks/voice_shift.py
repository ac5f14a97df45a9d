"""What a pitch / formant shift costs in naturalness and intelligibility, and how far it moves a voice.

Renders a few sentences with some of Kokoro's English *training* voices, applies a grid of Praat
"Change gender" shifts (metatts.corpus.shift) and prints, per shift: DNSMOS P.835 OVRL, Whisper
base WER, and the ECAPA cosine of the shifted clip to the unshifted one (a report only: nothing here
selects training data by ECAPA; the corpus's shift ranges are chosen on DNSMOS and WER).

    python benchmarks/voice_shift.py [--voices af_heart,am_liam,...] [--sentences 3] [--out F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.audio import SAMPLE_RATE, load_audio  # noqa: E402
from metatts.corpus.engines import Voice, render  # noqa: E402
from metatts.corpus.sentences import sentences  # noqa: E402
from metatts.corpus.shift import Shift, apply_shift  # noqa: E402
from metatts.corpus.voices import KOKORO_EN  # noqa: E402

FORMANTS = (0.85, 0.90, 0.95, 1.0, 1.05, 1.10, 1.15)
PITCHES = (0.80, 0.87, 1.0, 1.15, 1.25)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voices", default="af_heart,af_sky,am_liam,bm_george")
    p.add_argument("--sentences", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results/voice_shift.json"))
    args = p.parse_args(argv)

    from eval.metrics import pooled_wer
    from eval.naturalness import dnsmos
    from metatts.asr import transcribe
    from metatts.speaker import embed

    texts = [s.text for s in sentences("voice-shift", args.sentences, long_share=0.3)]
    base: list[tuple[str, str, np.ndarray]] = []  # (voice, text, wav at SAMPLE_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.voices.split(","):
            paths = [Path(tmp) / f"{name}_{i}.wav" for i in range(len(texts))]
            render(Voice("kokoro-en", name, name, KOKORO_EN, group="natural"), texts, paths)
            base += [(name, t, load_audio(p, SAMPLE_RATE)) for t, p in zip(texts, paths, strict=True)]
    ref_emb = embed([w for _, _, w in base], SAMPLE_RATE)
    rows = []
    for formant in FORMANTS:
        for pitch in PITCHES:
            shift = Shift(formant, pitch)
            wavs = [apply_shift(w, SAMPLE_RATE, shift) for _, _, w in base]
            mos = [n.ovrl for n in dnsmos(wavs, SAMPLE_RATE)]
            hyps = transcribe(wavs, SAMPLE_RATE, model="base")
            cos = (embed(wavs, SAMPLE_RATE) * ref_emb).sum(-1)
            row = {"formant": formant, "pitch": pitch, "dnsmos_ovrl": round(float(np.mean(mos)), 3),
                   "wer": round(pooled_wer([t for _, t, _ in base], hyps), 4),
                   "ecapa_to_unshifted": round(float(cos.mean()), 3), "clips": len(wavs)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"voices": args.voices.split(","), "texts": texts,
                                    "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

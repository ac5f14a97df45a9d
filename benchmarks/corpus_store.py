"""What the corpus store's Opus round trip costs: restored against rendered clips.

Takes the first clips of the natural speakers in a built corpus, sends each through
metatts.corpus.store's encode/decode, and prints: the store's bit rate; the mean absolute log-mel
difference (over all bins, and over bins within 30 dB of the clip's peak), beside the model's own
training mel loss for scale; Whisper base WER of rendered and of restored audio (pooled); ECAPA
cosine of each restored clip to its rendered one; DNSMOS OVRL of both. A report only.

    python benchmarks/corpus_store.py --corpus data/corpus [--clips 24] [--out results/corpus_store.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.audio import SAMPLE_RATE, load_audio, mel_spectrogram  # noqa: E402
from metatts.corpus import store  # noqa: E402
from metatts.corpus.manifest import read_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--clips", type=int, default=24, help="clips, spread over the speakers")
    p.add_argument("--out", type=Path, default=Path("results/corpus_store.json"))
    args = p.parse_args(argv)

    from eval.metrics import pooled_wer
    from eval.naturalness import dnsmos
    from metatts.asr import transcribe
    from metatts.speaker import embed

    natural = [c for c in read_manifest(args.corpus) if c.engine in store.STORED_ENGINES]
    speakers = sorted({c.speaker for c in natural})
    per = max(1, -(-args.clips // len(speakers)))
    chosen = [c for s in speakers for c in [c for c in natural if c.speaker == s][:per]][:args.clips]
    rendered = [load_audio(args.corpus / c.audio, SAMPLE_RATE) for c in chosen]
    sizes, restored = [], []
    for wav in rendered:
        data = store.encode(wav)
        sizes.append(len(data))
        restored.append(store.decode(data, len(wav)))
    seconds = sum(len(w) for w in rendered) / SAMPLE_RATE
    l1_all, l1_loud = [], []
    for a, b in zip(rendered, restored, strict=True):
        ma, mb = mel_spectrogram(torch.from_numpy(a)), mel_spectrogram(torch.from_numpy(b))
        loud = ma > ma.max() - 6.9
        l1_all.append(float((ma - mb).abs().mean()))
        l1_loud.append(float((ma - mb).abs()[loud].mean()))
    texts = [c.text for c in chosen]
    cos = (embed(rendered, SAMPLE_RATE) * embed(restored, SAMPLE_RATE)).sum(-1)
    out = {
        "clips": len(chosen), "speakers": len({c.speaker for c in chosen}),
        "seconds": round(seconds, 1), "kbit_per_s": round(sum(sizes) * 8 / seconds / 1000, 1),
        "mel_l1_all_bins": round(float(np.mean(l1_all)), 4),
        "mel_l1_within_30db": round(float(np.mean(l1_loud)), 4),
        "wer_rendered": round(pooled_wer(texts, transcribe(rendered, SAMPLE_RATE, model="base")), 4),
        "wer_restored": round(pooled_wer(texts, transcribe(restored, SAMPLE_RATE, model="base")), 4),
        "ecapa_restored_to_rendered": {"mean": round(float(cos.mean()), 4),
                                       "min": round(float(cos.min()), 4)},
        "dnsmos_ovrl_rendered": round(float(np.mean([d.ovrl for d in dnsmos(rendered, SAMPLE_RATE)])), 3),
        "dnsmos_ovrl_restored": round(float(np.mean([d.ovrl for d in dnsmos(restored, SAMPLE_RATE)])), 3),
        "store": {"rate": store.STORE_RATE, "level": store.STORE_LEVEL},
    }
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

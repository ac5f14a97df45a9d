"""Can Kokoro speak new voices beyond blends? A probe of voices drawn from the packs' span.

The test voices lie outside the convex hull of the 17 training packs (``benchmarks/pack_span.py``:
timbre residual 0.642), and only linear combinations with the 26 non-English packs, which blends
are not, come closer (0.479). This draws ``--voices`` voices at random from a Gaussian over that
span: style = m + sum_i z_i (p_i - m) / sqrt(N), z ~ N(0, 1), over the N = 43 training and
non-English packs (never a test or validation pack), m their mean; a voice is a whole (510, 256)
style table, so it is a linear combination of packs whose weights sum to 1, some negative: the
voices `python -m metatts corpus --span-speakers N` renders (kokoro_packs.span_style). Each
speaks ``--sentences`` fixed sentences as the corpus renders it (its own rate; odd voices with a
UK accent), and the clips are scored as a report: Whisper base WER, DNSMOS OVRL, ECAPA between a
voice's own clips and between voices. No figure
here selects anything; the question is only whether such voices are intelligible, natural and
distinct enough to be worth rendering as training speakers.

    python benchmarks/span_voices.py [--voices 4] [--seed 0] [--out results/span_voices.json]

Needs the generator venv and the Kokoro packs (`sudo bash scripts/install_corpus_engines.sh`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.corpus import engines, kokoro_packs  # noqa: E402
from metatts.corpus.voices import span_accent, span_voices  # noqa: E402

SENTENCES = ("The old man walked slowly along the river bank in the morning light.",
             "Could you send me the report before Friday afternoon?",
             "Seven bright kites were flying high above the quiet village.",
             "She bought three oranges, a loaf of bread and some cheese.")


def span_styles(count: int, seed: int) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """The basis packs' names and the style tables (510, 1, 256) of span voices 0..count-1 of
    ``seed``: the voices the corpus's ``--span-speakers`` renders (kokoro_packs.span_style)."""
    return kokoro_packs.span_basis(), [kokoro_packs.span_style(seed, i).reshape(510, 1, 256)
                                       for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voices", type=int, default=4)
    p.add_argument("--sentences", type=int, default=3, choices=range(1, len(SENTENCES) + 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/span_voices.json"))
    args = p.parse_args(argv)
    if kokoro_packs.missing():
        raise SystemExit(kokoro_packs.missing())
    why = engines.unavailable(span_voices(1, args.seed)[0])
    if why:
        raise SystemExit(why)

    from eval.metrics import wer
    from eval.scorer import Scorer
    from metatts.audio import load_audio

    texts = SENTENCES[: args.sentences]
    basis = kokoro_packs.span_basis()
    voices_ = span_voices(args.voices, args.seed)  # as the corpus renders them: own rate, accent
    work = Path(tempfile.mkdtemp(prefix="span-voices-"))
    started = time.perf_counter()
    for i, voice in enumerate(voices_):
        engines.render(voice, texts, [work / f"voice{i}_{j}.wav" for j in range(len(texts))])
    render_s = time.perf_counter() - started
    keys = [(i, j) for i in range(len(voices_)) for j in range(len(texts))]
    wavs = [load_audio(work / f"voice{i}_{j}.wav", 16000) for i, j in keys]
    measured = Scorer(asr_model="base", ge2e=False).measure(wavs, 16000)
    emb = np.stack([m.ecapa for m in measured])
    sim = emb @ emb.T
    voices = []
    for i, voice in enumerate(voices_):
        own = [k for k, key in enumerate(keys) if key[0] == i]
        others = [k for k, key in enumerate(keys) if key[0] != i]
        voices.append({
            "voice": voice.voice_id, "speaker": voice.speaker, "speed": voice.speed,
            "accent": span_accent(i),
            "wer": [round(wer(texts[keys[k][1]], measured[k].transcript), 3) for k in own],
            "dnsmos": [round(measured[k].mos, 2) for k in own],
            "transcripts": [measured[k].transcript for k in own],
            "ecapa_within": round(float(np.mean([sim[a, b] for a in own for b in own if a < b])),
                                  3) if len(own) > 1 else None,
            "ecapa_to_other_voices": round(float(np.mean(sim[np.ix_(own, others)])), 3)
            if others else None})
    report = {"basis": basis, "seed": args.seed, "sentences": list(texts),
              "render_seconds": round(render_s, 1), "voices": voices,
              "mean": {"wer": round(float(np.mean([w for v in voices for w in v["wer"]])), 3),
                       "dnsmos": round(float(np.mean([d for v in voices for d in v["dnsmos"]])),
                                       2)}}
    text = json.dumps(report, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

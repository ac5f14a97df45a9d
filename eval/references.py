"""Reference rows, measured on the same test clips as the methods.

- ``real``: the real recordings. WER = Whisper on the ground truth; ``secs`` = mean ECAPA cosine
  of a real clip to the speaker's *other* real test clips (the ceiling); ``secs_floor`` = mean
  cosine to the other speakers' real test clips (the floor).
- ``vocoded``: each real clip resynthesized by the HiFi-GAN vocoder from its own mel (copy
  synthesis), scored like a synthesized clip (``secs`` against the speaker's other real clips).
"""

from __future__ import annotations

import torch

from eval import metrics
from eval.grid import Task
from eval.runner import Loader, Vocoder
from eval.scorer import Scorer
from metatts import audio

KINDS = ("real", "vocoded")


def reference_records(tasks: list[Task], scorer: Scorer, loader: Loader,
                      vocoder: Vocoder | None = None,
                      problems: list[str] | None = None) -> list[dict]:
    """One record per (kind, real test clip). A clip whose audio cannot be decoded is left out
    and named in ``problems``."""
    if vocoder is None:
        from metatts.vocoder import load_vocoder

        vocoder = load_vocoder()
    clips = {u.id: u for t in tasks for u in t.test}
    utts, real = [], []
    for u in sorted(clips.values(), key=lambda u: (u.speaker, u.id)):
        try:
            real.append(loader.wav(u))
        except audio.AudioError as err:
            if problems is not None:
                problems.append(f"reference clip {u.id}: left out ({err})")
            continue
        utts.append(u)
    if not utts:
        return []
    with torch.inference_mode():
        vocoded = [vocoder(torch.as_tensor(audio.mel_spectrogram(w)).float()).float().numpy()
                   for w in real]
    emb_real = scorer.embed(real, audio.SAMPLE_RATE)  # (N, D)
    speakers = [u.speaker for u in utts]
    out = []
    for kind, wavs in (("real", real), ("vocoded", vocoded)):
        texts = [u.text for u in utts]
        scores = scorer.clips(wavs, audio.SAMPLE_RATE, texts, None, audio.SAMPLE_RATE)
        emb = emb_real if kind == "real" else scorer.embed(wavs, audio.SAMPLE_RATE)
        cos = emb @ emb_real.T  # (N, N)
        mos = scorer.mos(wavs, audio.SAMPLE_RATE)
        for i, (u, score) in enumerate(zip(utts, scores)):
            same = [j for j, s in enumerate(speakers) if s == u.speaker and j != i]
            other = [j for j, s in enumerate(speakers) if s != u.speaker]
            errors, words = metrics.word_errors(u.text, score.transcript)
            out.append({
                "kind": kind, "speaker": u.speaker, "id": u.id, "text": u.text,
                "transcript": score.transcript, "wer": score.wer, "errors": errors,
                "words": words, "mos": mos[i],
                "secs": float(cos[i, same].mean()) if same else None,
                "secs_floor": float(cos[i, other].mean()) if other else None,
            })
    return out

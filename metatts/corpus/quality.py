"""How good and how distinct the corpus voices are: Whisper WER per engine and voice, and ECAPA
cosine between speakers, on a fixed sample of each voice's first clips.

Metrics as defined in eval/metrics.py: WER after Whisper's English normalizer, pooled over the
sampled clips; speaker similarity is the cosine of unit-norm ECAPA (spkrec-ecapa-voxceleb)
embeddings, averaged over all clip pairs of two speakers (within a speaker: over distinct pairs).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from metatts.audio import SAMPLE_RATE, load_audio
from metatts.corpus.manifest import Clip

DISTINCT_BELOW = 0.8  # two corpus speakers with a higher mean ECAPA cosine are not distinct
UNDERSTOOD_BELOW = 0.5  # a voice with a higher WER is flagged: Whisper cannot follow it


@dataclass(frozen=True)
class QualityReport:
    clips_per_voice: int  # the first n clips of every voice were scored
    asr_model: str
    wer_by_engine: dict[str, float]  # pooled WER
    wer_by_voice: dict[str, float]  # key "engine:voice_id"
    poorly_understood: list[str]  # voices with WER at or above UNDERSTOOD_BELOW
    within_speaker: float  # mean ECAPA cosine of two clips of one speaker
    between_speakers: float  # mean ECAPA cosine of two clips of different speakers
    closest_pairs: list[tuple[str, str, float]]  # the 10 most similar speaker pairs, highest first
    not_distinct: list[tuple[str, str, float]]  # pairs at or above DISTINCT_BELOW


def sample(clips: Sequence[Clip], per_voice: int) -> list[Clip]:
    """The first ``per_voice`` clips (manifest order) of every engine voice."""
    taken: dict[tuple[str, str], int] = {}
    out = []
    for clip in clips:
        key = (clip.engine, clip.voice)
        if taken.get(key, 0) < per_voice:
            taken[key] = taken.get(key, 0) + 1
            out.append(clip)
    return out


def assess(root: str | Path, clips: Sequence[Clip], per_voice: int = 4, asr_model: str = "base",
           on_progress: Callable[[int], None] | None = None) -> QualityReport:
    """Score ``per_voice`` clips of every voice in the corpus at ``root``."""
    from eval.metrics import pooled_wer  # the project's one WER definition
    from metatts.asr import transcribe
    from metatts.speaker import embed

    chosen = sample(clips, per_voice)
    wavs = [load_audio(Path(root) / clip.audio, SAMPLE_RATE) for clip in chosen]
    hypotheses = []
    for wav in wavs:  # one at a time: in a batch, one clip Whisper loops on stalls all the others
        hypotheses += transcribe(wav, SAMPLE_RATE, model=asr_model)
        if on_progress is not None:
            on_progress(1)
    wer_by_engine = _pooled(chosen, hypotheses, lambda c: c.engine, pooled_wer)
    wer_by_voice = _pooled(chosen, hypotheses, lambda c: f"{c.engine}:{c.voice}", pooled_wer)

    emb = embed(wavs, SAMPLE_RATE)  # (N, 192) unit-norm
    cos = emb @ emb.T  # (N, N)
    speakers = sorted({clip.speaker for clip in chosen})
    rows = {s: [i for i, c in enumerate(chosen) if c.speaker == s] for s in speakers}
    within = [float(cos[i, j]) for idx in rows.values() for i, j in itertools.combinations(idx, 2)]
    pairs = sorted(((a, b, round(float(cos[rows[a]][:, rows[b]].mean()), 3))
                    for a, b in itertools.combinations(speakers, 2)), key=lambda p: -p[2])
    between = [float(cos[i, j]) for a, b, _ in pairs for i in rows[a] for j in rows[b]]
    return QualityReport(
        clips_per_voice=per_voice, asr_model=asr_model, wer_by_engine=wer_by_engine,
        wer_by_voice=wer_by_voice,
        poorly_understood=[v for v, w in wer_by_voice.items() if w >= UNDERSTOOD_BELOW],
        within_speaker=round(sum(within) / max(1, len(within)), 3),
        between_speakers=round(sum(between) / max(1, len(between)), 3),
        closest_pairs=pairs[:10], not_distinct=[p for p in pairs if p[2] >= DISTINCT_BELOW])


def _pooled(clips: Sequence[Clip], hypotheses: Sequence[str], key: Callable[[Clip], str],
            pooled_wer: Callable[[list[str], list[str]], float]) -> dict[str, float]:
    groups: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(key(clip), []).append(i)
    return {name: round(pooled_wer([clips[i].text for i in idx], [hypotheses[i] for i in idx]), 3)
            for name, idx in groups.items()}

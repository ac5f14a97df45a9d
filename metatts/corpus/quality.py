"""How good and how distinct the corpus voices are, on a fixed sample of each voice's first clips.

Per group and role (natural test / val / train base voices, blends with and without a shift, the
engine voices) and per base voice: Whisper WER (eval/metrics.py: Whisper's English normalizer,
pooled over the sampled clips) and DNSMOS P.835 OVRL. Per speaker: median F0 (Praat) and its
nearest other speaker. Coverage: for each test-only voice (and real recorded voices given with
``extra``), its nearest *training* speaker. Speaker similarity is the cosine of unit-norm ECAPA
(spkrec-ecapa-voxceleb) centroids of the sampled clips. ECAPA is the benchmark's judge, so these
figures are a report only: nothing in the corpus is selected or tuned by them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metatts.audio import SAMPLE_RATE, load_audio
from metatts.corpus.manifest import Clip
from metatts.corpus.voices import is_drawn

DISTINCT_BELOW = 0.8  # two corpus speakers with a higher mean ECAPA cosine are not distinct
UNDERSTOOD_BELOW = 0.5  # a voice with a higher WER is flagged: Whisper cannot follow it


@dataclass(frozen=True)
class QualityReport:
    clips_per_voice: int  # the first n clips of every voice were scored
    clips_per_blend: int  # ... and of every blended voice
    asr_model: str
    wer_by_engine: dict[str, float]  # pooled WER
    wer_by_voice: dict[str, float]  # key "engine:voice_id" (blends are pooled under "role")
    wer_by_role: dict[str, float]  # "natural/test", "natural/virtual_shifted", "engine", ...
    dnsmos_by_voice: dict[str, float]  # mean OVRL per base voice ("engine:voice_id")
    dnsmos_by_role: dict[str, float]
    poorly_understood: list[str]  # voices with WER at or above UNDERSTOOD_BELOW
    median_f0: dict[str, float]  # per speaker, Hz (0: nothing voiced)
    within_speaker: float  # mean ECAPA cosine of two clips of one speaker
    between_speakers: float  # mean ECAPA cosine of two clips of different speakers
    nearest: dict[str, tuple[str, float]]  # speaker -> its most similar other speaker (centroids)
    nearest_median: dict[str, float]  # per role: median of the speakers' nearest-other cosine
    coverage: dict[str, tuple[str, float]]  # test voice -> nearest training speaker (centroids)
    closest_pairs: list[tuple[str, str, float]]  # the 10 most similar speaker pairs, highest first
    not_distinct: list[tuple[str, str, float]]  # pairs at or above DISTINCT_BELOW


def sample(clips: Sequence[Clip], per_voice: int, per_blend: int | None = None) -> list[Clip]:
    """The first ``per_voice`` clips (manifest order) of every engine voice; of a blended voice
    (a voice id with "+") or span voice the first ``per_blend`` (default ``per_voice``)."""
    per_blend = per_voice if per_blend is None else per_blend
    taken: dict[tuple[str, str], int] = {}
    out = []
    for clip in clips:
        key = (clip.engine, clip.voice)
        if taken.get(key, 0) < (per_blend if is_drawn(clip.engine, clip.voice) else per_voice):
            taken[key] = taken.get(key, 0) + 1
            out.append(clip)
    return out


def role(clip: Clip) -> str:
    """The row a clip is reported in: "natural/<test|val|train|virtual[_shifted]|span>" or
    "engine"."""
    if clip.group != "natural":
        return "engine"
    if clip.engine == "kokoro-span":
        return "natural/span"
    if clip.split == "train" and "+" in clip.voice:
        shifted = (clip.formant, clip.pitch) != (1.0, 1.0)
        return "natural/virtual_shifted" if shifted else "natural/virtual"
    return f"natural/{clip.split}"


def transcripts(wavs: Sequence[np.ndarray], keys: Sequence[str], asr_model: str,
                cache: str | Path | None, on_progress: Callable[[int], None] | None,
                transcribe: Callable[..., list[str]]) -> list[str]:
    """Whisper's transcript of each clip, one at a time (in a batch, one clip Whisper loops on
    stalls all the others). With ``cache``, transcripts of the same (clip ``key``, model, length
    in samples) already in the file are reused; each new one is appended as soon as it is made."""
    known: dict[tuple[str, str, int], str] = {}
    if cache is not None and Path(cache).is_file():
        text = Path(cache).read_text()
        if text and not text.endswith("\n"):
            with open(cache, "a") as f:
                f.write("\n")  # end the line a kill cut short, so that the next one is whole
        for line in text.splitlines():
            try:
                row = json.loads(line)
                known[(row["audio"], row["model"], int(row["samples"]))] = row["text"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill: transcribed again
    out = []
    for wav, key in zip(wavs, keys, strict=True):
        slot = (key, asr_model, len(wav))
        if slot not in known:
            known[slot] = transcribe(wav, SAMPLE_RATE, model=asr_model)[0]
            if cache is not None:
                with open(cache, "a") as f:
                    f.write(json.dumps({"audio": key, "model": asr_model, "samples": len(wav),
                                        "text": known[slot]}) + "\n")
        out.append(known[slot])
        if on_progress is not None:
            on_progress(1)
    return out


def assess(root: str | Path, clips: Sequence[Clip], per_voice: int = 4, asr_model: str = "base",
           on_progress: Callable[[int], None] | None = None,
           extra: Sequence[tuple[str, Path]] = (), per_blend: int | None = None,
           transcript_cache: str | Path | None = None) -> QualityReport:
    """Score ``per_voice`` clips of every voice in the corpus at ``root`` (``per_blend`` of every
    blended voice, default the same). ``extra`` adds
    (speaker, audio file) pairs of voices outside the corpus (a real person's recordings) to the
    coverage figures. Whisper is most of the time (about 5 s a clip on 2 cores): with
    ``transcript_cache`` (a JSON-lines file) every transcript is kept as it is made, and a run
    after a kill transcribes only the clips not in it."""
    from eval.metrics import pooled_wer  # the project's one WER definition
    from eval.naturalness import dnsmos
    from metatts.asr import transcribe
    from metatts.corpus.shift import median_f0
    from metatts.speaker import embed

    per_blend = per_voice if per_blend is None else per_blend
    chosen = sample(clips, per_voice, per_blend)
    wavs = [load_audio(Path(root) / clip.audio, SAMPLE_RATE) for clip in chosen]
    hypotheses = transcripts(wavs, [c.audio for c in chosen], asr_model, transcript_cache,
                             on_progress, transcribe)
    base = [i for i, c in enumerate(chosen) if not is_drawn(c.engine, c.voice)]
    mos = [n.ovrl for n in dnsmos(wavs, SAMPLE_RATE)]

    def by(key: Callable[[Clip], str], idx: Sequence[int]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i in idx:
            groups.setdefault(key(chosen[i]), []).append(i)
        return groups

    def wer_of(groups: dict[str, list[int]]) -> dict[str, float]:
        return {k: round(pooled_wer([chosen[i].text for i in v], [hypotheses[i] for i in v]), 3)
                for k, v in sorted(groups.items())}

    def mos_of(groups: dict[str, list[int]]) -> dict[str, float]:
        return {k: round(float(np.mean([mos[i] for i in v])), 3) for k, v in sorted(groups.items())}

    everything = range(len(chosen))
    voice_key = lambda c: f"{c.engine}:{c.voice}"  # noqa: E731
    wer_by_voice = wer_of(by(voice_key, base))

    extra_wavs = [load_audio(path, SAMPLE_RATE) for _, path in extra]
    emb = embed(wavs + extra_wavs, SAMPLE_RATE).numpy()  # (N, 192) unit-norm
    speaker_of = [c.speaker for c in chosen] + [name for name, _ in extra]
    speakers = sorted(set(speaker_of))
    rows = {s: [i for i, name in enumerate(speaker_of) if name == s] for s in speakers}
    cos = emb @ emb.T
    within = [float(cos[i, j]) for idx in rows.values() for i, j in itertools.combinations(idx, 2)]
    centroid = np.stack([emb[rows[s]].mean(0) for s in speakers])
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    ccos = centroid @ centroid.T
    np.fill_diagonal(ccos, -np.inf)
    nearest = {s: (speakers[int(ccos[k].argmax())], round(float(ccos[k].max()), 3))
               for k, s in enumerate(speakers)}
    split = {c.speaker: c.split for c in chosen} | {name: "test" for name, _ in extra}
    speaker_role = {c.speaker: role(c) for c in chosen} | {name: "real" for name, _ in extra}
    training = [k for k, s in enumerate(speakers) if split[s] == "train"]
    coverage = {}
    for k, s in enumerate(speakers):
        if split[s] == "test" and training:
            best = training[int(ccos[k, training].argmax())]
            coverage[s] = (speakers[best], round(float(ccos[k, best]), 3))
    nearest_median = {}
    for r in sorted(set(speaker_role.values())):
        values = [nearest[s][1] for s in speakers if speaker_role[s] == r]
        nearest_median[r] = round(float(np.median(values)), 3)
    corpus_speakers = sorted({c.speaker for c in chosen})
    pairs = sorted(((a, b, round(float(cos[rows[a]][:, rows[b]].mean()), 3))
                    for a, b in itertools.combinations(corpus_speakers, 2)), key=lambda p: -p[2])
    between = [float(cos[i, j]) for a, b, _ in pairs for i in rows[a] for j in rows[b]]
    f0 = {}
    for s in corpus_speakers:
        values = [median_f0(wavs[i], SAMPLE_RATE) for i in rows[s]]
        f0[s] = round(float(np.median(values)), 1)
    return QualityReport(
        clips_per_voice=per_voice, clips_per_blend=per_blend, asr_model=asr_model,
        wer_by_engine=wer_of(by(lambda c: c.engine, everything)), wer_by_voice=wer_by_voice,
        wer_by_role=wer_of(by(role, everything)), dnsmos_by_voice=mos_of(by(voice_key, base)),
        dnsmos_by_role=mos_of(by(role, everything)),
        poorly_understood=[v for v, w in wer_by_voice.items() if w >= UNDERSTOOD_BELOW],
        median_f0=f0, within_speaker=round(sum(within) / max(1, len(within)), 3),
        between_speakers=round(sum(between) / max(1, len(between)), 3), nearest=nearest,
        nearest_median=nearest_median, coverage=coverage, closest_pairs=pairs[:10],
        not_distinct=[p for p in pairs if p[2] >= DISTINCT_BELOW])

"""The real test clips: their embeddings (the similarity references of every synthesized clip,
measured once and kept on disk) and the reference rows, measured on the same clips as the methods.

- ``real``: the real recordings. WER = Whisper on the ground truth; ``secs`` = mean ECAPA cosine
  of a real clip to the speaker's *other* real test clips (the ceiling); ``secs_floor`` = mean
  cosine to the other speakers' real test clips, of every group (the floor). ``secs_ge2e`` and
  ``secs_ge2e_floor``: the same with GE2E.
- ``vocoded``: each real clip resynthesized by the HiFi-GAN vocoder from its own mel (copy
  synthesis), scored like a synthesized clip (against the speaker's other real clips).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eval import metrics
from eval.grid import Task
from eval.runner import Loader, Vocoder, read_results, vocoder_path
from eval.scorer import Scorer
from metatts import audio
from metatts.data.utterance import Utterance

KINDS = ("real", "vocoded")
EMBEDDINGS = "reference_embeddings.npz"
RECORDS = "references.jsonl"


@dataclass(frozen=True)
class Bank:
    """Embeddings of the real test clips, by clip id."""

    ids: tuple[str, ...]
    ecapa: np.ndarray  # (N, 192)
    ge2e: np.ndarray | None  # (N, 256); None without GE2E

    def rows(self, ids: list[str]) -> list[int]:
        """Row numbers of ``ids``; AudioError names a clip that is not in the bank (it could not
        be read)."""
        where = {i: n for n, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise audio.AudioError(f"reference clip {missing[0]} could not be read")
        return [where[i] for i in ids]

    def of(self, task: Task, which: str) -> np.ndarray | None:
        """(M, D) embeddings of the task's real test clips by ``which`` encoder ("ecapa" or
        "ge2e"); None for GE2E when it is not available."""
        table = self.ecapa if which == "ecapa" else self.ge2e
        return None if table is None else table[self.rows([u.id for u in task.test])]


def real_test_clips(tasks: list[Task], loader: Loader,
               problems: list[str] | None = None) -> list[Utterance]:
    """Every task's real test clips that decode, sorted by (speaker, id); the others are named in
    ``problems``."""
    clips = {u.id: u for t in tasks for u in t.test}
    out = []
    for u in sorted(clips.values(), key=lambda u: (u.speaker, u.id)):
        try:
            loader.wav(u)
        except audio.AudioError as err:
            if problems is not None:
                problems.append(f"reference clip {u.id}: left out ({err})")
            continue
        out.append(u)
    return out


def embedding_bank(utts: list[Utterance], scorer: Scorer, loader: Loader,
                   cache: Path | None = None) -> Bank:
    """ECAPA (and GE2E) embeddings of ``utts``, read from ``cache`` (an .npz) when it holds them
    all with the same judges, else measured and written there."""
    ids = tuple(u.id for u in utts)
    want_ge2e = not scorer.ge2e_missing()
    if cache is not None and cache.is_file():
        with np.load(cache) as f:
            have = {str(i): n for n, i in enumerate(f["ids"])}
            if set(ids) <= set(have) and ("ge2e" in f) == want_ge2e:
                rows = [have[i] for i in ids]
                return Bank(ids, f["ecapa"][rows], f["ge2e"][rows] if want_ge2e else None)
    wavs = [loader.wav(u) for u in utts]
    bank = Bank(ids, scorer.embed(wavs, audio.SAMPLE_RATE) if wavs else np.zeros((0, 192)),
                scorer.embed_ge2e(wavs, audio.SAMPLE_RATE) if wavs else None)
    if cache is not None:
        extra = {} if bank.ge2e is None else {"ge2e": bank.ge2e}
        np.savez(cache, ids=np.asarray(ids), ecapa=bank.ecapa, **extra)
    return bank


def _cosines(emb: np.ndarray | None, bank: np.ndarray | None, speakers: list[str], i: int,
             speaker: str) -> tuple[float | None, float | None]:
    """(mean cosine to the speaker's other real clips, to other speakers' real clips)."""
    if emb is None or bank is None:
        return None, None
    from eval.score import mean_cosine

    same = [j for j, s in enumerate(speakers) if s == speaker and j != i]
    other = [j for j, s in enumerate(speakers) if s != speaker]
    return (float(mean_cosine(emb[None], bank[same])[0]) if same else None,
            float(mean_cosine(emb[None], bank[other])[0]) if other else None)


def reference_records(utts: list[Utterance], bank: Bank, groups: dict[str, str], scorer: Scorer,
                      loader: Loader, vocoder: Vocoder | None = None) -> list[dict]:
    """One record per (kind, real test clip)."""
    if not utts:
        return []
    if vocoder is None:
        from metatts.vocoder import load_vocoder

        vocoder = load_vocoder()
    real = [loader.wav(u) for u in utts]
    with torch.inference_mode():
        vocoded = [vocoder(torch.as_tensor(audio.mel_spectrogram(w)).float()).float().numpy()
                   for w in real]
    rows = bank.rows([u.id for u in utts])
    ecapa_real = bank.ecapa[rows]
    ge2e_real = None if bank.ge2e is None else bank.ge2e[rows]
    speakers = [u.speaker for u in utts]
    out = []
    for kind, wavs in (("real", real), ("vocoded", vocoded)):
        transcripts = scorer.transcribe(wavs, audio.SAMPLE_RATE)
        ecapa = ecapa_real if kind == "real" else scorer.embed(wavs, audio.SAMPLE_RATE)
        ge2e = ge2e_real if kind == "real" else scorer.embed_ge2e(wavs, audio.SAMPLE_RATE)
        mos = scorer.mos(wavs, audio.SAMPLE_RATE)
        for i, (u, transcript) in enumerate(zip(utts, transcripts)):
            secs, floor = _cosines(ecapa[i], ecapa_real, speakers, i, u.speaker)
            secs_ge2e, floor_ge2e = _cosines(None if ge2e is None else ge2e[i], ge2e_real,
                                             speakers, i, u.speaker)
            errors, words = metrics.word_errors(u.text, transcript)
            out.append({
                "kind": kind, "group": groups[u.speaker], "speaker": u.speaker, "id": u.id,
                "text": u.text, "transcript": transcript, "wer": errors / words,
                "errors": errors, "words": words, "mos": mos[i], "secs": secs,
                "secs_floor": floor, "secs_ge2e": secs_ge2e, "secs_ge2e_floor": floor_ge2e,
                "ge2e": ge2e is not None,
                **({"vocoder": getattr(vocoder, "mode", None)} if kind == "vocoded" else {}),
            })
    return out


def reference_records_cached(out: Path, utts: list[Utterance], bank: Bank,
                             groups: dict[str, str], scorer: Scorer, loader: Loader,
                             vocoder: Vocoder | None) -> list[dict]:
    """references.jsonl, measured again only when the set of test clips, their groups, the
    judges or the vocoder path of the vocoded clips changed (records older than the vocoder
    field count as the default path's, as results.jsonl's do: runner.vocoder_path)."""
    path = out / RECORDS
    cached = read_results(path)
    want_ge2e = bank.ge2e is not None
    if vocoder is None:
        from metatts.vocoder import default_mode

        mode = default_mode()
    else:
        mode = getattr(vocoder, "mode", None)
    if cached and {r["id"] for r in cached} == {u.id for u in utts} and all(
            r.get("group") == groups[r["speaker"]] and r.get("ge2e") == want_ge2e
            and (r.get("kind") != "vocoded" or vocoder_path(r) == mode) for r in cached):
        return cached
    records = reference_records(utts, bank, groups, scorer, loader, vocoder)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records

"""Model inputs for an utterance (log-mel frames and token ids), cached on disk.

A cache entry is keyed by a sha256 over everything the features depend on: the audio file (path,
size and mtime_ns, or its content hash), the transcript, :class:`FeatureSettings`, the fixed mel
constants of :mod:`metatts.audio`, the symbol table (and phonemizer release) and
:data:`FEATURES_VERSION`; with ``pitch`` on, also the F0 extractor (:mod:`metatts.data.pitch`),
whose frame F0 is then stored beside the mel. (With ``pitch`` off the key is what it always was,
so existing caches stay valid.)
Change any of them and the key changes, so stale features are never read back. Entries are
safetensors files (no pickle) written atomically; an unreadable entry is recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metatts import assets, audio
from metatts.data import pitch
from metatts.data.readout import DatasetError
from metatts.data.utterance import Utterance

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when the way features are computed changes
# missing entries from which warm() starts worker processes (each costs seconds to start; a clip
# takes about 0.05 s on this project's 2-core machine)
PARALLEL_FROM = 200
TOKEN_MODES = ("phonemes", "characters")


@dataclass(frozen=True)
class FeatureSettings:
    """The choices that shape the features. (The mel settings are fixed by the vocoder and come
    from :mod:`metatts.audio`; they enter the cache key too.)"""

    tokens: str = "phonemes"  # "phonemes" or "characters", as in metatts.text.text_to_ids
    pitch: bool = False  # also extract frame F0 (metatts.data.pitch)

    def __post_init__(self):
        if self.tokens not in TOKEN_MODES:
            raise ValueError(
                f"tokens must be one of {', '.join(TOKEN_MODES)}, got {self.tokens!r}.")

    def key(self) -> dict:
        """What enters the cache key: ``pitch`` only when on (old keys stay as they were)."""
        if not self.pitch:
            return {"tokens": self.tokens}
        return {"tokens": self.tokens, "pitch": {"extractor": pitch.EXTRACTOR,
                                                 "floor": pitch.F0_FLOOR,
                                                 "ceiling": pitch.F0_CEILING,
                                                 "parselmouth": _version("praat-parselmouth")}}


@dataclass(frozen=True)
class Features:
    mel: torch.Tensor  # (N_MELS, T) float32, natural-log mel, HOP_LENGTH samples per frame
    tokens: torch.Tensor  # (L,) int64 symbol ids
    f0: torch.Tensor | None = None  # (T,) float32 Hz on the mel's frames, 0 unvoiced; with pitch


def mel_constants() -> dict:
    """The metatts.audio constants that determine a mel spectrogram."""
    names = ("SAMPLE_RATE", "N_FFT", "WIN_LENGTH", "HOP_LENGTH", "N_MELS", "F_MIN", "F_MAX",
             "LOG_CLAMP", "TARGET_DBFS")
    return {name: getattr(audio, name) for name in names}


def compute_features(utt: Utterance, settings: FeatureSettings) -> Features:
    """Uncached: prepare the clip (trim, loudness), take its log-mel, and tokenize its text."""
    wav = audio.prepare_clip(utt.audio)  # (T,) at SAMPLE_RATE
    try:
        ids = tokenize(utt.text, settings.tokens)
    except ValueError as err:  # TextError: nothing speakable in the text
        raise DatasetError(f"{utt.audio}: {err}") from None
    mel = audio.mel_spectrogram(wav).contiguous()
    f0 = pitch.extract_f0(wav, frames=mel.shape[-1]) if settings.pitch else None
    return Features(mel, torch.as_tensor(ids, dtype=torch.long), f0)


def tokenize(text: str, mode: str) -> list[int]:
    from metatts.text import text_to_ids  # imported on use

    return text_to_ids(text, mode=mode)


@functools.cache
def tokenizer_fingerprint(mode: str) -> dict:
    """What token ids depend on besides the text: the symbol table, and for phonemes the
    phonemizer and espeak-ng releases."""
    from metatts.text import SYMBOLS

    table = hashlib.sha256(json.dumps(SYMBOLS.to_dict()).encode()).hexdigest()
    if mode != "phonemes":
        return {"symbols": table}
    return {"symbols": table, "phonemizer": _version("phonemizer"),
            "espeakng-loader": _version("espeakng-loader")}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class FeatureCache:
    """``get(utt)`` returns cached features, computing and storing them on a miss.

    ``content_hash=True`` keys on the audio's sha256 instead of its size and mtime (slower; use it
    when files are copied around with their times changed).
    """

    def __init__(self, root: str | Path, settings: FeatureSettings = FeatureSettings(), *,
                 content_hash: bool = False):
        self.root, self.settings, self.content_hash = Path(root), settings, content_hash
        self.hits = self.misses = 0

    def key(self, utt: Utterance) -> str:
        try:
            stat = os.stat(utt.audio)
        except OSError as err:
            raise DatasetError(f"{utt.audio}: cannot read the audio ({err.strerror}).") from None
        source = ({"sha256": assets.sha256_file(utt.audio)} if self.content_hash else
                  {"path": str(Path(utt.audio).resolve()), "size": stat.st_size,
                   "mtime_ns": stat.st_mtime_ns})
        inputs = {"audio": source, "text": utt.text, "settings": self.settings.key(),
                  "mel": mel_constants(), "tokenizer": tokenizer_fingerprint(self.settings.tokens),
                  "version": FEATURES_VERSION}
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def path(self, utt: Utterance) -> Path:
        key = self.key(utt)
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, utt: Utterance) -> Features:
        path = self.path(utt)
        if path.is_file():
            try:
                tensors = load_file(path)
                features = Features(tensors["mel"], tensors["tokens"],
                                    tensors["f0"] if self.settings.pitch else None)
                self.hits += 1
                return features
            except (SafetensorError, OSError, KeyError) as err:
                log.warning("%s: unreadable cache entry (%s); recomputing", path, err)
        features = compute_features(utt, self.settings)
        with assets.atomic_path(path) as tmp:
            tensors = {"mel": features.mel, "tokens": features.tokens}
            if features.f0 is not None:
                tensors["f0"] = features.f0
            save_file(tensors, str(tmp),
                      metadata={"id": utt.id, "audio": str(utt.audio)})
        self.misses += 1
        return features

    def warm(self, utterances: Iterable[Utterance], jobs: int | None = None) -> dict[str, str]:
        """Compute every missing entry; returns {utterance id: error} for clips that failed.
        Many missing entries (:data:`PARALLEL_FROM` or more) are computed in ``jobs`` processes
        (default: one per core, at most 8); an explicit ``jobs`` > 1 always uses processes."""
        utterances = list(utterances)
        explicit = jobs is not None
        jobs = min(8, os.cpu_count() or 1) if jobs is None else jobs
        missing = []
        for utt in utterances:
            try:
                if not self.path(utt).is_file():
                    missing.append(utt)
            except DatasetError:
                missing.append(utt)  # get() below reports it
        if jobs > 1 and len(missing) > 1 and (explicit or len(missing) >= PARALLEL_FROM):
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            log.info("computing features of %d clips in %d processes", len(missing), jobs)
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=torch.set_num_threads,
                                     initargs=(1,)) as pool:
                errors = list(pool.map(_compute_entry, [self] * len(missing), missing,
                                       chunksize=8))
            self.misses += sum(e is None for e in errors)
            failed = {u.id: e for u, e in zip(missing, errors) if e is not None}
        else:
            failed = {u.id: e for u in missing if (e := _compute_entry(self, u)) is not None}
        return failed


def _compute_entry(cache: FeatureCache, utt: Utterance) -> str | None:
    """Fill ``cache``'s entry for ``utt``; the error message if the clip cannot be used."""
    try:
        cache.get(utt)
    except ValueError as err:  # AudioError, DatasetError, TextError
        return str(err)
    return None

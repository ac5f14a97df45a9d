"""A compact, committed copy of the slow-to-render part of the corpus, so that a build resumes
across machines and sessions instead of starting again from nothing.

Rendering Kokoro on two CPU cores costs about 35 minutes of both cores per hour of audio, and a
build folder (``data/``) is not kept from one session to the next. So every finished speaker of a
slow engine (Kokoro's natural voices and blends, its Japanese styles, Piper) is packed into
``STORE/<speaker>.zip``: one Ogg/Opus file (24 kHz, about 40 kbit/s) and one transcript per clip.
:func:`unpack` writes those clips back into a corpus folder as the builder's own 22,050 Hz wavs,
and the builder then renders only what is still missing. The cheap engines (flite, festival,
espeak-ng, MBROLA, Pico) re-render in minutes and are not stored.

Opus is lossy: a restored clip is not bit-identical to the render. Measured on 12 natural clips
(``benchmarks/corpus_store.py``): see that benchmark's output for the mel difference, Whisper WER
and ECAPA similarity of restored against rendered audio.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from metatts.assets import atomic_path
from metatts.audio import SAMPLE_RATE, resample, save_audio
from metatts.corpus.manifest import Clip

STORE_RATE = 24000  # Hz; one of Opus's rates, above the corpus's 22,050 so nothing is lost to it
STORE_LEVEL = 0.88  # libsndfile compression level for Opus: about 40 kbit/s for speech
# the engines that are slow to render
STORED_ENGINES = frozenset({"kokoro-en", "kokoro-span", "kokoro", "piper"})


def encode(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Ogg/Opus bytes of a mono float32 clip."""
    buf = io.BytesIO()
    sf.write(buf, resample(wav, sample_rate, STORE_RATE), STORE_RATE, format="OGG",
             subtype="OPUS", compression_level=STORE_LEVEL)
    return buf.getvalue()


def decode(data: bytes, length: int | None = None) -> np.ndarray:
    """The clip of :func:`encode`'s bytes at the corpus rate, cut or padded to ``length``."""
    wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    wav = resample(wav, rate, SAMPLE_RATE)
    if length is not None:
        wav = wav[:length] if len(wav) >= length else np.pad(wav, (0, length - len(wav)))
    return np.clip(wav, -1.0, 1.0)


def _stored_ids(archive: Path) -> set[str]:
    if not archive.is_file():
        return set()
    try:
        with zipfile.ZipFile(archive) as z:
            return {Path(n).stem for n in z.namelist() if n.endswith(".opus")}
    except zipfile.BadZipFile:
        return set()


def pack(root: str | Path, store: str | Path, clips: Iterable[Clip]) -> list[str]:
    """Pack every speaker of ``clips`` (finished clips of the corpus in ``root``) whose engine is
    slow and whose archive in ``store`` lacks some of them; returns the speakers (re)packed.

    An archive holds ``<id>.opus``, ``<id>.txt`` and ``<id>.len`` (the sample count at 22,050 Hz)
    per clip; it is written atomically, so an interrupted pack leaves the old archive whole.
    """
    root, store = Path(root), Path(store)
    by_speaker: dict[str, list[Clip]] = {}
    for clip in clips:
        if clip.engine in STORED_ENGINES and (root / clip.audio).is_file():
            by_speaker.setdefault(clip.speaker, []).append(clip)
    packed = []
    for speaker, own in sorted(by_speaker.items()):
        archive = store / f"{speaker}.zip"
        if {c.id for c in own} <= _stored_ids(archive):
            continue
        store.mkdir(parents=True, exist_ok=True)
        with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for clip in sorted(own, key=lambda c: c.id):
                wav, rate = sf.read(str(root / clip.audio), dtype="float32")
                # Fixed timestamps: the same clips give the same archive bytes.
                z.writestr(zipfile.ZipInfo(f"{clip.id}.opus", (2020, 1, 1, 0, 0, 0)),
                           encode(wav, rate))
                z.writestr(zipfile.ZipInfo(f"{clip.id}.txt", (2020, 1, 1, 0, 0, 0)),
                           clip.text + "\n")
                z.writestr(zipfile.ZipInfo(f"{clip.id}.len", (2020, 1, 1, 0, 0, 0)),
                           str(round(len(wav) * SAMPLE_RATE / rate)))
        packed.append(speaker)
    return packed


def unpack(store: str | Path, root: str | Path, speakers: Iterable[str] | None = None) -> int:
    """Write the stored clips missing from the corpus in ``root`` back as wavs (each transcript
    first, its wav last, as the builder does); returns how many were written. ``speakers``
    limits it to those archives."""
    store, root = Path(store), Path(root)
    if not store.is_dir():
        return 0
    wanted = None if speakers is None else set(speakers)
    written = 0
    for archive in sorted(store.glob("*.zip")):
        speaker = archive.stem
        if wanted is not None and speaker not in wanted:
            continue
        try:
            z = zipfile.ZipFile(archive)
        except zipfile.BadZipFile:
            raise ValueError(f"{archive}: not a zip archive; delete it (it will be re-packed "
                             "from a build) or restore it with `git checkout`") from None
        with z:
            names = set(z.namelist())
            for name in sorted(n for n in names if n.endswith(".opus")):
                utt = Path(name).stem
                wav_path = root / speaker / f"{utt}.wav"
                text = z.read(f"{utt}.txt").decode("utf-8")
                txt_path = wav_path.with_suffix(".txt")
                if (wav_path.is_file() and txt_path.is_file()
                        and txt_path.read_text(encoding="utf-8") == text):
                    continue
                length = int(z.read(f"{utt}.len")) if f"{utt}.len" in names else None
                wav = decode(z.read(name), length)
                wav_path.unlink(missing_ok=True)
                with atomic_path(txt_path) as tmp:
                    tmp.write_text(text, encoding="utf-8")
                save_audio(wav_path, wav, SAMPLE_RATE)  # atomic
                written += 1
    return written

"""The same corpora from the Hugging Face hub, for users who are online (optional).

Needs the ``datasets`` package (``pip install datasets``), which the project does not require:
it is imported only when :func:`read_hub` is called. Rows are streamed, and each clip's encoded
bytes are written once under ``cache_dir()/datasets/...`` so that every other part of the
project (durations, the feature cache) sees ordinary audio files. Audio is not decoded here.
"""

from __future__ import annotations

import importlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from metatts import assets
from metatts.data.readout import MISSING_AUDIO, DatasetError, DatasetReadout, ReadoutBuilder


@dataclass(frozen=True)
class HubSpec:
    """Where a corpus lives on the hub and which columns hold what."""

    dataset: str  # hub id
    config: str | None
    split: str  # the default split
    text: str  # column with the transcript
    speaker: str | None  # column with the speaker id; None for a one-speaker corpus
    id: str  # column with the utterance id, or "file" to use the file name
    single_speaker: str = ""
    skip_stem_suffix: str | None = None  # rows whose file name ends so are a second recording


HUB_DATASETS = {
    "ljspeech": HubSpec("keithito/lj_speech", None, "train", "normalized_text", None, "id",
                        single_speaker="LJ"),
    "vctk": HubSpec("CSTR-Edinburgh/vctk", None, "train", "text", "speaker_id", "file",
                    skip_stem_suffix="_mic2"),
    "libritts": HubSpec("mythicinfinity/libritts", "clean", "train.clean.100", "text_normalized",
                        "speaker_id", "id"),
    "libritts_r": HubSpec("mythicinfinity/libritts_r", "clean", "train.clean.100",
                          "text_normalized", "speaker_id", "id"),
}


def read_hub(
    name: str,
    split: str | None = None,
    *,
    limit: int | None = None,
    cache_root: str | Path | None = None,
) -> DatasetReadout:
    """Stream ``name`` (a key of :data:`HUB_DATASETS`) from the hub; at most ``limit`` rows."""
    if name not in HUB_DATASETS:
        raise DatasetError(f"unknown hub corpus {name!r}; choose from {', '.join(HUB_DATASETS)}.")
    spec = HUB_DATASETS[name]
    split = split or spec.split
    datasets = _import_datasets()
    if not assets.is_online():
        raise DatasetError(
            f"cannot stream {spec.dataset} from the Hugging Face hub: this machine is offline. "
            "Download the corpus elsewhere and pass its folder instead."
        )
    rows = datasets.load_dataset(spec.dataset, spec.config, split=split, streaming=True)
    rows = rows.cast_column("audio", datasets.Audio(decode=False))
    folder = Path(cache_root or assets.cache_dir() / "datasets").joinpath(
        _safe(spec.dataset), _safe(spec.config or "default"), _safe(split))
    builder = ReadoutBuilder(f"hub:{name}", folder)
    for row in itertools.islice(rows, limit):
        source = Path(row["audio"].get("path") or row.get("file") or "clip.wav")
        uid = source.stem if spec.id == "file" else str(row[spec.id])
        if spec.skip_stem_suffix and uid.endswith(spec.skip_stem_suffix):
            continue
        speaker = str(row[spec.speaker]) if spec.speaker else spec.single_speaker
        target = folder / _safe(speaker) / f"{_safe(uid)}{source.suffix}"
        audio = _materialize(row["audio"], target)
        if audio is None:
            builder.skip(MISSING_AUDIO, target)
            continue
        builder.add(uid, speaker, audio, text=row.get(spec.text))
    return builder.build()


def _import_datasets():
    try:
        return importlib.import_module("datasets")
    except ImportError:
        raise DatasetError(
            "reading corpora from the Hugging Face hub needs the optional `datasets` package: "
            "pip install datasets. Or pass a local folder in its published layout."
        ) from None


def _materialize(audio: dict, target: Path) -> Path | None:
    """Write the clip's encoded bytes to ``target`` once; a local file is used where it lies."""
    if audio.get("bytes") is None:
        return Path(audio["path"]) if audio.get("path") else None
    if not target.is_file():
        with assets.atomic_path(target) as tmp:
            tmp.write_bytes(audio["bytes"])
    return target


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)

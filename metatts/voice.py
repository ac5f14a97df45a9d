"""A voice file: the parameters adaptation changed, and what is needed to use them.

A voice is one safetensors file. Its tensors are the adapted parameters under the acoustic model's
parameter names (``speaker.new`` alone when only the embedding adapted), in float16
(:data:`STORED_DTYPE`; files of float32 tensors, written before, read the same); the header's
metadata holds one key, ``"metatts-voice"``, whose value is a JSON document::

    {"format": "metatts-voice", "version": 1,
     "base": {"sha256": ..., "path": ..., "step": ...},  # the checkpoint adapted from
     "settings": {...},                      # how it was adapted (AdaptSettings.to_dict())
     "clip_seconds": [...], "losses": [...], "final_loss": ...,
     "created": "2025-01-01T12:00:00+00:00", "metatts_version": ...,
     "frames": {"frames": ..., "neighbours": ..., "smoothing": ...}}  # with a frame bank

A voice may also carry its clips' :class:`~metatts.frames.FrameBank` (the model's teacher-forced
twin of each clip beside the clip's own log-mel frames, which correct every frame synthesized in
this voice; :mod:`metatts.frames`) as two more float16 tensors, ``frames.twin`` and
``frames.real`` (about 0.3 MB per 10 s of clips), and a third, ``frames.keys`` (the twin's
decoder hidden states), when its matches compare those (``frames_key`` "hidden"); its
``"frames"`` entry then says ``"key": "hidden"``, and ``"upper_neighbours"`` and ``"upper_bin"``
where the upper mel bins average another count of neighbours. Files without them read as before.

One metadata key keeps the file byte-for-byte reproducible (safetensors writes several keys in no
fixed order). Loading never unpickles. A voice only makes sense on top of the exact base model it
was adapted from, identified by the sha256 of that checkpoint's ``model.safetensors``:
:meth:`Voice.check_base` refuses any other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

import metatts
from metatts.assets import atomic_path, sha256_file
from metatts.frames import KEYS, UPPER_BIN, UPPER_NEIGHBOURS, FrameBank
from metatts.model.checkpoint import MODEL_TENSORS, Checkpoint, CheckpointError, read_metadata

FORMAT = "metatts-voice"
FRAMES_PREFIX = "frames."  # the frame bank's tensors (no model parameter name starts so)
VERSION = 1
METADATA_KEY = "metatts-voice"
# Tensors are stored in float16, read back as float32: half the size (a voice that adapted the
# whole decoder is 3.8 MB, not 7.7 MB). Measured on a decoder voice of the real voice, two
# sentences: the synthesized log-mel moves by 0.0005 on average (at most 0.0045) and no duration
# changes; bfloat16 moved it by 0.005 (0.03) and changed durations, so it is not used.
STORED_DTYPE = torch.float16


class VoiceError(ValueError):
    """A voice file that cannot be read, or a voice used with a base model it was not made for."""


@dataclass(frozen=True)
class BaseModel:
    """The checkpoint a voice was adapted from."""

    sha256: str  # of its model.safetensors (of the weights as safetensors, if never saved)
    path: str  # where it was loaded from, for messages ("" if not from disk)
    step: int  # its training step

    def describe(self) -> str:
        where = f"{self.path}, " if self.path else ""
        return f"{where}step {self.step}, sha256 {self.sha256[:12]}"


@dataclass(frozen=True)
class Voice:
    params: dict[str, torch.Tensor]  # parameter name -> adapted value (cpu float)
    base: BaseModel
    settings: dict[str, Any]  # the adaptation settings (metatts.adapt.AdaptSettings.to_dict())
    clip_seconds: tuple[float, ...]  # duration of each clip adapted on, after trimming
    losses: tuple[float, ...]  # support loss before each step
    final_loss: float  # support loss (all clips) at the adapted parameters
    created: str  # ISO 8601, UTC
    metatts_version: str
    frames: FrameBank | None = None  # the clips' frame bank (metatts.frames), or None

    @property
    def clips(self) -> int:
        return len(self.clip_seconds)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as the JSON document stored in the file."""
        return {
            "format": FORMAT, "version": VERSION,
            "base": {"sha256": self.base.sha256, "path": self.base.path, "step": self.base.step},
            "settings": self.settings, "clip_seconds": list(self.clip_seconds),
            "losses": list(self.losses), "final_loss": self.final_loss, "created": self.created,
            "metatts_version": self.metatts_version,
        } | ({} if self.frames is None else
             {"frames": {"frames": self.frames.frames, "neighbours": self.frames.neighbours,
                         "smoothing": self.frames.smoothing}
              | ({} if self.frames.keys is None else {"key": self.frames.key})
              | ({} if not self.frames.upper_neighbours else
                 {"upper_neighbours": self.frames.upper_neighbours,
                  "upper_bin": self.frames.upper_bin})})

    def save(self, path: str | Path) -> Path:
        """Write the voice atomically to ``path`` (a .safetensors file)."""
        path = Path(path)
        if path.suffix.lower() != ".safetensors":
            raise VoiceError(f"{path}: a voice file must end in .safetensors.")
        tensors = {k: v.detach().to("cpu", STORED_DTYPE).contiguous()
                   for k, v in self.params.items()}
        if self.frames is not None:
            tensors |= self.frames.tensors(FRAMES_PREFIX)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp),
                      metadata={METADATA_KEY: json.dumps(self.metadata(), sort_keys=True)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Voice:
        """Read a voice file written by :meth:`save`; :class:`VoiceError` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise VoiceError(f"{path}: no such voice file. Make one with "
                             "`python -m metatts adapt`.")
        try:
            with safe_open(str(path), "pt") as f:
                header = (f.metadata() or {}).get(METADATA_KEY)
                params = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
        except (SafetensorError, OSError) as err:
            raise VoiceError(f"{path}: not a voice file (not readable as safetensors: {err}). "
                             "Make one with `python -m metatts adapt`.") from None
        if header is None:
            raise VoiceError(f"{path}: a safetensors file but not a metatts voice (no "
                             f"{METADATA_KEY!r} metadata); model checkpoints are not voices. "
                             "Make a voice with `python -m metatts adapt`.")
        try:
            meta = json.loads(header)
        except json.JSONDecodeError as err:
            raise VoiceError(f"{path}: damaged voice metadata ({err}). Adapt the voice again.") \
                from None
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else meta
        if found != (FORMAT, VERSION):
            raise VoiceError(f"{path}: voice format and version {found!r}; this metatts reads "
                             f"{FORMAT} version {VERSION}. Adapt the voice again from its clips "
                             "with this metatts, or use the metatts that made it.")
        broken = [k for k, v in params.items() if not torch.isfinite(v).all()]
        if broken:
            raise VoiceError(f"{path}: damaged voice: {', '.join(sorted(broken))} hold values "
                             "that are not numbers (NaN or infinite). Adapt the voice again.")
        try:
            base = meta["base"]
            bank = None
            key = (meta.get("frames") or {}).get("key", "mel")
            if (key == "hidden") != (f"{FRAMES_PREFIX}keys" in params) or key not in KEYS:
                raise ValueError(f"its frame bank says it matches on {key!r} and "
                                 f"{'holds' if f'{FRAMES_PREFIX}keys' in params else 'lacks'} "
                                 "the hidden states that needs")
            if f"{FRAMES_PREFIX}twin" in params:
                bank = FrameBank.from_tensors(
                    params, FRAMES_PREFIX, int(meta["frames"]["neighbours"]),
                    int(meta["frames"]["smoothing"]),
                    int(meta["frames"].get("upper_neighbours", UPPER_NEIGHBOURS)),
                    int(meta["frames"].get("upper_bin", UPPER_BIN)))
            return cls(
                params={k: v for k, v in params.items() if not k.startswith(FRAMES_PREFIX)},
                base=BaseModel(str(base["sha256"]), str(base["path"]), int(base["step"])),
                settings=dict(meta["settings"]),
                clip_seconds=tuple(float(s) for s in meta["clip_seconds"]),
                losses=tuple(float(x) for x in meta["losses"]),
                final_loss=float(meta["final_loss"]),
                created=str(meta["created"]),
                metatts_version=str(meta["metatts_version"]),
                frames=bank,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise VoiceError(f"{path}: damaged voice metadata ({err!r}). Adapt the voice again.") \
                from None

    def check_base(self, base: str | Checkpoint) -> None:
        """Raise :class:`VoiceError` unless ``base`` (a loaded checkpoint, or the sha256 of one)
        is the model this voice was adapted from."""
        loaded = BaseModel(base, "", -1) if isinstance(base, str) else base_model(base)
        if loaded.sha256 != self.base.sha256 and not isinstance(base, str) \
                and base.config.model.generation >= 2 and self._from_previous_model(base):
            raise VoiceError(f"this voice belongs to the previous model (v1, without pitch or a "
                             f"speaker encoder; made on {self.base.describe()}), and this "
                             f"checkpoint is the v2 model ({loaded.describe()}). Adapt the voice "
                             "again from its clips on this checkpoint, or load the v1 checkpoint "
                             "it was made for.")
        if loaded.sha256 != self.base.sha256:
            shown = f"sha256 {loaded.sha256[:12]}" if isinstance(base, str) else loaded.describe()
            raise VoiceError(f"this voice was made for base model {self.base.describe()}; you "
                             f"loaded {shown}. Adapt again on this checkpoint, or load the "
                             "matching checkpoint.")

    def _from_previous_model(self, checkpoint: Checkpoint) -> bool:
        """Whether this voice was made on a v1 model: its base checkpoint's config says so, or,
        where that checkpoint cannot be read, its tensors do not fit ``checkpoint``'s model."""
        try:
            if not self.base.path:
                raise CheckpointError("no path recorded")
            config = read_metadata(self.base.path)["config"]["model"]
            return not (config.get("pitch") or config.get("speaker_encoder"))
        except (CheckpointError, OSError, KeyError, TypeError):
            params = {**dict(checkpoint.model.named_buffers()),
                      **dict(checkpoint.model.named_parameters())}
            return any(k not in params or params[k].shape != v.shape
                       for k, v in self.params.items())


def make_voice(params: dict[str, torch.Tensor], base: BaseModel, settings: dict[str, Any],
               clip_seconds: list[float], losses: list[float], final_loss: float,
               frames: FrameBank | None = None) -> Voice:
    """A :class:`Voice` stamped with the current time and metatts version."""
    return Voice(
        params={k: v.detach().to("cpu", torch.float32).clone() for k, v in params.items()},
        base=base, settings=settings,
        clip_seconds=tuple(round(float(s), 3) for s in clip_seconds),
        losses=tuple(float(x) for x in losses), final_loss=float(final_loss),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        metatts_version=metatts.__version__, frames=frames,
    )


def base_model(checkpoint: Checkpoint) -> BaseModel:
    """Identify a loaded checkpoint: the sha256 of its ``model.safetensors`` on disk, or, for a
    checkpoint that was never saved, of its weights written the same way (the same bytes)."""
    step = int(checkpoint.step)
    if checkpoint.path is not None and (Path(checkpoint.path) / MODEL_TENSORS).is_file():
        file = Path(checkpoint.path) / MODEL_TENSORS
        stat = os.stat(file)
        return BaseModel(_file_sha256(str(file.resolve()), stat.st_size, stat.st_mtime_ns),
                         str(checkpoint.path), step)
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model.state_dict().items()}
    return BaseModel(hashlib.sha256(save(state)).hexdigest(), "", step)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so the app hashes a checkpoint once."""
    return sha256_file(path)

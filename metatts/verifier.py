"""The corpus-trained speaker verifier: a small ECAPA-TDNN that tells the training voices apart.

SpeechBrain's ECAPA-TDNN architecture (128 channels, 128-d embedding, 0.7 M parameters), trained
from scratch with an additive angular margin on the log-mels of the corpus's 359 training
speakers only (never a validation or test voice, never the real voice; not the benchmark's
judge's weights): ``python benchmarks/verifier.py train``. It reads the same log-mel the acoustic
model speaks (:func:`metatts.audio.mel_spectrogram`), with its mean over time removed, so it can
hear the model's own frames and pass a gradient back into them: :func:`distance` is the
*verifier term* of adaptation (``AdaptSettings.verifier``), which pulls the spoken voice toward
the clips' as a model trained to tell voices apart hears it, where the mel L1 barely moves once
the voice is roughly right.

The shipped copy is ``checkpoints/verifier/`` (safetensors and a JSON with its sha256, checked
before loading; no pickle).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from metatts import assets

CHANNELS = (128, 128, 128, 128, 384)
EMBEDDING = 128
CROP = 130  # frames of the windows it was trained on (1.5 s at 22,050 Hz, hop 256)
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "verifier"


ARCHS = ("ecapa", "xvector")


class _CepstralXvector(torch.nn.Module):
    """An x-vector TDNN (SpeechBrain's, 256 channels) that hears 30 cepstral coefficients (a
    DCT-II of the log-mel over its 80 bands) instead of the log-mel itself: a second verifier
    of another architecture and input, so that a read can ask two instruments that share
    neither weights nor lineage. Same input and output as the ECAPA verifier."""

    def __init__(self) -> None:
        super().__init__()
        from speechbrain.lobes.models.Xvector import Xvector

        bands = torch.arange(80, dtype=torch.float32)
        k = torch.arange(30, dtype=torch.float32)[:, None]
        self.register_buffer("dct", torch.cos(torch.pi / 80 * (bands + 0.5) * k).T.contiguous())
        self.tdnn = Xvector(in_channels=30, tdnn_channels=[256, 256, 256, 256, 750],
                            lin_neurons=EMBEDDING)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.tdnn(x @ self.dct, lengths)


def build(arch: str = "ecapa") -> torch.nn.Module:
    """The untrained verifier: the ECAPA-TDNN of the shipped one's shape, or (``xvector``) the
    cepstral x-vector TDNN of :class:`_CepstralXvector`."""
    from metatts._torchaudio import import_speechbrain

    import_speechbrain()
    if arch == "xvector":
        return _CepstralXvector()
    if arch != "ecapa":
        raise ValueError(f"unknown verifier architecture {arch!r}; choose one of {ARCHS}")
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    return ECAPA_TDNN(80, channels=list(CHANNELS), lin_neurons=EMBEDDING)


@functools.cache
def _load(directory: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    folder = Path(directory)
    weights = folder / "verifier.safetensors"
    about = folder / "verifier.json"
    if not weights.exists():
        raise FileNotFoundError(
            f"no speaker verifier in {folder} (verifier.safetensors is missing); train one with "
            "`python benchmarks/verifier.py train --out DIR` or use the shipped "
            f"{DEFAULT_DIR}.")
    info = json.loads(about.read_text()) if about.exists() else {}
    expected = info.get("sha256")
    if expected:  # the shipped copy names its digest; a freshly trained one may not
        assets.verify_sha256(weights, expected, "speaker verifier")
    model = build(info.get("arch", "ecapa"))
    model.load_state_dict(load_file(str(weights)))
    # the shipped weights hold 371 subnormal numbers, which x86 cores compute on slowly; zeroed,
    # the embeddings are the same to the bit (as for the judge's ECAPA: metatts.speaker)
    from metatts.speaker import zero_subnormals

    zero_subnormals(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load(directory: str | Path | None = None) -> torch.nn.Module:
    """The verifier in eval mode with its weights frozen, loaded once per folder."""
    return _load(str(Path(directory or DEFAULT_DIR).resolve()))


def embed_mels(model: torch.nn.Module, mels: Tensor, lengths: Tensor, crop: int = 0) -> Tensor:
    """(B, n_mels, T) log-mels padded past ``lengths`` -> (B, 128) unit embeddings, each clip's
    mean over its own frames removed (as in training); differentiable in ``mels``. With
    ``crop``, each clip longer than ``crop`` frames is heard through one window of that many
    frames at a random place (the global RNG), as the verifier was trained."""
    mels = mels.float()
    steps = torch.arange(mels.shape[-1], device=mels.device)
    mask = (steps[None, :] < lengths[:, None]).to(mels.dtype)[:, None, :]  # (B, 1, T)
    mean = (mels * mask).sum(-1, keepdim=True) / lengths[:, None, None].to(mels.dtype)
    x = (mels - mean) * mask
    if crop and mels.shape[-1] > crop:
        first = (torch.rand(len(mels)) * (lengths.cpu() - crop).clamp(min=0).add(1)).long()
        x = torch.stack([x[i, :, int(f):int(f) + crop] for i, f in enumerate(first)])
        lengths = lengths.clamp(max=crop)
    relative = lengths.to(mels.dtype) / x.shape[-1]
    return torch.nn.functional.normalize(model(x.transpose(1, 2), relative).reshape(len(x), -1),
                                         dim=1)


def centroid(model: torch.nn.Module, real: Sequence[Tensor], lengths: Sequence[Tensor]
             ) -> Tensor:
    """The unit mean of the real clips' embeddings (whole clips, no gradient): the voice."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        target = torch.cat([embed_mels(model, r, n) for r, n in zip(real, lengths)])
    return torch.nn.functional.normalize(target.mean(0), dim=0)


def distance(model: torch.nn.Module, spoken: Sequence[Tensor], target: Tensor,
             lengths: Sequence[Tensor], crop: int = CROP) -> Tensor:
    """1 - the mean cosine between each spoken clip's embedding and ``target`` (the voice's
    :func:`centroid`, over all parts of one support set: the voice, not each sentence). Each
    clip is heard through a ``crop``-frame window (0: whole), which makes the term about 2.5x
    cheaper on 4-s clips. The gradient reaches the spoken mels (and what made them)."""
    if not spoken:
        raise ValueError("the verifier term got no items.")
    said = torch.cat([embed_mels(model, s, n, crop) for s, n in zip(spoken, lengths)])
    return 1.0 - (said.float() @ target).mean()

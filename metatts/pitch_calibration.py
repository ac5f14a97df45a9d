"""Pitch calibration: a voice spoken at its clips' pitch, measured through the model itself.

The decoder hears pitch normalized per speaker; how high a voice sounds is carried by its speaker
vector alone. For a voice outside the training speakers the encoder's vector misses it, by up to
4.6 semitones on the validation voices (``benchmarks/zero_shot_pitch.py``). The clips say what
the register is, and the model can be asked what its vector does with a given pitch input: render
the clips teacher-forced (their words, durations, normalized pitch and energy: the frame bank's
*twins*, :mod:`metatts.frames`), vocode, and read the F0 of what comes out. Over the frames voiced
in both, the log-F0 the model speaks is close to a line in the normalized input ``z``,
``alpha + beta * z``, while the clips' own log-F0 is ``mean + std * z``. Feeding the decoder
``offset + gain * z`` with ``offset = (mean - alpha) / beta`` and ``gain = std / beta`` makes
the two lines meet: the buffer ``variance.pitch_calibration`` holds (offset, gain) and a voice
overrides it like any parameter.

It costs one teacher-forced pass over the clips, vocoding it and one F0 track. No judge is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

KEY = "variance.pitch_calibration"
MAX_OFFSET = 3.0  # normalized units; beyond this the decoder is read far outside its training
GAIN_RANGE = (0.5, 2.0)
MIN_VOICED = 50  # frames voiced in both the clips and their rendering


def has_pitch_calibration(model: torch.nn.Module) -> bool:
    return any(name == KEY for name, _ in model.named_buffers())


def measured_line(checkpoint, params: Mapping[str, Tensor], examples: Sequence,
                  vocoder: Callable[[Tensor], Tensor]) -> dict[str, float] | None:
    """How the model with ``params`` speaks the clips' pitch: the least-squares line of the
    rendered log-F0 against the clips' normalized log-F0 over frames voiced in both
    (``alpha``, ``beta``), the clips' own ``mean`` and ``std`` of log-F0, and ``frames`` used.
    None when the clips have too few voiced frames (then there is nothing to calibrate on)."""
    from metatts.data.pitch import extract_f0, voice_stats
    from metatts.frames import frame_bank

    f0 = [x.f0 for x in examples if x.f0 is not None]
    if not f0:
        return None
    real = torch.cat(f0).double()
    stats = voice_stats(real)
    if stats is None:
        return None
    bank = frame_bank(checkpoint, params, examples)
    said = []
    with torch.inference_mode():
        start = 0
        for x in examples:  # one clip at a time: no seam between clips in the F0 track
            n = x.mel.shape[-1]
            wav = vocoder(bank.twin[start:start + n].T.contiguous()).detach().float().cpu().numpy()
            said.append(extract_f0(np.clip(wav, -1, 1), frames=n))
            start += n
    out = torch.cat(said).double()
    both = (real > 0) & (out > 0)
    if int(both.sum()) < MIN_VOICED:
        return None
    mean, std = float(stats[0]), float(stats[1])
    z = (torch.log(real[both]) - mean) / std
    y = torch.log(out[both])
    zc = z - z.mean()
    beta = float((zc * (y - y.mean())).sum() / (zc * zc).sum().clamp(min=1e-9))
    alpha = float(y.mean() - beta * z.mean())
    return {"alpha": alpha, "beta": beta, "mean": mean, "std": std, "frames": int(both.sum())}


def calibration(line: Mapping[str, float] | None) -> Tensor:
    """(offset, gain) for ``variance.pitch_calibration`` from :func:`measured_line`; the
    identity (0, 1) when there is no line or its slope is not positive."""
    if line is None or line["beta"] <= 1e-3:
        return torch.tensor([0.0, 1.0])
    offset = (line["mean"] - line["alpha"]) / line["beta"]
    gain = line["std"] / line["beta"]
    return torch.tensor([float(np.clip(offset, -MAX_OFFSET, MAX_OFFSET)),
                         float(np.clip(gain, *GAIN_RANGE))])


def calibrate(checkpoint, params: Mapping[str, Tensor], examples: Sequence,
              vocoder: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """``params`` with ``variance.pitch_calibration`` set from the clips (module docstring);
    unchanged for a model without pitch."""
    if not has_pitch_calibration(checkpoint.model):
        return dict(params)
    base = {k: v for k, v in params.items() if k != KEY}
    return {**base, KEY: calibration(measured_line(checkpoint, base, examples, vocoder))}

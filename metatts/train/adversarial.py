"""Adversarial training of the acoustic model's mel (``train.adversarial`` > 0): the
discriminator of :mod:`metatts.model.discriminator`, its optimizer and its two steps.

Per training step, on one random window of ``train.adversarial_window`` frames of each item
(the same frames of the real and the predicted mel; the prediction is teacher-forced, so they
line up):

1. the discriminator takes one LSGAN step: real windows toward 1, predicted ones (detached)
   toward 0, both scored with the speaker vector the item was spoken with;
2. the generator's terms, through the updated discriminator with its weights held fixed:
   ``adv`` = mean (D(predicted) - 1)^2, and ``fm`` = the L1 distance between the
   discriminator's features of the predicted and the real windows (mean over layers), scaled
   as in GANSpeech so that it is ``train.feature_matching`` times the mel L1 in size.

For the first ``train.adversarial_warmup`` discriminator steps of a run only the discriminator
learns (a new discriminator against a trained model would otherwise push the model with noise).
The discriminator and its optimizer are saved in every checkpoint (``discriminator.*``) and a
resumed run continues them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from metatts.model.checkpoint import CheckpointError, flatten_optimizer, unflatten_optimizer
from metatts.model.config import TrainConfig
from metatts.model.discriminator import MelDiscriminator, crop, generator_terms, window_starts

TENSORS, STATE_TENSORS, STATE_JSON = ("discriminator.safetensors",
                                      "discriminator_training.safetensors",
                                      "discriminator.json")


class Adversary:
    def __init__(self, config: TrainConfig, n_mels: int, speaker_dim: int,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.discriminator = MelDiscriminator(n_mels, speaker_dim,
                                              config.adversarial_channels).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(),
                                          lr=config.adversarial_lr, betas=(0.5, 0.9))
        self.steps = 0  # discriminator steps taken (the warm-up counts these)

    def terms(self, real: Tensor, predicted: Tensor, lengths: Tensor, speaker: Tensor | None,
              mel_loss: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One discriminator step, then the generator's terms. real, predicted (B, n_mels, T),
        lengths (B,) real frames, speaker (B, D) the vectors spoken with (detached here) or None,
        mel_loss the reconstruction term (scales ``fm``). -> {"disc", "adv", "fm", "gan"}:
        "gan" is the weighted sum to add to the generator's total (0 during the warm-up);
        empty when no item is long enough for a window."""
        c = self.config
        items, starts = window_starts(lengths.cpu(), c.adversarial_window, generator)
        if len(items) == 0:
            return {}
        real_w = crop(real, items, starts, c.adversarial_window).detach()
        fake_w = crop(predicted, items, starts, c.adversarial_window)
        cond = None if speaker is None else speaker[items.to(speaker.device)].detach()
        d = self.discriminator
        d.train()
        # 1. the discriminator's step
        real_score, _ = d(real_w, cond)
        fake_score, _ = d(fake_w.detach(), cond)
        disc = ((real_score - 1) ** 2).mean() + (fake_score ** 2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        disc.backward()
        torch.nn.utils.clip_grad_norm_(d.parameters(), 10.0)
        self.optimizer.step()
        self.steps += 1
        # 2. the generator's terms through the updated discriminator, its weights held fixed
        for p in d.parameters():
            p.requires_grad_(False)
        try:
            adv, fm = generator_terms(d, real_w, fake_w, cond)
        finally:
            for p in d.parameters():
                p.requires_grad_(True)
        on = float(self.steps > c.adversarial_warmup)
        scale = (mel_loss.detach() / fm.detach().clamp(min=1e-8)) * c.feature_matching
        gan = on * (c.adversarial * adv + scale * fm)
        return {"disc": disc.detach(), "adv": adv, "fm": fm, "gan": gan}

    # -- checkpoints -----------------------------------------------------------------------------
    def files(self) -> dict[str, bytes | dict[str, Tensor]]:
        """What a checkpoint holds of the discriminator: file name -> tensors or JSON bytes."""
        tensors, info = flatten_optimizer(self.optimizer.state_dict())
        return {TENSORS: {k: v.detach().cpu().contiguous()
                          for k, v in self.discriminator.state_dict().items()},
                STATE_TENSORS: tensors,
                STATE_JSON: json.dumps({"steps": self.steps, "optimizer": info}).encode()}

    def load(self, directory: Path) -> bool:
        """Continue the discriminator saved in a checkpoint directory; False (a fresh one, with
        its warm-up) when the checkpoint has none, e.g. a run that turns adversarial training
        on when resumed."""
        if not (directory / TENSORS).is_file():
            return False
        try:
            self.discriminator.load_state_dict(load_file(str(directory / TENSORS)))
            info = json.loads((directory / STATE_JSON).read_text())
            state = load_file(str(directory / STATE_TENSORS))
        except (OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{directory}: unreadable discriminator state ({err}); "
                                  "resume from an earlier checkpoint.") from None
        device = next(self.discriminator.parameters()).device
        self.optimizer.load_state_dict(unflatten_optimizer(state, info["optimizer"], device))
        self.steps = int(info["steps"])
        return True

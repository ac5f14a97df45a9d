"""Checkpoints: safetensors for tensors, JSON for everything else; loading never unpickles.

A checkpoint is a directory::

    model.safetensors     the model's parameters
    model.json            {"format", "version", "step", "config", "symbols", "speakers"}
    inner_lrs.safetensors Meta-SGD's learned inner learning rates, parameter name -> rates (only
                          in checkpoints meta-trained with meta.learn_inner_lrs)
    training.safetensors  optimizer moments (only in checkpoints written by the trainer)
    training_weights.safetensors  the optimized weights, when model.safetensors holds their
                          moving average (train.ema_decay); --resume continues from these
    training.json         optimizer hyper-parameters, scheduler state, step

A run directory holds ``checkpoints/step_XXXXXXXX/``; :func:`load_checkpoint` accepts a run
directory (its latest checkpoint), a checkpoint directory, or the ``model.safetensors`` in one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metatts.assets import atomic_path
from metatts.model.config import Config, ConfigError, TrainConfig, from_dict, to_dict
from metatts.model.discriminator import MelDiscriminator
from metatts.model.fastspeech2 import FastSpeech2
from metatts.text import SymbolTable

FORMAT = "metatts-acoustic"
VERSION = 1
MODEL_TENSORS, MODEL_JSON = "model.safetensors", "model.json"
TRAINING_TENSORS, TRAINING_JSON = "training.safetensors", "training.json"
TRAINING_WEIGHTS = "training_weights.safetensors"
INNER_LRS = "inner_lrs.safetensors"
CRITIC_TENSORS = "discriminator.safetensors"  # metatts.train.adversarial writes it
_STEP_DIR = re.compile(r"step_(\d+)$")
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"  # the repository's checkpoints/
SHIPPED_INITS = ("meta", "pretrained")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model it describes."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded acoustic model with what is needed to use it."""

    model: FastSpeech2
    config: Config
    symbols: SymbolTable
    speakers: tuple[str, ...]  # speaker index -> name
    step: int
    path: Path | None = None
    # Meta-SGD's learned inner learning rates (adapted parameter name -> rates of its shape)
    inner_lrs: dict[str, torch.Tensor] | None = None

    def speaker_id(self, speaker: str | int) -> int:
        """Index of a speaker given by name or index; CheckpointError names the choices."""
        if isinstance(speaker, int) and not isinstance(speaker, bool):
            if 0 <= speaker < len(self.speakers):
                return speaker
        elif speaker in self.speakers:
            return self.speakers.index(speaker)
        shown = ", ".join(self.speakers[:20]) + (" ..." if len(self.speakers) > 20 else "")
        raise CheckpointError(f"unknown speaker {speaker!r}; this checkpoint has "
                              f"{len(self.speakers)} speakers: {shown}.")


def save_checkpoint(directory: str | Path, model: FastSpeech2, config: Config,
                    symbols: SymbolTable, speakers: tuple[str, ...] | list[str], step: int = 0,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    inner_lrs: dict[str, torch.Tensor] | None = None,
                    training_weights: torch.nn.Module | None = None,
                    extra_files: dict[str, bytes | dict[str, torch.Tensor]] | None = None) -> Path:
    """Write a checkpoint directory atomically (it appears complete or not at all).
    ``training_weights``: the model being optimized, when ``model`` is its moving average;
    ``extra_files``: more of the training state (file name -> tensors, saved as safetensors, or
    bytes written as they are), e.g. the discriminator of adversarial training."""
    if len(speakers) != config.model.n_speakers or len(symbols) != config.model.n_symbols:
        raise CheckpointError("config.model.n_speakers / n_symbols disagree with the speaker "
                              "list / symbol table being saved.")
    directory = Path(directory)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_TENSORS))
        meta = {"format": FORMAT, "version": VERSION, "step": step, "config": to_dict(config),
                "symbols": symbols.to_dict(), "speakers": list(speakers)}
        (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        if inner_lrs is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in inner_lrs.items()},
                      str(tmp / INNER_LRS))
        if training_weights is not None:
            save_file({k: v.detach().cpu().contiguous()
                       for k, v in training_weights.state_dict().items()},
                      str(tmp / TRAINING_WEIGHTS))
        if optimizer is not None:
            tensors, info = flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / TRAINING_TENSORS))
            info = {"step": step, "optimizer": info,
                    "scheduler": None if scheduler is None else scheduler.state_dict()}
            (tmp / TRAINING_JSON).write_text(json.dumps(info, indent=1))
        for name, content in (extra_files or {}).items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                save_file(content, str(tmp / name))
    return directory


def shipped_checkpoint(init: str, root: Path = SHIPPED) -> Path:
    """Where the shipped checkpoint for ``init`` lives: ``root/<init>`` (checkpoints/pretrained,
    checkpoints/meta in the repository); for "pretrained", $METATTS_CHECKPOINT wins when set."""
    if init not in SHIPPED_INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {SHIPPED_INITS}")
    if init == "pretrained" and os.environ.get("METATTS_CHECKPOINT"):
        return Path(os.environ["METATTS_CHECKPOINT"])
    return Path(root) / init


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory that ``path`` names (see the module docstring)."""
    path = Path(path)
    if path.is_file() and path.name == MODEL_TENSORS:
        path = path.parent
    if (path / MODEL_TENSORS).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path}: no checkpoint there (expected {MODEL_TENSORS} + "
                              f"{MODEL_JSON}, or a run directory with checkpoints/step_*/). "
                              "Train one with `python -m metatts train --config CONFIG`.")
    return latest


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files of the checkpoint that ``path`` names (:func:`find_checkpoint`): what a command
    that reads it must never write over."""
    return [f for f in find_checkpoint(path).iterdir() if f.is_file()]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The highest-step complete checkpoint under ``run_dir/checkpoints``, or None."""
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob("step_*")
             if (m := _STEP_DIR.search(p.name)) and (p / MODEL_TENSORS).is_file()]
    return max(found)[1] if found else None


def read_metadata(path: str | Path) -> dict:
    """model.json of a checkpoint, with its format checked."""
    directory = find_checkpoint(path)
    try:
        meta = json.loads((directory / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{directory / MODEL_JSON}: unreadable ({err}). A checkpoint folder "
                              f"holds {MODEL_JSON} and {MODEL_TENSORS} as `python -m metatts "
                              "train` writes them; point at one of those (or at the shipped "
                              "checkpoints/pretrained).") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{directory}: not a {FORMAT} v{VERSION} checkpoint "
                              f"(format {meta.get('format')!r}, version {meta.get('version')!r}).")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from its saved config and load its weights (eval mode)."""
    directory = find_checkpoint(path)
    meta = read_metadata(directory)
    try:
        config = from_dict(Config, meta["config"])
        symbols = SymbolTable.from_dict(meta["symbols"])
    except (ConfigError, ValueError, KeyError) as err:
        raise CheckpointError(f"{directory / MODEL_JSON}: {err}") from None
    model = FastSpeech2(config.model, config.loss)
    load_weights(model, directory / MODEL_TENSORS)
    if (directory / CRITIC_TENSORS).is_file():  # adversarial pretraining's discriminator
        attach_critic(model, config.train, directory / CRITIC_TENSORS)
    rates = directory / INNER_LRS
    lrs = load_inner_lrs(model, rates) if rates.is_file() else None
    return Checkpoint(model.to(device).eval(), config, symbols, tuple(meta["speakers"]),
                      int(meta["step"]), directory,
                      None if lrs is None else {k: v.to(device) for k, v in lrs.items()})


def load_inner_lrs(model: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Meta-SGD rates: each must name a model parameter and have its shape (one rate per
    element) or (1, ..., 1) of its rank (one rate per tensor)."""
    try:
        rates = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable learned learning rates ({err}).") from None
    params = dict(model.named_parameters())
    wrong = sorted(k for k, v in rates.items() if k not in params or (
        v.shape != params[k].shape and v.shape != (1,) * params[k].ndim))
    if wrong or not rates:
        raise CheckpointError(f"{path}: learned learning rates that fit no parameter of the "
                              f"model ({wrong[:5] or 'none given'}).")
    return rates


def attach_critic(model: FastSpeech2, train: TrainConfig, path: Path) -> None:
    """Give ``model`` the discriminator saved beside it (weights fixed, eval mode) as
    ``model.critic``, outside its parameters and state dict: only an inner loop whose terms
    name the critic uses it (metatts.meta.inner_loop)."""
    critic = MelDiscriminator(model.config.n_mels, model.config.speaker_dim,
                              train.adversarial_channels)
    load_weights(critic, path)
    critic.eval().requires_grad_(False)
    object.__setattr__(model, "critic", critic)  # not a submodule: not saved, not adapted
    object.__setattr__(model, "critic_window", train.adversarial_window)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict; every name must match and every shape fit."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err}).") from None
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameter names do not match the model built from its "
                              f"config (missing {missing[:5]}, unexpected {unexpected[:5]}).")
    wrong = [k for k in state if state[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: shapes differ from the config's model for {wrong[:5]}.")
    model.load_state_dict(state)


def load_training_state(directory: str | Path, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> int:
    """Restore optimizer (and scheduler) state from a trainer checkpoint; returns its step."""
    directory = Path(directory)
    try:
        info = json.loads((directory / TRAINING_JSON).read_text())
        tensors = load_file(str(directory / TRAINING_TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise CheckpointError(f"{directory}: no readable training state to resume from ({err}). "
                              "Only checkpoints written by the trainer can be resumed.") from None
    device = next(iter(optimizer.param_groups[0]["params"])).device
    optimizer.load_state_dict(unflatten_optimizer(tensors, info["optimizer"], device))
    if scheduler is not None and info["scheduler"] is not None:
        scheduler.load_state_dict(info["scheduler"])
    return int(info["step"])


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict -> (tensors named state.<param>.<key>, JSON-ready rest)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict, device) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        # Adam keeps "step" on the CPU unless capturable/fused; moments live with the params
        state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
    for name, value in info["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}

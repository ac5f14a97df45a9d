"""The optimization loop shared by single-process and data-parallel pretraining."""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.optim.swa_utils
from torch import nn
from tqdm import tqdm

from metatts.data import Batch
from metatts.model.checkpoint import CheckpointError, latest_checkpoint, save_checkpoint
from metatts.model.config import Config
from metatts.model.fastspeech2 import FastSpeech2
from metatts.text import SymbolTable
from metatts.train.distributed import Distributed, barrier, mean_over_processes
from metatts.train.logging import JsonlLog, plot_losses, read_log
from metatts.train.schedule import binarization_weight, step_seed
from metatts.train.zero_shot import validate_zero_shot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """Everything the loop works with."""

    config: Config
    model: FastSpeech2  # the bare model (checkpoints, validation)
    step_model: nn.Module  # what a training step calls: the model, or DDP around it
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: torch.utils.data.DataLoader  # yields the Batch of each step from start + 1 on
    val_batches: tuple[Batch, ...]
    symbols: SymbolTable
    speakers: tuple[str, ...]
    dist: Distributed
    run_dir: Path
    log: JsonlLog | None  # main process only
    # validation-split voices for the zero-shot validation (metatts.train.zero_shot)
    zero_shot: tuple = ()
    # the parameters' moving average (train.ema_decay), main process only: what checkpoints
    # save as the model and validation scores
    average: torch.optim.swa_utils.AveragedModel | None = None
    # adversarial training's discriminator (train.adversarial), single-process runs only
    adversary: object = None  # metatts.train.adversarial.Adversary

    @property
    def scored(self) -> FastSpeech2:
        """The model that validation scores and checkpoints save as the model."""
        return self.model if self.average is None else self.average.module


@dataclass(frozen=True)
class LoopResult:
    step: int
    checkpoint: Path | None
    train: dict[str, float]  # last logged training losses
    val: dict[str, float]  # last validation losses
    steps_per_second: float


def resume_point(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run in ``run_dir`` continues from (None: it starts afresh), or
    :class:`CheckpointError` where the run directory does not fit ``resume``: nothing to resume;
    checkpoints a fresh start would mix with; or a training log without a checkpoint (a finished
    run's kept log, such as those the README cites, or a run stopped before its first
    checkpoint), which a fresh start would overwrite."""
    resume_from = latest_checkpoint(run_dir)
    if resume and resume_from is None:
        raise CheckpointError(f"--resume: no checkpoint under {run_dir}/checkpoints to resume.")
    if not resume and resume_from is not None:
        raise CheckpointError(f"{run_dir} already holds checkpoints; pass --resume to continue "
                              "that run, or set train.run_dir to a new directory.")
    log = run_dir / "log.jsonl"
    if resume_from is None and log.is_file() and log.stat().st_size > 0:
        raise CheckpointError(f"{run_dir} holds a training log ({log.name}) but no checkpoint to "
                              "resume: a finished run's kept log, or a run stopped before its "
                              "first checkpoint; a new run would overwrite it. Set "
                              "train.run_dir to a new directory (--set train.run_dir=DIR), or "
                              f"delete {run_dir} to start that run over.")
    return resume_from


def time_is_up(deadline: float | None, d: Distributed) -> bool:
    """Whether ``deadline`` (a time.monotonic() value) has passed on any process."""
    if deadline is None:
        return False
    late = mean_over_processes({"late": float(time.monotonic() >= deadline)}, d)["late"]
    return late > 0


def train(run: Run, start_step: int, progress: bool = False,
          deadline: float | None = None) -> LoopResult:
    """Steps ``start_step + 1 .. config.train.steps``; logs, validates and checkpoints. With a
    ``deadline`` (time.monotonic()), checked at every logging step, it stops there once the time
    is up, after writing a checkpoint of that step."""
    cfg, d = run.config.train, run.dist
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.model.train()
    step, sums, counts, last_train, last_val = start_step, {}, {}, {}, {}
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (progress and d.is_main),
               unit="step", dynamic_ncols=True)
    started, timed_from = time.perf_counter(), start_step
    for batch in run.batches:
        step += 1
        torch.manual_seed(step_seed(cfg.seed, step, d.rank))
        weight = binarization_weight(step, cfg.binarization_start, cfg.binarization_ramp)
        out = run.step_model(batch.to(d.device), weight)
        total, logged = out.total, out.items()
        if run.adversary is not None:
            seen = out.output
            gan = run.adversary.terms(out.batch.mels, seen.spoken, out.batch.mel_lengths,
                                      seen.speaker_vector, out.parts["mel"])
            if gan:
                total = total + gan["gan"]
                logged.update({k: float(v.detach()) for k, v in gan.items() if k != "gan"})
                logged["total"] = float(total.detach())
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if not torch.isfinite(grad_norm):  # gradients are all-reduced: every process agrees
            raise FloatingPointError(
                f"non-finite gradient at step {step} (loss {out.items()}); lower train.lr or "
                f"raise train.warmup_steps, then resume from the last checkpoint.")
        run.optimizer.step()
        run.scheduler.step()
        if run.average is not None:
            run.average.update_parameters(run.model)
        for k, v in logged.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            losses = mean_over_processes({k: v / counts[k] for k, v in sums.items()}, d)
            rate = (step - timed_from) / (time.perf_counter() - started)
            last_train = losses
            if run.log is not None:
                run.log.write({"split": "train", "step": step, **losses,
                               "lr": run.scheduler.get_last_lr()[0],
                               "binarization_weight": weight, "grad_norm": float(grad_norm),
                               "steps_per_second": rate})
            bar.set_postfix(loss=f"{losses['total']:.3f}", mel=f"{losses['mel']:.3f}")
            sums, counts = {}, {}
        if d.is_main and (step % cfg.validate_every == 0 or step == cfg.steps):
            last_val = validate(run.scored, run.val_batches, d.device, weight)
            if last_val and run.log is not None:
                run.log.write({"split": "val", "step": step, **last_val})
            unseen = validate_zero_shot(run.scored, run.zero_shot, d.device, weight)
            if unseen and run.log is not None:
                run.log.write({"split": "zero_shot", "step": step, **unseen})
            plot_losses(read_log(run.log.path), run.run_dir / "losses.png")
        stop = step % cfg.log_every == 0 and time_is_up(deadline, d)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
            if d.is_main:
                save(run, step)
            barrier(d)
        if stop:
            log.info("time is up: stopped at step %d (resume with --resume)", step)
            break
    bar.close()
    elapsed = time.perf_counter() - started
    return LoopResult(step, latest_checkpoint(run.run_dir), last_train, last_val,
                      (step - timed_from) / elapsed if elapsed > 0 else math.nan)


@torch.no_grad()
def validate(model: FastSpeech2, batches: tuple[Batch, ...], device: torch.device,
             binarization_weight: float) -> dict[str, float]:
    """Loss on held-out utterances (eval mode: no dropout), averaged over clips."""
    if not batches:
        return {}
    was_training = model.training
    model.eval()
    sums, n = {}, 0
    for batch in batches:
        items = model.loss(batch.to(device), binarization_weight).items()
        for k, v in items.items():
            sums[k] = sums.get(k, 0.0) + v * len(batch)
        n += len(batch)
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def save(run: Run, step: int) -> Path:
    """Write checkpoints/step_XXXXXXXX and keep the newest ``keep_checkpoints``."""
    run.scored.speaker.reset_new()  # unused in pretraining: the adaptation start is the mean voice
    if run.average is not None:
        run.model.speaker.reset_new()
    return save_step(run.run_dir, step, run.scored, run.config, run.symbols, run.speakers,
                     run.optimizer, run.scheduler,
                     training_weights=None if run.average is None else run.model,
                     extra_files=None if run.adversary is None else run.adversary.files())


def save_step(run_dir: Path, step: int, model: FastSpeech2, config: Config, symbols: SymbolTable,
              speakers: tuple[str, ...], optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
              inner_lrs: dict[str, torch.Tensor] | None = None,
              training_weights: nn.Module | None = None,
              extra_files: dict | None = None) -> Path:
    """Write run_dir/checkpoints/step_XXXXXXXX (with training state), keep the newest
    ``config.train.keep_checkpoints``."""
    directory = run_dir / "checkpoints" / f"step_{step:08d}"
    save_checkpoint(directory, model, config, symbols, speakers, step, optimizer, scheduler,
                    inner_lrs, training_weights, extra_files)
    old = sorted((run_dir / "checkpoints").glob("step_*"))[: -config.train.keep_checkpoints]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    log.info("saved %s", directory)
    return directory

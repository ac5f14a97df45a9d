"""Multi-speaker pretraining of the acoustic model: data, model, optimizer, resume, then the loop.

Run it as ``python -m metatts train --config CONFIG [--resume]``, or data-parallel with
``torchrun --nproc_per_node N -m metatts train --config CONFIG``. ``train.batch_size`` is per
process; the main process (rank 0) computes missing features first, logs, validates and writes
checkpoints.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from metatts.data import ExampleDataset, collate, load_batch
from metatts.model.checkpoint import (CheckpointError, load_checkpoint,
                                      load_training_state, load_weights, read_metadata,
                                      MODEL_TENSORS, TRAINING_WEIGHTS)
from metatts.model.config import Config, ConfigError, from_dict, replace, to_dict
from metatts.model.fastspeech2 import FastSpeech2, count_parameters
from metatts.text import SYMBOLS
from metatts.train import distributed
from metatts.train.adversarial import Adversary
from metatts.train.data import (StepBatches, TrainingData, TrainingExamples, WithReferences,
                                clips_by_speaker, collate_train, feature_cache, prepare,
                                reference_choice, speaker_pitch_stats)
from metatts.train.logging import JsonlLog
from metatts.train.loop import LoopResult, Run, resume_point, train
from metatts.train.schedule import lr_factor
from metatts.train.zero_shot import zero_shot_voices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    checkpoint: Path | None  # the latest checkpoint after training
    parameters: int
    loop: LoopResult


def pretrain(config: Config, *, resume: bool = False, progress: bool = False,
             deadline: float | None = None) -> PretrainResult:
    """Train to ``config.train.steps``, continuing the latest checkpoint if ``resume``; stop
    early, with a checkpoint, once ``deadline`` (time.monotonic()) has passed."""
    d = distributed.setup(config.train.device)
    try:
        return _pretrain(config, d, resume, progress, deadline)
    finally:
        distributed.teardown()


# never copied by a warm start: the other run's speakers and its new-voice vector
NOT_WARM = ("speaker.table.weight", "speaker.new", "pitch_stats")


def warm_start(model: FastSpeech2, init_from: str | Path, tokens: str,
               speakers: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Copy into ``model`` every tensor of the checkpoint at ``init_from`` with the same name and
    shape (except :data:`NOT_WARM`; a model with its own ``aligner_embedding`` takes the other's
    token embedding for it when the other has none); returns (copied names, names left as
    initialized: among them the speaker table's new rows as ``speaker.table.weight[n new
    rows]``). The
    checkpoint must use the same symbol table and ``tokens`` (the token embedding's rows are the
    symbols). With this run's ``speakers`` (index -> name), the speaker table's rows of the
    speakers both runs have are copied too, by name (reported as ``speaker.table.weight[n/m]``),
    so that a run can add speakers to a trained model; new speakers keep their initial rows."""
    other = load_checkpoint(init_from)
    if other.config.data.tokens != tokens:
        raise CheckpointError(f"train.init_from {init_from} reads {other.config.data.tokens!r} "
                              f"and this run {tokens!r}; set data.tokens to match it.")
    if other.symbols.symbols != SYMBOLS.symbols:
        raise CheckpointError(f"train.init_from {init_from}: its symbol table differs from this "
                              "project's; a warm start needs the same symbols.")
    theirs = other.model.state_dict()
    own = model.state_dict()
    if "aligner_embedding.weight" in own and "aligner_embedding.weight" not in theirs:
        # a model with its own aligner embedding keeps the other's aligner with the embedding
        # that aligner was trained on (the other's token embedding)
        theirs["aligner_embedding.weight"] = theirs["token_embedding.weight"]
    copied = [n for n, v in own.items() if n not in NOT_WARM and n in theirs
              and theirs[n].shape == v.shape]
    if not copied:
        raise CheckpointError(f"train.init_from {init_from}: no tensor of that model fits this "
                              "one (another size?); leave train.init_from empty to start fresh.")
    with torch.no_grad():
        for n in copied:
            own[n].copy_(theirs[n])
        index = {name: i for i, name in enumerate(other.speakers)}
        shared = [(i, index[name]) for i, name in enumerate(speakers) if name in index]
        table = "speaker.table.weight"
        if shared and own[table].shape[1] == theirs[table].shape[1]:
            mine, its = zip(*shared)
            own[table][list(mine)] = theirs[table][list(its)]
            copied.append(f"{table}[{len(shared)}/{len(speakers)}]")
    fresh = [n for n in own if n not in copied]
    if any(n.startswith(f"{table}[") for n in copied):  # copied by rows: only the speakers
        fresh.remove(table)  # it lacks start fresh
        if len(shared) < len(speakers):
            fresh.append(f"{table}[{len(speakers) - len(shared)} new rows]")
    return copied, fresh


def _pretrain(config: Config, d: distributed.Distributed, resume: bool,
              progress: bool, deadline: float | None = None) -> PretrainResult:
    t = config.train
    run_dir = Path(t.run_dir)
    resume_from = resume_point(run_dir, resume)
    cache = feature_cache(config.data, run_dir, pitch=config.model.pitch)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        data = prepare(config.data, cache)  # computes missing features once
    distributed.barrier(d)
    if not d.is_main:
        data = prepare(config.data, cache)
    config = replace(config, model={"n_symbols": len(SYMBOLS), "n_speakers": len(data.speakers)})

    torch.manual_seed(t.seed)
    model = FastSpeech2(config.model, config.loss).to(d.device)
    model.speaker.new.requires_grad_(False)  # only adaptation uses the new-voice vector
    adapters = set(model.adapter_names())  # they stay at zero: adaptation's, not pretraining's
    for name, p in model.named_parameters():
        if name in adapters:
            p.requires_grad_(False)
    if config.model.pitch:  # over the training clips; a resumed run loads the same values
        model.set_pitch_stats(speaker_pitch_stats(data.train, cache, data.speakers).to(d.device))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  partial(lr_factor, warmup=t.warmup_steps))
    start = 0
    if resume_from is None and t.init_from:
        copied, fresh = warm_start(model, t.init_from, config.data.tokens, data.speakers)
        if d.is_main:
            table = "speaker.table.weight"
            rows = [n[len(table):] for n in copied if n.startswith(table + "[")]
            log.info("warm start from %s: %d tensors copied%s, %d start fresh (%s)", t.init_from,
                     len(copied) - len(rows), f" and the rows {rows[0]} of the speaker table "
                     "(speakers by name)" if rows else "", len(fresh),
                     ", ".join(fresh[:8]) + (" ..." if len(fresh) > 8 else ""))
    # the moving average (main process only: it checkpoints and validates)
    average = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay))
               if t.ema_decay > 0 and d.is_main else None)
    if resume_from is not None:
        _check_resumable(config, data, read_metadata(resume_from), resume_from)
        optimized = resume_from / TRAINING_WEIGHTS  # present when the run averages weights
        load_weights(model, optimized if optimized.is_file() else resume_from / MODEL_TENSORS)
        if average is not None:  # the saved model is the average (or, turned on now, its start)
            load_weights(average.module, resume_from / MODEL_TENSORS)
            average.n_averaged.fill_(1)
        start = load_training_state(resume_from, optimizer, scheduler)
        log.info("resuming %s at step %d", resume_from, start)
    if d.is_main:
        (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1))
        log.info("%d speakers, %d training and %d validation clips, %d parameters on %s x %d",
                 len(data.speakers), len(data.train), len(data.val), count_parameters(model),
                 d.device, d.world_size)

    step_model = model
    if d.world_size > 1:
        step_model = DistributedDataParallel(
            model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    log_file = (JsonlLog(run_dir / "log.jsonl", start if resume_from else None)
                if d.is_main else None)
    unseen = ()
    if d.is_main and config.model.speaker_encoder:
        unseen = zero_shot_voices(data.held_out, cache, config.model.pitch)
        log.info("zero-shot validation on %d held-out voices", len(unseen))
    adversary = None
    if t.adversarial_on:
        if d.world_size > 1:
            raise ConfigError("train.adversarial runs in one process only; run it without "
                              "torchrun, or set train.adversarial and feature_matching to 0.")
        if config.model.generation == 1:
            raise ConfigError("train.adversarial needs a v2 model (model.pitch or "
                              "model.speaker_encoder on).")
        adversary = Adversary(t, config.model.n_mels, config.model.speaker_dim, d.device)
        if resume_from is not None and adversary.load(resume_from):
            log.info("discriminator resumed at its step %d", adversary.steps)
        else:
            log.info("a new discriminator: %d steps alone before the generator's terms count",
                     t.adversarial_warmup)
    run = Run(config, model, step_model, optimizer, scheduler,
              _loader(data, cache, config, start, d), _val_batches(data, cache, config),
              SYMBOLS, data.speakers, d, run_dir, log_file, unseen, average, adversary)
    result = train(run, start, progress, deadline)
    return PretrainResult(run_dir, result.checkpoint, count_parameters(model), result)


def _loader(data: TrainingData, cache, config: Config, start: int,
            d: distributed.Distributed):
    t, m = config.train, config.model
    index = {name: i for i, name in enumerate(data.speakers)}
    sampler = StepBatches(data.frames, t.batch_size, t.seed, start, t.steps, d.rank, d.world_size)
    if m.generation == 1:
        return torch.utils.data.DataLoader(ExampleDataset(data.train, cache, index),
                                           batch_sampler=sampler, collate_fn=collate,
                                           num_workers=t.num_workers)
    if m.speaker_encoder:
        sampler = WithReferences(sampler, [u.speaker for u in data.train], t.seed,
                                 m.speaker_encoder_crop)
    return torch.utils.data.DataLoader(TrainingExamples(data.train, cache, index, m.pitch),
                                       batch_sampler=sampler, collate_fn=collate_train,
                                       num_workers=t.num_workers)


def _val_batches(data: TrainingData, cache, config: Config) -> tuple:
    """Held-out clips in batches; for v2 models with F0 and, as reference, a training clip of
    the same speaker (a fixed draw)."""
    index = {name: i for i, name in enumerate(data.speakers)}
    val, size = list(data.val), config.train.batch_size
    if config.model.generation == 1:
        return tuple(load_batch(val[i: i + size], cache, index) for i in range(0, len(val), size))
    pool = list(data.train) + val  # references come from the training clips (indices < len)
    items: list = list(range(len(data.train), len(pool)))
    if config.model.speaker_encoder:
        clips = clips_by_speaker([u.speaker for u in data.train])
        g = torch.Generator().manual_seed(config.train.seed)
        items = [reference_choice(clips[pool[i].speaker], i, data.frames,
                                  config.model.speaker_encoder_crop, g) for i in items]
    dataset = TrainingExamples(pool, cache, index, config.model.pitch)
    return tuple(collate_train([dataset[x] for x in items[i: i + size]])
                 for i in range(0, len(items), size))


# model settings a resumed run may change besides the loss weights: what the objective asks,
# not what the model is (e.g. continuing a pretrained model with speaker consistency switched on)
OBJECTIVE = frozenset({"novel_voices", "novel_range", "warp_voices", "warp_range",
                       "reference_dropout", "reference_only"})


def _check_resumable(config: Config, data: TrainingData, meta: dict, path: Path) -> None:
    """A resumed run must train the same model on the same data (steps, loss weights and the
    :data:`OBJECTIVE` settings may change)."""
    saved = to_dict(from_dict(Config, meta["config"]))  # fields added since default as they did
    now = to_dict(config)
    for section in ("model", "data"):
        free = OBJECTIVE if section == "model" else frozenset()
        changed = sorted(k for k in now[section]
                         if saved[section].get(k) != now[section][k] and k not in free)
        if changed:
            raise ConfigError(f"cannot resume {path}: config section {section!r} changed "
                              f"({', '.join(changed)}). Resume with the config it was "
                              "trained with.")
    if tuple(meta["speakers"]) != data.speakers:
        raise CheckpointError(f"cannot resume {path}: the training speakers differ from the "
                              "checkpoint's (did the dataset change?).")

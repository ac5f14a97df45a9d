"""Meta-training: learn where adaptation starts, by MAML, first-order MAML or Reptile.

Run it as ``python -m metatts train --config configs/meta_tiny.json [--algo maml] [--resume]``,
or data-parallel with ``torchrun --nproc_per_node N -m metatts train ...``. It starts from a
pretrained checkpoint (``meta.init``), whose model and loss sections it keeps.

Each outer step draws ``meta.meta_batch`` episodes of the training speakers (one speaker each: k
support clips, q query clips, no sentence in common). A task's clips all use speaker
``NEW_SPEAKER``, so adaptation starts from ``speaker.new``, which MAML and FOMAML meta-learn with
the rest of the network (and Reptile when "embedding" is among the adapted groups). Data-parallel:
the meta-batch's tasks are dealt out over the processes and the task-weighted mean of their
meta-gradients is all-reduced. Validation adapts to episodes of the validation speakers (eval mode,
seeded) and logs the mean query loss after each of ``meta.val_steps`` inner steps.
With ``meta.learn_inner_lrs`` (Meta-SGD) the outer loop also learns one inner learning rate per
adapted element (kept >= 0); they are saved as inner_lrs.safetensors beside the weights, and
adaptation from the checkpoint steps with them.
Checkpoints, resume, log.jsonl and losses.png work as in pretraining (:mod:`metatts.train.loop`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from metatts.data import (DatasetError, EpisodeSampler, FeatureCache, Utterance, collate,
                          split_speakers)
from metatts.data.batch import Batch, Example
from metatts.data.episodes import Episode
from metatts.frames import corrected_loss
from metatts.meta.inner_loop import IDENTITY, spoken_mels
from metatts.meta.params import adapted_names
from metatts.meta.support import fixed_alignment
from metatts.meta import (InnerConfig, InnerLearningRates, MetaGradient, Task, initial_params,
                          inner_loop, loss_fn, meta_gradient, write_grads)
from metatts.model.checkpoint import (CRITIC_TENSORS, INNER_LRS, MODEL_TENSORS, Checkpoint,
                                      CheckpointError, latest_checkpoint, load_checkpoint,
                                      load_inner_lrs, load_training_state, load_weights,
                                      read_metadata, shipped_checkpoint)
from metatts.model.config import (Config, ConfigError, DataConfig, MetaConfig, load_config,
                                   replace, to_dict)
from metatts.model.fastspeech2 import NEW_SPEAKER, count_parameters
from metatts.train import distributed
from metatts.train.data import feature_cache, pretraining_split, read_utterances
from metatts.train.logging import JsonlLog, plot_losses, read_log
from metatts.train.loop import LoopResult, resume_point, save_step, time_is_up
from metatts.train.schedule import step_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetaTrainResult:
    run_dir: Path
    checkpoint: Path | None  # the latest checkpoint after training
    parameters: int
    loop: LoopResult


def inner_config(meta: MetaConfig, steps: int | None = None, seed: int | None = None
                 ) -> InnerConfig:
    """The shared inner loop's settings from ``meta.inner`` (``steps`` overrides its count)."""
    i = meta.inner
    return InnerConfig(groups=i.groups, steps=i.steps if steps is None else steps, lr=i.lr,
                       optimizer=i.optimizer, batching=i.batching, batch_size=i.batch_size,
                       betas=i.betas, eps=i.eps, seed=seed, proximal=i.proximal,
                       terms=tuple(i.terms), lock_timing=i.lock_timing,
                       precision=i.precision, identity=i.identity, verifier=i.verifier,
                       verifier_every=i.verifier_every)


def encoder_start(model: torch.nn.Module):
    """meta.start "encoder": a task starts from the speaker encoder's vector of its support
    clips (differentiable, so that the outer loop trains the encoder for where adaptation
    goes)."""
    def start(task: Task) -> dict[str, torch.Tensor]:
        return {"speaker.new": model.speaker_encoder.pool_clips([x.mel for x in task.support])}

    return start


def init_path(meta: MetaConfig) -> Path:
    """The pretrained checkpoint meta-training starts from."""
    return Path(meta.init) if meta.init else shipped_checkpoint("pretrained")


def run_config(config: Config, base: Checkpoint, init: Path) -> Config:
    """The run's config: model, loss and post-filter of the init checkpoint (a meta-learned
    start synthesizes like the model it came from), the rest from ``config``."""
    if config.data.tokens != base.config.data.tokens:
        raise ConfigError(f"data.tokens is {config.data.tokens!r} but {init} was trained on "
                          f"{base.config.data.tokens!r}; set data.tokens to match it.")
    # a base trained adversarially carries its discriminator (the inner loop's critic terms):
    # the run's checkpoints keep it and the settings that rebuild it
    critic = ({} if getattr(base.model, "critic", None) is None else
              {"train": {k: getattr(base.config.train, k)
                         for k in ("adversarial_window", "adversarial_channels")}})
    return replace(config, model=to_dict(base.config.model), loss=to_dict(base.config.loss),
                   postfilter=to_dict(base.config.postfilter), meta={"init": str(init)},
                   **critic)


def critic_files(model: torch.nn.Module) -> dict | None:
    """The fixed discriminator a model carries (``model.critic``), as checkpoint files."""
    critic = getattr(model, "critic", None)
    if critic is None:
        return None
    return {CRITIC_TENSORS: {k: v.detach().cpu().contiguous()
                             for k, v in critic.state_dict().items()}}


def usable(utterances: Sequence[Utterance], cache: FeatureCache) -> list[Utterance]:
    """Clips whose features could be computed and that have a mel frame for every token."""
    failed = cache.warm(utterances)
    kept = []
    for u in utterances:
        if u.id in failed:
            continue
        f = cache.get(u)
        if f.mel.shape[-1] >= len(f.tokens):
            kept.append(u)
    if len(kept) < len(utterances):
        log.warning("left out %d of %d clips (feature errors or too short)",
                    len(utterances) - len(kept), len(utterances))
    return kept


def reserved_speakers(pretrained_on: DataConfig) -> set[str]:
    """The speakers a checkpoint's pretraining left out for meta-training (its data config's
    ``meta_speakers``), dealt as that pretraining dealt them."""
    if not pretrained_on.meta_speakers:
        return set()
    _, reserved = pretraining_split(pretrained_on, read_utterances(pretrained_on))
    return {u.speaker for u in reserved}


def with_checkpoint(checkpoint: str | Path, config_path: str | Path
                    ) -> tuple[Checkpoint, Config, FeatureCache]:
    """A checkpoint, a meta config with that checkpoint's model section, and the config's feature
    cache: what a benchmark needs to draw and adapt episodes as meta-training does."""
    base = load_checkpoint(checkpoint)
    config = replace(load_config(config_path), model=dataclasses.asdict(base.config.model))
    cache = feature_cache(config.data, Path(config.train.run_dir), pitch=base.config.model.pitch)
    return base, config, cache


def task_filter(patterns: Sequence[str]) -> Callable[[Utterance], bool]:
    """``meta.task_speakers`` as a predicate: a clip qualifies when its speaker name matches one
    shell pattern or its voice group is named by a "group:NAME" entry (no entries: every clip)."""
    names = [p for p in patterns if not p.startswith("group:")]
    groups = {p.removeprefix("group:") for p in patterns if p.startswith("group:")}

    def keep(u: Utterance) -> bool:
        return not patterns or u.group in groups or any(fnmatch.fnmatchcase(u.speaker, p)
                                                         for p in names)
    return keep


def samplers(config: Config, cache: FeatureCache, pretrained_on: DataConfig | None = None
             ) -> tuple[EpisodeSampler, EpisodeSampler | None]:
    """Episode samplers of the training speakers and of the validation speakers (None if the
    speaker split has none). ``pretrained_on``: the init checkpoint's data config; when its
    pretraining reserved speakers for meta-training (``meta_speakers``), the training tasks are
    those speakers only (voices the model never heard). ``meta.task_speakers`` narrows the task
    speakers further (e.g. to packs and engine voices, whose tasks adaptation helps:
    ``benchmarks/task_groups.py``)."""
    m, d = config.meta, config.data
    splits = split_speakers(read_utterances(d), d.val_speakers, d.test_speakers, d.split_seed)
    train = splits.train
    reserved = reserved_speakers(pretrained_on) if pretrained_on is not None else set()
    if reserved:
        train = tuple(u for u in train if u.speaker in reserved)
        if not train:
            raise DatasetError("the init checkpoint's pretraining reserved speakers for "
                               "meta-training (data.meta_speakers), but none of them is in this "
                               "config's training split; use the same data.datasets.")
        log.info("meta-training tasks from %d speakers the init checkpoint's pretraining left "
                 "out (data.meta_speakers %g)", len({u.speaker for u in train}),
                 pretrained_on.meta_speakers)
    if m.task_speakers:
        pool = len({u.speaker for u in train})
        keep = task_filter(m.task_speakers)
        train = tuple(u for u in train if keep(u))
        if not train:
            raise DatasetError(f"no training speaker matches meta.task_speakers "
                               f"{list(m.task_speakers)} (of {pool} speakers); check the patterns "
                               "against `python -m metatts inspect`.")
        log.info("meta-training tasks from %d of %d training speakers (meta.task_speakers: %s)",
                 len({u.speaker for u in train}), pool, ", ".join(m.task_speakers))
    train_clips = usable(train, cache)
    if not train_clips:
        raise DatasetError("no training speakers left after the speaker split; lower "
                           "data.val_speakers / data.test_speakers.")
    train = EpisodeSampler(train_clips, m.k, m.q, config.train.seed, skip_small_speakers=True)
    if train.excluded:
        log.warning("%d training speaker(s) have fewer than k + q = %d distinct texts and are "
                    "left out: %s", len(train.excluded), m.k + m.q, ", ".join(train.excluded))
    if not splits.val:
        log.warning("no validation speakers (data.val_speakers is 0): no validation")
        return train, None
    return train, EpisodeSampler(usable(splits.val, cache), m.k, m.q, config.train.seed,
                                 skip_small_speakers=True)


def episode_task(episode: Episode, cache: FeatureCache) -> Task:
    """An episode as a task of examples for speaker NEW_SPEAKER (the voice being adapted), with
    frame F0 when the cache extracts it (pitch models)."""
    def examples(utterances: Sequence[Utterance]) -> list[Example]:
        return [Example(u.id, NEW_SPEAKER, (f := cache.get(u)).tokens, f.mel, f0=f.f0)
                for u in utterances]

    return Task(support=examples(episode.support), query=examples(episode.query))


def warped_task(task: Task, max_log: float) -> Task:
    """``task`` as a voice no training speaker has: every clip's log-mel and F0 scaled in
    frequency by one factor exp(u), u uniform in [-max_log, max_log] from torch's global
    generator (the trainer seeds it per step), the same u for support and query."""
    from metatts.audio import warp_mel

    factor = math.exp(float((torch.rand(()) * 2 - 1) * max_log))

    def warp(x: Example) -> Example:
        return dataclasses.replace(x, mel=warp_mel(x.mel, factor),
                                   f0=None if x.f0 is None else x.f0 * factor)

    return Task(support=[warp(x) for x in task.support], query=[warp(x) for x in task.query])


def combine(mg: MetaGradient, d: distributed.Distributed
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The mean meta-gradients (model parameters, Meta-SGD rates) over every process's tasks
    (each process's mean weighted by its number of tasks)."""
    if d.world_size == 1:
        return mg.grads, mg.lr_grads
    grads = {**{("w", n): g for n, g in mg.grads.items()},
             **{("lr", n): g for n, g in mg.lr_grads.items()}}
    names = sorted(grads)
    flat = torch.cat([grads[n].reshape(-1) * mg.tasks for n in names]
                     + [torch.tensor([float(mg.tasks)], device=d.device)])
    dist.all_reduce(flat)
    flat = flat[:-1] / flat[-1]
    out: dict[str, dict[str, torch.Tensor]] = {"w": {}, "lr": {}}
    offset = 0
    for kind, n in names:
        size = grads[kind, n].numel()
        out[kind][n] = flat[offset: offset + size].view_as(grads[kind, n])
        offset += size
    return out["w"], out["lr"]


def step_losses(mg: MetaGradient, d: distributed.Distributed) -> dict[str, float]:
    """Query loss at the adapted parameters and support loss before the first and the last inner
    step, each averaged over all tasks of all processes."""
    sums = [sum(mg.query_losses), sum(s[0] for s in mg.support_losses if s),
            sum(s[-1] for s in mg.support_losses if s), float(mg.tasks)]
    if d.world_size > 1:
        t = torch.tensor(sums, dtype=torch.float64, device=d.device)
        dist.all_reduce(t)
        sums = t.tolist()
    out = {"query": sums[0] / sums[3]}
    if any(mg.support_losses):
        out.update(support_first=sums[1] / sums[3], support_last=sums[2] / sums[3])
    return out


def validate(model: torch.nn.Module, tasks: Sequence[Task], meta: MetaConfig,
             device: torch.device, lrs: dict[str, torch.Tensor] | None = None,
             identity: bool = False) -> dict[str, float]:
    """Mean query loss of ``tasks`` after each of ``meta.val_steps`` inner steps from the
    model's current start (eval mode, seeded: the same model gives the same numbers), with
    Meta-SGD's rates ``lrs`` when given; with ``identity``, also the query clips' identity
    distance (``identity_after_N``: the model's own speaker encoder's view of the voice, see
    FastSpeech2.identity_distance; no judge model); with ``meta.query_frames``, also the query
    clips' loss after frame matching on the support clips (``frames_after_N``:
    metatts.frames.corrected_loss); with ``meta.query_verifier`` or ``meta.inner.verifier``,
    also the query clips' verifier term (``verifier_after_N``: metatts.verifier.distance on
    whole clips, the corpus-trained verifier; no judge model); with ``meta.query_support``,
    also the support clips' loss (``support_after_N``)."""
    if not tasks:
        return {}
    was_training = model.training
    model.eval()

    def batch(items: list[Example]) -> Batch:
        return collate(items).to(device)

    counts = sorted(set(meta.val_steps))
    cfg = inner_config(meta, steps=counts[-1], seed=0)
    sums = dict.fromkeys(counts, 0.0)
    distances = dict.fromkeys(counts, 0.0)
    corrected = dict.fromkeys(counts, 0.0)
    heard = dict.fromkeys(counts, 0.0)
    fits = dict.fromkeys(counts, 0.0)
    hears = meta.query_verifier > 0 or meta.inner.verifier > 0
    for task in tasks:  # one run of the longest budget keeps the parameters at every count
        result = adapt_task(model, task, meta, cfg, device, counts, lrs)
        query = batch(list(task.query))
        support = batch(list(task.support)) if meta.query_frames else None
        aligned = (batch(fixed_alignment(model, task.support, list(result.kept[0]), device))
                   if meta.query_support else None)  # as the training steps see it
        with torch.no_grad():
            for steps in counts:
                sums[steps] += float(loss_fn(model, fixed=result.fixed)(result.kept[steps], query))
                if meta.query_support:
                    fits[steps] += float(loss_fn(model, fixed=result.fixed)(result.kept[steps],
                                                                            aligned))
                if identity:
                    distances[steps] += float(loss_fn(model, (IDENTITY,), result.fixed)(
                        result.kept[steps], query))
                if meta.query_frames:
                    corrected[steps] += float(corrected_loss(
                        model, result.kept[steps], support, query, fixed=result.fixed))
                if hears:
                    heard[steps] += query_verifier_distance(model, result.kept[steps], query,
                                                            result.fixed)
    model.train(was_training)
    out = {f"query_after_{steps}": total / len(tasks) for steps, total in sums.items()}
    if identity:
        out.update({f"identity_after_{steps}": total / len(tasks)
                    for steps, total in distances.items()})
    if meta.query_frames:
        out.update({f"frames_after_{steps}": total / len(tasks)
                    for steps, total in corrected.items()})
    if hears:
        out.update({f"verifier_after_{steps}": total / len(tasks)
                    for steps, total in heard.items()})
    if meta.query_support:
        out.update({f"support_after_{steps}": total / len(tasks)
                    for steps, total in fits.items()})
    return out


def query_verifier_distance(model: torch.nn.Module, params: dict[str, torch.Tensor],
                            query: Batch, fixed: dict[str, torch.Tensor]) -> float:
    """The shipped verifier's term of ``query`` spoken (teacher-forced) with ``params``: whole
    clips (no random window), against the query clips' own centroid."""
    from metatts import verifier

    judge = verifier.load()
    spoken = spoken_mels(model, params, query, fixed)
    target = verifier.centroid(judge, [query.mels], [query.mel_lengths])
    return float(verifier.distance(judge, [spoken], target, [query.mel_lengths], crop=0))


def adapt_task(model: torch.nn.Module, task: Task, meta: MetaConfig, cfg: InnerConfig,
               device: torch.device, keep: Sequence[int],
               lrs: dict[str, torch.Tensor] | None = None):
    """The inner loop ``cfg`` on ``task``'s support clips (alignment fixed beforehand) from the
    model's start (the encoder's vector of the support clips when ``meta.start`` is "encoder"),
    keeping the parameters after each of ``keep`` steps: an :class:`InnerResult`."""
    start = initial_params(model, cfg.groups, detach=True)
    if meta.start == "encoder":
        with torch.no_grad():
            start.update(encoder_start(model)(task))
    support = fixed_alignment(model, task.support, list(start), device)
    fixed = None if lrs is None else {n: r.detach() for n, r in lrs.items()}
    return inner_loop(model, start, support, lambda items: collate(items).to(device), cfg,
                      keep=keep, lrs=fixed)


def meta_train(config: Config, *, resume: bool = False, progress: bool = False,
               deadline: float | None = None) -> MetaTrainResult:
    """Meta-train to ``config.meta.steps`` outer steps, continuing the latest checkpoint if
    ``resume``. The checkpoints carry ``config.meta``, which adaptation reads (init "meta")."""
    if config.meta is None:
        raise ConfigError("meta-training needs a meta section in the config (e.g. "
                          "configs/meta_tiny.json), or --algo.")
    d = distributed.setup(config.train.device)
    try:
        return _meta_train(config, d, resume, progress, deadline)
    finally:
        distributed.teardown()


def _meta_train(config: Config, d: distributed.Distributed, resume: bool,
                progress: bool, deadline: float | None = None) -> MetaTrainResult:
    t, run_dir = config.train, Path(config.train.run_dir)
    resume_from = resume_point(run_dir, resume)
    if config.meta.meta_batch < d.world_size:
        raise ConfigError(f"meta.meta_batch ({config.meta.meta_batch}) must be at least the "
                          f"number of processes ({d.world_size}).")
    init = init_path(config.meta)
    base = load_checkpoint(init, d.device)
    config = run_config(config, base, init)
    m = config.meta
    cache = feature_cache(config.data, run_dir, pitch=config.model.pitch)
    if m.start == "encoder" and base.model.speaker_encoder is None:
        raise ConfigError(f"meta.start is 'encoder' but {init} has no speaker encoder "
                          "(model.speaker_encoder is off); use meta.start 'learned'.")
    if m.uses_identity and base.model.speaker_encoder is None:
        raise ConfigError(f"meta.query_identity / meta.inner.identity need the model's speaker "
                          f"encoder, and {init} has none; set them to 0.")
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # computes missing features once
        train_episodes, val_episodes = samplers(config, cache, base.config.data)
    distributed.barrier(d)
    if not d.is_main:
        train_episodes, val_episodes = samplers(config, cache, base.config.data)

    model = base.model.train()
    learned = {n for g in m.outer_groups for n in model.parameter_groups()[g]}
    critic = critic_files(model)  # fixed: the same files in every checkpoint
    if m.start == "encoder" and m.learn_encoder:  # the encoder computes the start: it learns
        # where to begin (learn_encoder False keeps the pretrained encoder as it is)
        learned |= {n for n, _ in model.named_parameters() if n.startswith("speaker_encoder.")}
    for name, p in model.named_parameters():  # the rest keeps its pretrained values
        p.requires_grad_(name in learned)
    model.speaker.table.weight.requires_grad_(False)  # tasks only use the new-voice vector
    model.speaker.new.requires_grad_(m.learn_new_speaker and "speaker.new" in learned
                                     and m.start == "learned")
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    param_groups = [{"params": list(named.values())}] if named else []  # none: rates alone
    rates = None
    if m.learn_inner_lrs:  # Meta-SGD: one rate per adapted element (or tensor), from inner.lr
        rates = InnerLearningRates(initial_params(model, m.inner.groups, detach=True),
                                   m.inner.lr, per_tensor=m.lrs_per_tensor).to(d.device)
        param_groups.append({"params": list(rates.parameters()), "lr": m.lrs_outer_lr})
    optimizer = (torch.optim.Adam(param_groups, lr=m.outer_lr) if m.outer_optimizer == "adam"
                 else torch.optim.SGD(param_groups, lr=m.outer_lr))
    start = 0
    if resume_from is not None:
        _check_resumable(config, read_metadata(resume_from), resume_from)
        load_weights(model, resume_from / MODEL_TENSORS)
        if rates is not None:
            saved = load_inner_lrs(model, resume_from / INNER_LRS)
            with torch.no_grad():
                for name, r in rates.as_dict().items():
                    r.copy_(saved[name])
        start = load_training_state(resume_from, optimizer)
        log.info("resuming %s at step %d", resume_from, start)
    if d.is_main:
        (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1))
        log.info("%s from %s: %d training speakers, %d parameters meta-learned, on %s x %d",
                 m.algo, init, len(train_episodes.speakers), count_parameters(model, list(named)),
                 d.device, d.world_size)
    val_tasks = ([episode_task(val_episodes.sample(i), cache) for i in range(m.val_episodes)]
                 if val_episodes is not None else [])
    log_file = (JsonlLog(run_dir / "log.jsonl", start if resume_from else None)
                if d.is_main else None)

    def batch(items: list[Example]) -> Batch:
        return collate(items).to(d.device)

    if d.is_main and start == 0 and val_tasks:  # where adaptation starts before meta-training
        log_file.write({"split": "val", "step": 0,
                        **validate(model, val_tasks, m, d.device, _lrs(rates),
                                   identity=m.uses_identity)})
    cfg = inner_config(m)
    adapted = adapted_names(model, cfg.groups)
    step, sums, count, last_train, last_val = start, {}, 0, {}, {}
    bar = tqdm(total=m.steps, initial=start, disable=not (progress and d.is_main), unit="step",
               dynamic_ncols=True)
    started = time.perf_counter()
    for step in range(start + 1, m.steps + 1):
        torch.manual_seed(step_seed(t.seed, step, d.rank))
        episodes = train_episodes.meta_batch(step, m.meta_batch)[d.rank:: d.world_size]
        tasks = [episode_task(e, cache) for e in episodes]
        if m.warp_tasks > 0:  # voices the pretrained model has not heard (MetaConfig)
            tasks = [warped_task(t, m.warp_range) if float(torch.rand(())) < m.warp_tasks
                     else t for t in tasks]
        tasks = [Task(fixed_alignment(model, t.support, adapted, d.device), t.query)
                 for t in tasks]  # support aligned once per step by the current aligner
        mg = meta_gradient(model, tasks, batch, cfg, m.algo, lrs=_lrs(rates),
                           start_fn=encoder_start(model) if m.start == "encoder" else None,
                           query_identity=m.query_identity, query_frames=m.query_frames,
                           query_verifier=m.query_verifier, query_steps=m.query_steps,
                           query_support=m.query_support)
        grads, lr_grads = combine(mg, d)
        grads = {n: g for n, g in grads.items() if n in named}
        grad_norm = float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.double())
                         for g in [*grads.values(), *lr_grads.values()]])))
        if not math.isfinite(grad_norm):  # all-reduced: every process agrees
            raise FloatingPointError(
                f"non-finite meta-gradient at step {step}; lower meta.outer_lr or "
                "meta.inner.lr, then resume from the last checkpoint.")
        optimizer.zero_grad(set_to_none=True)
        write_grads(named, grads)
        if rates is not None:
            write_grads(rates.as_dict(), lr_grads)
        optimizer.step()
        if rates is not None:  # a negative rate would step uphill
            with torch.no_grad():
                for r in rates.parameters():
                    r.clamp_(min=0.0)
        for k, v in step_losses(mg, d).items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        bar.update(1)
        if step % t.log_every == 0 or step == m.steps:
            last_train = {k: v / count for k, v in sums.items()}
            if log_file is not None:
                rate = (step - start) / (time.perf_counter() - started)
                extra = {} if rates is None else {"inner_lr_mean": float(torch.cat(
                    [r.detach().reshape(-1) for r in rates.parameters()]).mean())}
                log_file.write({"split": "train", "step": step, **last_train, **extra,
                                "grad_norm": grad_norm, "steps_per_second": rate})
            bar.set_postfix(query=f"{last_train['query']:.3f}")
            sums, count = {}, 0
        if d.is_main and (step % t.validate_every == 0 or step == m.steps):
            last_val = validate(model, val_tasks, m, d.device, _lrs(rates),
                                identity=m.uses_identity)
            if last_val:
                log_file.write({"split": "val", "step": step, **last_val})
            plot_losses(read_log(log_file.path), run_dir / "losses.png")
        stop = step % t.log_every == 0 and time_is_up(deadline, d)
        if step % t.checkpoint_every == 0 or step == m.steps or stop:
            if d.is_main:
                save_step(run_dir, step, model, config, base.symbols, base.speakers, optimizer,
                          inner_lrs=_lrs(rates), extra_files=critic)
            distributed.barrier(d)
        if stop:
            log.info("time is up: stopped at step %d (resume with --resume)", step)
            break
    bar.close()
    elapsed = time.perf_counter() - started
    loop = LoopResult(step, latest_checkpoint(run_dir), last_train, last_val,
                      (step - start) / elapsed if elapsed > 0 and step > start else math.nan)
    return MetaTrainResult(run_dir, loop.checkpoint, count_parameters(model), loop)


def _lrs(rates: InnerLearningRates | None) -> dict[str, torch.Tensor] | None:
    return None if rates is None else rates.as_dict()


def _check_resumable(config: Config, meta: dict, path: Path) -> None:
    """A resumed run must meta-train the same model the same way (meta.steps may change)."""
    saved, now = meta["config"], to_dict(config)
    if saved.get("meta") is None:
        raise CheckpointError(f"cannot resume {path}: it is not a meta-training checkpoint.")
    saved["meta"]["steps"] = now["meta"]["steps"]
    for section in ("model", "loss", "data", "meta"):
        if saved[section] != now[section]:
            changed = sorted(k for k in now[section] if saved[section].get(k) != now[section][k])
            raise ConfigError(f"cannot resume {path}: config section {section!r} changed "
                              f"({', '.join(changed)}). Resume with the config it was "
                              "trained with.")

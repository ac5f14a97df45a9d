"""Does meta-training's first-order rate gradient point where the query loss goes?

With learned inner rates and an Adam inner loop, FOMAML's gradient of the query loss with
respect to a rate is the query gradient at the adapted parameters dotted with the sum of that
tensor's updates divided by its rate: exact for one step, first-order over more (the updates are
taken as constants although they depend on the rate). Every learned-rate run here lowered the
rates (docs/experiments.md, "Learned rates for an objective that also counts the fit"). This
script checks the estimate against the query loss itself, on one direction: every rate scaled by
one factor s around the start (all at ``meta.inner.lr``). Per task it compares

- the first-order estimate of dL/ds at s = 1: the sum over tensors of the rate's gradient times
  the rate (``task_gradient(..., lrs=...)``, as the trainer computes it), and
- a central difference (L(1 + eps) - L(1 - eps)) / (2 eps) of the query loss after the same
  inner loop run at the scaled rates,

on validation and training episodes of a meta config. Teacher-forced losses only, no judge.
The model is in eval mode (no dropout) and the steps in float32, so that the two agree where
the estimate is right.

    python benchmarks/rate_gradient.py --config configs/meta_v2_lslr_warp.json --tasks 6 \\
        --out results/rate_gradient.json
    python benchmarks/rate_gradient.py --config configs/meta_v2_shifted_lslr.json --tasks 6 \\
        --set 'meta.inner.terms=["mel","postnet","pitch","energy"]' \\
        --out results/rate_gradient_shifted.json   # the voices of scripts/shifted_task_voices.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metatts.cli.train import parse_set  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.data import collate  # noqa: E402
from metatts.meta import InnerLearningRates, Task, initial_params, task_gradient  # noqa: E402
from metatts.meta.inner_loop import loss_fn  # noqa: E402
from metatts.meta.support import fixed_alignment  # noqa: E402
from metatts.model.config import load_config  # noqa: E402
from metatts.train.data import feature_cache  # noqa: E402
from metatts.train.meta import (adapt_task, encoder_start, episode_task,  # noqa: E402
                                init_path, inner_config, run_config, samplers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/meta_v2_lslr_warp.json"))
    p.add_argument("--tasks", type=int, default=6, help="episodes per split")
    p.add_argument("--eps", type=float, default=0.2, help="relative change of every rate")
    p.add_argument("--steps", type=int, default=None, help="inner steps (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting of --config, as `python -m metatts train` does")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    config = load_config(args.config, parse_set(args.set))
    base = load_checkpoint(init_path(config.meta))
    config = run_config(config, base, init_path(config.meta))  # the model's sections, as trained
    m = config.meta
    model = base.model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    cache = feature_cache(config.data, Path(config.train.run_dir), pitch=config.model.pitch)
    train, val = samplers(config, cache, base.config.data)
    cfg = dataclasses.replace(inner_config(m, steps=args.steps), precision="float32", seed=0)
    start_fn = encoder_start(model)
    rows = []
    started = time.perf_counter()
    for split, sampler in (("val", val), ("train", train)):
        for i in range(args.tasks):
            episode = sampler.sample(i) if split == "val" else sampler.meta_batch(i + 1, 1)[0]
            task = episode_task(episode, cache)
            adapted = initial_params(model, cfg.groups, detach=True)
            task = Task(fixed_alignment(model, task.support, list(adapted)), task.query)
            lrs = InnerLearningRates(adapted, cfg.lr, per_tensor=True).as_dict()
            first = task_gradient(model, task, collate, cfg, "fomaml", lrs=lrs,
                                  start_fn=start_fn)
            estimate = sum(float((g * lrs[n].detach()).sum())
                           for n, g in first.lr_grads.items())

            def query_at(scale: float) -> float:  # the trainer's validation inner loop
                result = adapt_task(model, task, m, cfg, "cpu", (),
                                    {n: r * scale for n, r in lrs.items()})
                with torch.no_grad():
                    return float(loss_fn(model, fixed=result.fixed)(
                        result.params, collate(list(task.query))))

            low, mid, high = (query_at(s) for s in (1 - args.eps, 1.0, 1 + args.eps))
            difference = (high - low) / (2 * args.eps)
            rows.append({"split": split, "task": i, "speaker": episode.speaker,
                         "query_loss": mid, "low": low, "high": high,
                         "first_order": estimate, "difference": difference,
                         "same_sign": (estimate > 0) == (difference > 0)})
            print(f"{split} {i} ({episode.speaker}): query {mid:.4f} (x{1 - args.eps:g} {low:.4f}, "
                  f"x{1 + args.eps:g} {high:.4f}); dL/ds first-order {estimate:+.4f}, "
                  f"difference {difference:+.4f}", flush=True)
    agree = sum(r["same_sign"] for r in rows)
    print(f"signs agree on {agree} of {len(rows)} tasks; "
          f"{time.perf_counter() - started:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "config": args.config, "eps": args.eps, "inner_steps": cfg.steps,
            "precision": cfg.precision, "rows": rows, "signs_agree": agree}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

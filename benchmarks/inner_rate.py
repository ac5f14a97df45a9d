"""Which inner loop suits a checkpoint before meta-training it: query loss after 0..N steps.

For each inner-loop variant (optimizer, learning rate, adapted groups, start, guards), adapt
from the checkpoint on the support clips of ``--episodes`` validation episodes (the meta config's
speaker split, k support + q query clips of other sentences, seeded) and report the mean query
loss (the meta-objective, teacher-forced, no judge model) after each step count, as
meta-training's validation computes it. Same tasks for every variant, so the differences are paired.
With a speaker encoder in the model, also the query clips' identity distance (``id@N``: the
model's own encoder's vector of the teacher-forced query prediction against its vector of the real
clip, FastSpeech2.identity_distance; no judge model either).

    python benchmarks/inner_rate.py --checkpoint checkpoints/pretrained \
        --config configs/meta_v2.json --variants adam:0.01 adam:0.003 adam:0.001
A variant is ``optimizer:lr[:groups=a+b][:start=mean|encoder][:lock_timing=0|1][:proximal=W]
[:identity=W][:vector_lr=R]`` (``vector_lr``: the speaker vector's own rate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.train.meta import episode_task, samplers, validate, with_checkpoint  # noqa: E402


def parse_variant(text: str) -> tuple[dict, str]:
    parts = text.split(":")
    fields = {"optimizer": parts[0], "lr": float(parts[1])}
    start = "encoder"
    for part in parts[2:]:
        key, value = part.split("=")
        if key == "groups":
            fields["groups"] = tuple(value.split("+"))
        elif key == "start":
            start = value
        elif key == "lock_timing":
            fields["lock_timing"] = value == "1"
        elif key == "proximal":
            fields["proximal"] = float(value)
        elif key == "identity":
            fields["identity"] = float(value)
        elif key == "vector_lr":  # the speaker vector's own Adam rate (the rest: lr)
            fields["vector_lr"] = float(value)
        else:
            raise SystemExit(f"unknown variant field {key!r} in {text!r}")
    return fields, start


def rates(model: torch.nn.Module, inner, vector_lr: float | None
          ) -> dict[str, torch.Tensor] | None:
    """Per-tensor rates (the inner loop's ``lrs``, one per adapted tensor): ``inner.lr`` for
    every adapted tensor but the speaker vector, which steps at ``vector_lr``; None without it."""
    if vector_lr is None:
        return None
    groups = model.parameter_groups()
    names = sorted({n for g in inner.groups for n in groups[g]})
    if "speaker.new" not in names:
        raise SystemExit(f"vector_lr: the groups {inner.groups} do not adapt the speaker vector")
    shapes = dict(model.named_parameters())
    return {n: torch.full([1] * shapes[n].dim(), vector_lr if n == "speaker.new" else inner.lr)
            for n in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/pretrained")
    p.add_argument("--config", default="configs/meta_v2.json")
    p.add_argument("--variants", nargs="+", default=["adam:0.01", "adam:0.003", "adam:0.001"])
    p.add_argument("--steps", default="0,5,10,20")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--out", default="runs/bench/inner_rate.json")
    args = p.parse_args(argv)

    base, config, cache = with_checkpoint(args.checkpoint, args.config)
    _, val = samplers(config, cache)
    tasks = [episode_task(val.sample(i), cache) for i in range(args.episodes)]
    counts = [int(s) for s in args.steps.split(",")]
    rows = []
    for text in args.variants:
        fields, start_kind = parse_variant(text)
        # the meta-training validation itself (metatts.train.meta.validate) with this inner loop;
        # its "learned" start is the checkpoint's speaker.new, the mean voice in a pretrained one
        vector_lr = fields.pop("vector_lr", None)
        meta = dataclasses.replace(config.meta, inner=dataclasses.replace(config.meta.inner,
                                                                          **fields),
                                   start="encoder" if start_kind == "encoder" else "learned",
                                   val_steps=tuple(counts))
        started = time.perf_counter()
        losses = validate(base.model, tasks, meta, torch.device("cpu"),
                          rates(base.model, meta.inner, vector_lr),
                          identity=base.model.speaker_encoder is not None)
        row = {"variant": text, "start": start_kind, "tasks": len(tasks),
               "seconds": round(time.perf_counter() - started, 1), **losses}
        rows.append(row)
        print(f"{text:40s} " + " ".join(f"q@{c}={row[f'query_after_{c}']:.3f}" for c in counts)
              + "".join(f" id@{c}={row[f'identity_after_{c}']:.4f}" for c in counts
                        if f"identity_after_{c}" in row)
              + f"  ({row['seconds']} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": base.step,
                               "config": args.config, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

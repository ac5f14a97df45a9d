"""How smooth an adapted voice's mels are: the spectral detail ratio after 0..N inner steps.

For ``--episodes`` validation episodes (the meta config's speaker split; never a test voice),
adapt from the checkpoint on the support clips with the config's inner loop (encoder start), and
after each step count measure the teacher-forced mels of the query clips (other sentences)
against their real mels: the RMS detail of the real mels over that of the predicted ones, across
mel bins and across frames (:func:`metatts.postfilter.detail_ratios`; 1.0: as detailed as
speech, 2.0: half its detail), before any post-filter. ``--terms`` sets the inner loop's loss
terms (e.g. ``mel+pitch+energy+critic_fm+critic_adv`` for a checkpoint with a discriminator).
No judge model; a diagnostic.

    python benchmarks/adapted_detail.py --checkpoint runs/base_v2_gan \
        --config configs/meta_v2_decoder.json --terms mel+pitch+energy --steps 0,10,20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.data import collate  # noqa: E402
from metatts.postfilter import detail_ratios  # noqa: E402
from metatts.train.meta import (adapt_task, episode_task, inner_config, samplers,  # noqa: E402
                                with_checkpoint)
from metatts.train.zero_shot import outputs_with  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/pretrained")
    p.add_argument("--config", default="configs/meta_v2_decoder.json")
    p.add_argument("--terms", default="", help="inner-loop terms joined by '+' (default: the "
                   "config's)")
    p.add_argument("--steps", default="0,10,20")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--out", default="runs/bench/adapted_detail.json")
    args = p.parse_args(argv)

    base, config, cache = with_checkpoint(args.checkpoint, args.config)
    _, val = samplers(config, cache)
    tasks = [episode_task(val.sample(i), cache) for i in range(args.episodes)]
    counts = sorted({int(s) for s in args.steps.split(",")})
    inner = config.meta.inner
    if args.terms:
        inner = dataclasses.replace(inner, terms=tuple(args.terms.split("+")))
    meta = dataclasses.replace(config.meta, inner=inner, start="encoder")
    cfg = inner_config(meta, steps=counts[-1], seed=0)
    model = base.model.eval()
    device = torch.device("cpu")
    real, predicted = [], {c: [] for c in counts}
    for task in tasks:
        result = adapt_task(model, task, meta, cfg, device, counts)
        query = collate(list(task.query)).to(device)
        lengths = query.mel_lengths.tolist()
        real += [m[:, :n] for m, n in zip(query.mels, lengths)]
        with torch.no_grad():
            for c in counts:
                out = outputs_with(model, {**result.fixed, **result.kept[c]}, query)
                predicted[c] += [m[:, :n] for m, n in zip(out.spoken, lengths)]
    rows = {}
    for c in counts:
        spectral, temporal = detail_ratios(real, predicted[c])
        rows[c] = {"spectral": round(spectral, 3), "temporal": round(temporal, 3)}
        print(f"after {c:3d} steps: detail ratio across bins {spectral:.3f}, across frames "
              f"{temporal:.3f} ({len(real)} query clips)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": base.step,
                               "config": args.config, "terms": list(cfg.terms),
                               "episodes": len(tasks), "query_clips": len(real),
                               "after": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

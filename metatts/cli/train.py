"""``python -m metatts train --config CONFIG [--algo maml|fomaml|reptile] [--resume]
[--set KEY=VALUE ...]``: pretrain the multi-speaker acoustic model, or meta-train it from a
pretrained checkpoint (with --algo, or a config with a meta section, e.g. configs/meta_tiny.json).
Data-parallel: ``torchrun --nproc_per_node N -m metatts train ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from metatts.data import DatasetError
from metatts.model.checkpoint import CheckpointError
from metatts.model.config import ConfigError, load_config
from metatts.text import TextError


def parse_set(items: list[str]) -> dict:
    """["train.steps=10", "model.hidden=64"] -> {"train": {"steps": 10}, "model": {"hidden": 64}}.
    Values are JSON (strings may be written bare)."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. train.steps=100.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metatts train", description=__doc__)
    parser.add_argument("--config", required=True, help="JSON file of overrides (configs/*.json)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in train.run_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set train.steps=200 (repeatable)")
    parser.add_argument("--algo", choices=("maml", "fomaml", "reptile"),
                        help="meta-train with this algorithm (sets meta.algo) from meta.init")
    parser.add_argument("--stop-after", type=float, metavar="MINUTES",
                        help="stop after this many minutes, with a checkpoint (checked every "
                        "train.log_every steps); --resume continues from it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from metatts.train.meta import meta_train  # imported on use: they load torch
    from metatts.train.pretrain import pretrain

    try:
        overrides = parse_set(args.set)
        if args.algo:
            overrides.setdefault("meta", {})["algo"] = args.algo
        config = load_config(args.config, overrides)
        if args.stop_after is not None and args.stop_after <= 0:
            raise ConfigError("--stop-after takes a positive number of minutes.")
        deadline = (None if args.stop_after is None
                    else time.monotonic() + 60 * args.stop_after)
        run = pretrain if config.meta is None else meta_train
        result = run(config, resume=args.resume, progress=not args.quiet, deadline=deadline)
    except (ConfigError, DatasetError, CheckpointError, TextError) as err:
        print(f"metatts train: {err}", file=sys.stderr)
        return 2
    summary = {"run_dir": str(result.run_dir), "checkpoint": str(result.checkpoint),
               "step": result.loop.step, "parameters": result.parameters,
               "steps_per_second": round(result.loop.steps_per_second, 3),
               "train": result.loop.train, "val": result.loop.val}
    print(json.dumps(summary, indent=1))
    return 0

"""``python -m metatts postfilter --checkpoint DIR``: measure the mel post-filter's strengths on
the checkpoint's training data and write them into its ``model.json`` (the weights, and so the
voices adapted from it, are untouched). ``--copy-from OTHER`` takes another checkpoint's
strengths instead (so that two inits that are compared synthesize alike); ``--off`` removes the
post-filter. Prints the strengths as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metatts postfilter", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--copy-from", help="use this checkpoint's post-filter strengths")
    source.add_argument("--off", action="store_true", help="turn the post-filter off")
    parser.add_argument("--data", nargs="+",
                        help="datasets of its training speakers (default: the checkpoint's own "
                             "data.datasets)")
    parser.add_argument("--cache-dir", help="feature cache (default: the checkpoint's "
                                            "data.cache_dir, else its run's features/)")
    parser.add_argument("--utterances", type=int, default=None,
                        help="training utterances to measure on (default 160)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.utterances is not None and args.utterances < 1:
        parser.error(f"--utterances must be at least 1 (it is {args.utterances}); leave it out "
                     "for the default, 160.")

    from metatts import postfilter
    from metatts.assets import atomic_path
    from metatts.data import DatasetError
    from metatts.model.checkpoint import (MODEL_JSON, CheckpointError, find_checkpoint,
                                          load_checkpoint, read_metadata)
    from metatts.model.config import Config, PostFilterConfig, from_dict, replace, to_dict

    try:
        directory = find_checkpoint(args.checkpoint)
        if args.off:
            strengths = PostFilterConfig()
        elif args.copy_from:  # only its model.json is needed, not its weights
            strengths = from_dict(Config, read_metadata(args.copy_from)["config"]).postfilter
        else:
            from metatts.train.data import feature_cache, read_utterances

            checkpoint = load_checkpoint(directory)
            data = checkpoint.config.data
            if args.data:
                data = replace(data, datasets=tuple(args.data))
            if args.cache_dir:
                data = replace(data, cache_dir=args.cache_dir)
            run_dir = (directory.parent.parent if directory.parent.name == "checkpoints"
                       else directory.parent)  # where training kept <run dir>/features
            cache = feature_cache(data, run_dir)
            strengths = postfilter.estimate(
                checkpoint, read_utterances(data), cache, seed=args.seed,
                n=args.utterances or postfilter.DEFAULT_UTTERANCES)
        meta = read_metadata(directory)
        meta["config"]["postfilter"] = to_dict(strengths)
        with atomic_path(Path(directory) / MODEL_JSON) as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    except (CheckpointError, DatasetError, ValueError) as err:
        print(f"metatts postfilter: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"checkpoint": str(directory), "postfilter": to_dict(strengths)}))
    return 0

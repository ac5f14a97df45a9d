"""Pretrain where the corpus is absent, from features packs (scripts/pack_features.py), on
durations fixed beforehand: the acoustic-model run for a lent GPU machine.

    python scripts/device_pretrain.py --config configs/base_v2_h192.json \
        --pack /tmp/p/part-0.xz /tmp/p/part-1.xz /tmp/p/part-2.xz --minutes 8 --out $OUT

(the device calls that bring the packs: docs/experiments.md, "A wider model (hidden 192)").

It is ``python -m metatts train --config ...`` with three changes:
- the clips and their features are read from the packs instead of the corpus and its cache;
- every clip's durations are computed once, before training, by the aligner of
  ``--aligner-from`` (the shipped model's), and carried by the batches: the model's own aligner,
  copied from that model through ``model.aligner_embedding``, is then never trained, and the
  steps skip the aligner's two dynamic programs (a loop over frames each, hundreds of small
  kernels on a GPU) while every other term is the library's own;
- the run stops at the deadline after a checkpoint, and that checkpoint's model (the moving
  average) comes back in shards of at most ``--max-file-mib`` (the device returns files of at
  most 16 MiB); ``python scripts/device_pretrain.py --join DIR`` makes them one
  ``model.safetensors`` again beside the checkpoint's ``model.json``.
The optimizer state stays on the machine: such a run is not resumed elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_meta_train import PackedFeatures  # noqa: E402 (stubs what the machine lacks)

import metatts.train.data as data_module  # noqa: E402
import metatts.train.pretrain as pretrain_module  # noqa: E402
from metatts.model.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from metatts.model.config import load_config  # noqa: E402
from metatts.train.data import TrainingExamples, collate_train  # noqa: E402

log = logging.getLogger("device_pretrain")
SHARD = "model-{:02d}.safetensors"


@torch.no_grad()
def fixed_durations(packed: PackedFeatures, checkpoint: str, device: torch.device,
                    batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Utterance id -> (N,) int64 frames per token, by ``checkpoint``'s aligner (MAS), for every
    clip of the packs that has a frame per token."""
    model = load_checkpoint(checkpoint).model.to(device).eval()
    utterances = [u for u in packed.utterances
                  if packed.get(u).mel.shape[-1] >= len(packed.get(u).tokens)]
    utterances.sort(key=lambda u: packed.get(u).mel.shape[-1])
    dataset = TrainingExamples(utterances, packed, {u.speaker: 0 for u in utterances}, False)
    durations = {}
    for start in range(0, len(utterances), batch_size):
        batch = collate_train([dataset[i] for i in range(start, min(start + batch_size,
                                                                   len(utterances)))])
        found = model.align(batch.to(device)).cpu()
        for i, uid in enumerate(batch.ids):
            durations[uid] = found[i, : int(batch.token_lengths[i])].clone()
    return durations


def with_durations(durations: dict[str, torch.Tensor]):
    """collate_train that also carries each item's fixed durations (the aligner is skipped)."""
    def collate(items):  # the examples carry them; the library's collate pads them
        return collate_train([(dataclasses.replace(x, durations=durations[x.id]), f0, ref)
                              for x, f0, ref in items])
    return collate


def shard(path: Path, out: Path, max_bytes: int) -> list[Path]:
    """One safetensors file -> shards of at most ``max_bytes`` of tensor data each."""
    tensors = load_file(path)
    shards, current, size = [], {}, 0
    for name in sorted(tensors):
        t = tensors[name]
        if current and size + t.numel() * t.element_size() > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t.contiguous()
        size += t.numel() * t.element_size()
    shards.append(current)
    paths = []
    for i, part in enumerate(shards):
        paths.append(out / SHARD.format(i))
        save_file(part, paths[-1])
    return paths


def join(directory: Path) -> Path:
    """The shards in ``directory`` -> ``directory/model.safetensors``."""
    tensors = {}
    for part in sorted(directory.glob(SHARD.replace("{:02d}", "*"))):
        tensors.update(load_file(part))
    if not tensors:
        raise SystemExit(f"no {SHARD.format(0)} ... in {directory}")
    out = directory / "model.safetensors"
    save_file(tensors, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--pack", type=Path, nargs="+")
    ap.add_argument("--minutes", type=float, help="training time before stopping")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--aligner-from", default="checkpoints/pretrained")
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/pretrain_run"))
    ap.add_argument("--max-file-mib", type=float, default=15.5)
    ap.add_argument("--join", type=Path, help="only join the shards in this folder")
    args = ap.parse_args()
    if args.join:
        print(join(args.join))
        return
    if not (args.config and args.pack and args.minutes and args.out):
        ap.error("--config, --pack, --minutes and --out are needed (or --join DIR)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    deadline = started + args.minutes * 60
    packed = PackedFeatures(*args.pack)
    log.info("packs: %d clips read in %.1f s", len(packed.utterances), time.monotonic() - started)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        log.info("GPU: %s", torch.cuda.get_device_name())
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    config = load_config(args.config, {"train": {"run_dir": str(args.run_dir),
                                                 "init_from": args.aligner_from}})
    if not config.model.aligner_embedding:
        raise SystemExit("this run trains on fixed durations: set model.aligner_embedding "
                         "(the aligner of --aligner-from is kept, untrained)")
    t0 = time.monotonic()
    durations = fixed_durations(packed, args.aligner_from, device)
    log.info("durations of %d clips by %s's aligner in %.1f s", len(durations),
             args.aligner_from, time.monotonic() - t0)
    packed.utterances = [u for u in packed.utterances if u.id in durations]
    pretrain_module.feature_cache = lambda data, run_dir, pitch=False: packed
    data_module.read_utterances = lambda data: list(packed.utterances)
    pretrain_module.collate_train = with_durations(durations)
    result = pretrain_module.pretrain(config, deadline=deadline)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(args.run_dir)
    shards = shard(checkpoint / "model.safetensors", args.out,
                   int(args.max_file_mib * 2**20))
    for f in (checkpoint / "model.json", *(args.run_dir / n for n in ("log.jsonl", "losses.png",
                                                                     "config.json"))):
        if f.exists():
            shutil.copy2(f, args.out / f.name)
    log.info("stopped at step %d (%.2f steps/s); %s: %d shards and model.json in %s",
             result.loop.step, result.loop.steps_per_second, checkpoint.name, len(shards),
             args.out)


if __name__ == "__main__":
    main()

"""Meta-train where the corpus is absent, from a features pack (scripts/pack_features.py): the
run used for the lent GPU machine.

    python scripts/device_meta_train.py --config configs/meta_v2_gpu.json \
        --pack .pack/features.pack.xz --minutes 7 --out $OUT

It is ``python -m metatts train --config ...`` with the clips and their features read from the
pack instead of the corpus and its feature cache (everything else, the speaker split included, is
the library's own code). It stops at the deadline after a checkpoint, then copies that checkpoint's
files (but the optimizer state, over the 16 MiB that comes back), the log and the loss plot flat
into ``--out``. Should the GPU fail, it goes on on the machine's CPU cores until the deadline.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import lzma
import os
import shutil
import struct
import sys
import time
import types
from pathlib import Path

import torch
from safetensors.torch import load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _stub_missing() -> None:
    """The library imports soundfile and num2words (audio files, numbers in text), which this
    run never calls and the GPU machine lacks: stand-ins that fail if they are called."""
    def missing(*args, **kwargs):
        raise RuntimeError("not installed on this machine")

    for name, attrs in (("soundfile", ()), ("num2words", ("num2words",))):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            for attr in attrs:
                setattr(stub, attr, missing)
            sys.modules[name] = stub


_stub_missing()

import metatts.train.meta as meta_module  # noqa: E402
from metatts.data import Utterance  # noqa: E402
from metatts.data.features import Features  # noqa: E402
from metatts.model.checkpoint import latest_checkpoint  # noqa: E402
from metatts.model.config import load_config  # noqa: E402


class PackedFeatures:
    """The clips of a pack and their features, in the shape of a FeatureCache (get, warm)."""

    def __init__(self, *paths: Path):
        self.utterances, self.features = [], {}
        for path in paths:
            self._read(path)

    def _read(self, path: Path) -> None:
        blob = lzma.decompress(path.read_bytes())
        (header_size,) = struct.unpack("<Q", blob[:8])
        metadata = json.loads(blob[8: 8 + header_size])["__metadata__"]
        floor, step = float(metadata["mel_floor"]), float(metadata["mel_step"])
        tensors = load(blob)
        for i, u in enumerate(json.loads(metadata["utterances"])):
            utt = Utterance(u["id"], u["speaker"], u["text"], Path(u["audio"]), u["duration"],
                            u["split"], u["group"])
            levels = tensors[f"{i}.mel"].to(torch.int64).cumsum(0) % 256  # undo the deltas
            mel = (levels.to(torch.float32) * step + floor).T.contiguous()
            self.utterances.append(utt)
            self.features[utt.id] = Features(mel, tensors[f"{i}.tokens"].to(torch.int64),
                                             tensors[f"{i}.f0"].to(torch.float32))

    def get(self, utt: Utterance) -> Features:
        return self.features[utt.id]

    def warm(self, utterances, jobs=None) -> dict[str, str]:
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--pack", type=Path, nargs="+", required=True, help="one or more packs")
    ap.add_argument("--minutes", type=float, required=True, help="training time before stopping")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/meta_run"))
    ap.add_argument("--max-file-mib", type=float, default=16.0,
                    help="larger files (the optimizer state) are not copied to --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    packed = PackedFeatures(*args.pack)
    logging.info("pack: %d clips read in %.1f s", len(packed.utterances),
                 time.monotonic() - started)
    meta_module.feature_cache = lambda data, run_dir, pitch=False: packed
    meta_module.read_utterances = lambda data: list(packed.utterances)
    deadline = started + args.minutes * 60
    config = load_config(args.config, {"train": {"run_dir": str(args.run_dir)}})
    if torch.cuda.is_available():
        logging.info("GPU: %s", torch.cuda.get_device_name())
    try:
        result = meta_module.meta_train(config, deadline=deadline)
    except Exception:  # noqa: BLE001 - a GPU-only failure: the machine's CPU cores, not nothing
        if config.train.device == "cpu" or deadline - time.monotonic() < 120:
            raise
        logging.exception("failed on the GPU; continuing on %d CPU threads", os.cpu_count())
        torch.set_num_threads(os.cpu_count())
        args.run_dir = args.run_dir.with_name(args.run_dir.name + "_cpu")
        config = load_config(args.config, {"train": {"run_dir": str(args.run_dir),
                                                     "device": "cpu"}})
        result = meta_module.meta_train(config, deadline=deadline)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(args.run_dir)
    for f in [*checkpoint.iterdir(), *(args.run_dir / n for n in ("log.jsonl", "losses.png",
                                                                  "config.json"))]:
        if f.exists() and f.stat().st_size <= args.max_file_mib * 2**20:
            shutil.copy2(f, args.out / f.name)
        elif f.exists():
            logging.info("not copied (over %s MiB): %s", args.max_file_mib, f.name)
    logging.info("stopped at step %d (%.2f steps/s); %s copied to %s", result.loop.step,
                 result.loop.steps_per_second, checkpoint.name, args.out)


if __name__ == "__main__":
    main()

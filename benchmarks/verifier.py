"""A speaker verifier trained on the corpus's training voices: a judge-free speaker instrument.

Choices are read on the validation voices without the benchmark's judges (ECAPA, GE2E), so that
the judges never select what they then judge. The instrument so far was the acoustic model's own
speaker encoder, trained to give a vector that *synthesizes* a voice, not to tell voices apart:
it moves little (frame matching +0.13 where ECAPA moved +0.28). This trains a small ECAPA-TDNN
(SpeechBrain's architecture, 128 channels, from scratch; not the judge's weights) with an
additive angular margin on the log-mels (:func:`metatts.audio.mel_spectrogram`, mean removed per
clip) of the corpus's training speakers only (manifest split ``train``: never a validation or
test voice, never the real voice), then reads how well it separates the validation voices.

    python benchmarks/verifier.py train --minutes 20 --out results/verifier    # resumes
    python benchmarks/verifier.py check --model results/verifier

``check`` prints the equal error rate over every pair of the validation voices' clips, for this
verifier and for the model's own encoder (one clip each), and the mean same- and
different-voice cosines.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metatts.verifier import CHANNELS, CROP, EMBEDDING  # noqa: E402,F401  (CROP: training windows)


def build(speakers: int | None = None, arch: str = "ecapa"):
    """The verifier (:func:`metatts.verifier.build`: ECAPA-TDNN, or the cepstral x-vector);
    and, given ``speakers``, its training head."""
    from metatts.verifier import build as architecture

    model = architecture(arch)
    from speechbrain.lobes.models.ECAPA_TDNN import Classifier

    return model if speakers is None else (model, Classifier(EMBEDDING, out_neurons=speakers))


def features(wav: np.ndarray) -> torch.Tensor:
    """A prepared clip -> (T, 80) log-mel with its mean over time removed."""
    from metatts import audio

    mel = audio.mel_spectrogram(wav).T.float()
    return mel - mel.mean(0)


def manifest(data: Path, split: str) -> dict[str, list[Path]]:
    """Clip paths per speaker of one manifest split."""
    out: dict[str, list[Path]] = {}
    for line in (data / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") == split:
            out.setdefault(row["speaker"], []).append(data / row["audio"])
    if not out:
        raise SystemExit(f"{data}/manifest.jsonl has no {split!r} clips; build the corpus first "
                         "(python -m metatts corpus --out data/corpus --store corpus-store)")
    return dict(sorted(out.items()))


def load_mels(data: Path, split: str, cache: Path) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Every clip's features of one split, with speaker indices; cached in ``cache``."""
    from safetensors.torch import load_file, save_file

    from metatts import audio

    if cache.exists():
        t = load_file(str(cache))
        names = json.loads((cache.with_suffix(".json")).read_text())
        lengths = t["lengths"].tolist()
        mels = list(torch.split(t["mels"], lengths))
        return mels, t["speakers"].tolist(), names
    clips = manifest(data, split)
    names, mels, speakers = list(clips), [], []
    for s, name in enumerate(names):
        for path in clips[name]:
            mels.append(features(audio.prepare_clip(path)).half())
            speakers.append(s)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({"mels": torch.cat(mels), "lengths": torch.tensor([len(m) for m in mels]),
               "speakers": torch.tensor(speakers)}, str(cache))
    cache.with_suffix(".json").write_text(json.dumps(names))
    return mels, speakers, names


def train(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file, save_file

    out = Path(args.out)
    mels, speakers, names = load_mels(Path(args.data), "train",
                                      Path(args.cache) / "train_mels.safetensors")
    torch.manual_seed(args.seed)
    model, head = build(len(names), args.arch)  # imports speechbrain the way it works beside CPU torch
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=args.lr, weight_decay=2e-5)
    state_path, step = out / "train_state.safetensors", 0
    if state_path.exists():  # resume
        state = load_file(str(state_path))
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        step = json.loads((out / "train_state.json").read_text())["step"]
        moments = opt.state_dict()
        for i in range(len(params)):
            if f"adam.{i}.exp_avg" in state:
                moments["state"][i] = {name: state[f"adam.{i}.{name}"]
                                       for name in ("step", "exp_avg", "exp_avg_sq")}
        opt.load_state_dict(moments)
        print(f"resumed at step {step}", flush=True)
    usable = [i for i, m in enumerate(mels) if len(m) >= CROP]
    rng = random.Random(step + 1_000_003 * args.seed)  # seed 0: the order of the first runs
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train_log.jsonl").open("a")
    started, losses = time.perf_counter(), []

    def save() -> None:
        save_file({**{f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
                   **{f"head.{k}": v.contiguous() for k, v in head.state_dict().items()},
                   **{f"adam.{i}.{name}": v.contiguous()
                      for i, moments in opt.state_dict()["state"].items()
                      for name, v in moments.items()}},
                  str(state_path))
        (out / "train_state.json").write_text(json.dumps({"step": step, "speakers": names}))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out / "verifier.safetensors"))
        (out / "verifier.json").write_text(json.dumps(
            {"arch": args.arch, **({"channels": CHANNELS} if args.arch == "ecapa" else {}),
             "embedding": EMBEDDING, "step": step, "seed": args.seed, "features":
             "metatts.audio.mel_spectrogram, mean over time removed", "trained_on":
             f"{len(names)} training speakers of {args.data} (manifest split 'train')",
             "command": "python benchmarks/verifier.py train " + " ".join(sys.argv[2:])}, indent=1))

    model.train(), head.train()
    while time.perf_counter() - started < args.minutes * 60:
        batch = rng.sample(usable, args.batch)
        x = []
        for i in batch:
            first = rng.randrange(len(mels[i]) - CROP + 1)
            x.append(mels[i][first:first + CROP].float())
        y = torch.tensor([speakers[i] for i in batch])[:, None]
        # warm the rate up over the first 200 steps, then hold
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 200)
        loss = loss_fn(head(model(torch.stack(x))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            row = {"step": step, "loss": float(np.mean(losses)),
                   "seconds": round(time.perf_counter() - started, 1)}
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(row, flush=True)
            losses = []
        if step % 250 == 0:
            save()
    save()
    print(f"step {step}: saved {out / 'verifier.safetensors'}", flush=True)
    return 0


def load(path: str | Path):
    """The trained verifier in eval mode (safetensors, no pickle; the sha256 checked where its
    verifier.json names one): :func:`metatts.verifier.load`."""
    from metatts.verifier import load as trained

    return trained(path)


@torch.inference_mode()
def embed(model, wavs: list[np.ndarray]) -> torch.Tensor:
    """Prepared clips (22,050 Hz) -> (N, 128) unit embeddings."""
    out = [model(features(w)[None]).reshape(-1) for w in wavs]
    return torch.nn.functional.normalize(torch.stack(out), dim=1)


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate of cosine ``scores`` for pairs that are (``same``) or are not one voice."""
    order = np.argsort(-scores)
    same = same[order]
    accept_same = np.cumsum(same) / same.sum()  # share of same pairs accepted at each threshold
    accept_diff = np.cumsum(~same) / (~same).sum()
    i = np.argmin(np.abs((1 - accept_same) - accept_diff))
    return float(((1 - accept_same[i]) + accept_diff[i]) / 2)


def check(args: argparse.Namespace) -> int:
    from metatts import audio
    from metatts.model.checkpoint import load_checkpoint

    clips = manifest(Path(args.data), "val")
    wavs, labels = [], []
    for s, name in enumerate(clips):
        for path in clips[name][: args.per_voice]:
            wavs.append(audio.prepare_clip(path))
            labels.append(s)
    labels = np.array(labels)
    own_model = load_checkpoint(args.checkpoint).model.eval()
    readers = {"verifier": lambda: embed(load(args.model), wavs),
               "own encoder": lambda: torch.nn.functional.normalize(torch.stack(
                   [own_model.encode_speaker([audio.mel_spectrogram(w)]) for w in wavs]), dim=1)}
    upper = np.triu_indices(len(wavs), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    print(f"{len(clips)} validation voices, {len(wavs)} clips, {same.sum()} same-voice and "
          f"{(~same).sum()} different-voice pairs")
    result = {}
    for name, read in readers.items():
        e = read()
        scores = (e @ e.T).numpy()[upper]
        result[name] = {"eer": eer(scores, same), "same": float(scores[same].mean()),
                        "different": float(scores[~same].mean())}
        r = result[name]
        print(f"{name}: EER {r['eer']:.1%}, cosine same {r['same']:.3f}, "
              f"different {r['different']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default=str(ROOT / "data/corpus"))
    t.add_argument("--out", default=str(ROOT / "results/verifier"))
    t.add_argument("--cache", default=str(ROOT / "runs/verifier_cache"),
                   help="where the training clips' features are kept (about 0.5 GB)")
    t.add_argument("--minutes", type=float, default=20)
    t.add_argument("--batch", type=int, default=48)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--arch", choices=("ecapa", "xvector"), default="ecapa",
                   help="xvector: a second verifier of another architecture and input "
                   "(cepstral coefficients), sharing no lineage with the first")
    t.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("--data", default=str(ROOT / "data/corpus"))
    c.add_argument("--model", default=str(ROOT / "results/verifier"))
    c.add_argument("--checkpoint", default=str(ROOT / "checkpoints/pretrained"))
    c.add_argument("--per-voice", type=int, default=20)
    c.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return train(args) if args.command == "train" else check(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""What frame matching matches on: the log-mel (shipped) or the model's own states, read without
the judges.

Frame matching (:mod:`metatts.frames`) finds each spoken frame's nearest twin frames by the
distance of their log-mel frames. The model has other views of a frame that may say better
"the same sound": the decoder's last hidden state (what ``mel_out`` reads, ``hidden``) and the
decoder's input (the token's state with its pitch and energy, stretched over its frames,
``input``). A key is ``KIND:K[:W]``: KIND one of ``mel``, ``hidden``, ``input``, ``hidden+mel``
(both, each scaled to unit mean frame norm over the bank), optionally prefixed ``select/`` (the
mean of the neighbours' real frames replaces the frame, kNN-VC's rule) and/or ``phone/`` (the
neighbours only among twin frames of the same phoneme symbol: the twin's from the aligner's
durations, the spoken frame's from the predicted ones; a frame whose symbol the clips never say
matches among all), K neighbours, the
correction averaged over W consecutive frames (default 3, as shipped); ``KIND:LOW/HIGH@BIN[:W]``
corrects the mel bins below BIN with LOW neighbours and those from BIN up with HIGH (e.g.
``hidden:4/1@50``: four below 2.5 kHz, one above). ``mel:4:3`` is the shipped matching;
``none`` is the vector alone (the model's frames uncorrected, no post-filter).

For each voice (default: the four natural validation voices, never reported by the benchmark)
and support draw, ``--support`` clips give the encoder's vector and the bank; five sentences are
spoken per key and read against 8 of the voice's other real clips, with no benchmark judge: the
model's own speaker encoder (cosine of the spoken clip's vector to the other clips' vector) and
Whisper tiny.en WER (the benchmark judges with base); with ``--verifier DIR`` also the corpus-trained
verifier of ``benchmarks/verifier.py`` (``ver``: cosine of the spoken clip's embedding to the mean
of the other clips'; ``ver_margin``: that, less its mean cosine to the other voices' means, so that
a change which brings a clip nearer every voice alike, e.g. more spectral detail, reads as no
gain); with ``--naturalness`` also Distill-MOS (``benchmarks/naturalness.py``), a naturalness
instrument that is not one of the benchmark's judges.

    python benchmarks/frames_keys.py --keys mel:4 hidden:4 input:4 --out results/frames/keys.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frames_grid import (TEXTS, Instruments, clips_of, instrument_cells,  # noqa: E402,F401
                         moving_average, number, own_cell, vector_of, voice_arguments,
                         voice_files, write_read)

from metatts import audio  # noqa: E402
from metatts.adapt import support_examples  # noqa: E402
from metatts.frames import frame_bank  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.data.batch import collate  # noqa: E402
from metatts.model.fastspeech2 import NEW_SPEAKER  # noqa: E402
from metatts.model.variance import predicted_durations  # noqa: E402
from metatts.synthesis import _mel, speakable_sentences  # noqa: E402

KINDS = ("mel", "hidden", "input", "hidden+mel")


class Capture:
    """Records the inputs of the decoder and of ``mel_out``, and the predicted log-durations,
    while active."""

    def __init__(self, model):
        self.model, self.seen = model, {"input": [], "hidden": []}
        self.log_durations = []

    def __enter__(self):
        self.handles = [
            self.model.decoder.register_forward_hook(
                lambda m, args, out: self.seen["input"].append(args[0].detach())),
            self.model.mel_out.register_forward_hook(
                lambda m, args, out: self.seen["hidden"].append(args[0].detach())),
            self.model.variance.register_forward_hook(
                lambda m, args, out: self.log_durations.append(out.log_duration.detach()))]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def frames_of(seen: list[torch.Tensor], lengths: list[int]) -> torch.Tensor:
    """Captured (B, T, H) batches -> (sum(lengths), H), item by item in order."""
    rows, i = [], 0
    for batch in seen:
        for item in batch:
            rows.append(item[: lengths[i]].float())
            i += 1
    return torch.cat(rows)


def parse_band(key: str) -> tuple[str, str, int] | None:
    """``KIND:LOW/HIGH@BIN[:W]`` -> (the key with LOW neighbours, the key with HIGH, BIN): LOW
    neighbours correct the mel bins below BIN, HIGH those from BIN up; None for a key of one
    count."""
    kind, _, k = key.partition(":")
    k, *rest = k.split(":")
    if "/" not in k:
        return None
    counts, _, edge = k.partition("@")
    low, high = counts.split("/")
    return ":".join([kind, low, *rest]), ":".join([kind, high, *rest]), int(edge)


def parse_key(key: str) -> tuple[str, int, int]:
    if key == "none":
        return "none", 0, 1
    band = parse_band(key)
    if band is not None:
        key = band[0]
    kind, k, *rest = key.split(":")
    kind = kind.removeprefix("phone/").removeprefix("select/").removeprefix("phone/")
    if kind not in KINDS:
        raise SystemExit(f"unknown key kind {kind!r} in {key!r}: one of {', '.join(KINDS)}")
    width = int(rest[0]) if rest else 3
    if width < 1 or width % 2 == 0:
        raise SystemExit(f"{key!r}: the smoothing width must be odd and at least 1")
    return kind, int(k), width


def features(kind: str, mel: torch.Tensor, seen: dict[str, torch.Tensor],
             scale: dict[str, float]) -> torch.Tensor:
    """(T, D) matching features of frames whose log-mel is ``mel`` (T, n_mels)."""
    if kind == "mel":
        return mel
    if kind in ("hidden", "input"):
        return seen[kind]
    return torch.cat([seen["hidden"] / scale["hidden"], mel / scale["mel"]], 1)


def frame_symbols(tokens: torch.Tensor, durations: torch.Tensor, frames: int) -> torch.Tensor:
    """(frames,) the symbol id each frame belongs to, from (N,) tokens and their durations."""
    ids = torch.repeat_interleave(tokens, durations.clamp(min=0))[:frames]
    if len(ids) < frames:  # durations short of the mel: the last symbol holds
        ids = torch.cat([ids, ids[-1:].expand(frames - len(ids))])
    return ids


def nearest_frames(dist: torch.Tensor, k: int, said: torch.Tensor | None = None,
                   twin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, F) distances -> (T, k) indices of the nearest bank frames and a (T, k) weight (1 for a
    neighbour, 0 for a place left empty). With frame symbols ``said`` (T,) and ``twin`` (F,), the
    neighbours are only frames of the same symbol (at most as many as there are); a frame whose
    symbol the bank lacks matches among all."""
    k = min(k, dist.shape[1])
    if said is None:
        return dist.topk(k, dim=1, largest=False).indices, torch.ones(len(dist), k)
    same = said[:, None] == twin[None, :]
    count = same.sum(1)
    masked = torch.where(same | (count == 0)[:, None], dist, torch.inf)
    values, index = masked.topk(k, dim=1, largest=False)
    return index, torch.isfinite(values).float()


def corrected(mel: torch.Tensor, key: str, bank, twin_seen: dict, said_seen: dict) -> torch.Tensor:
    """(n_mels, T) spoken log-mel -> corrected by the bank, matching on ``key``."""
    band = parse_band(key)
    if band is not None:  # one count of neighbours below the edge bin, another from it up
        low_key, high_key, edge = band
        below = corrected(mel, low_key, bank, twin_seen, said_seen)
        above = corrected(mel, high_key, bank, twin_seen, said_seen)
        return torch.cat([below[:edge], above[edge:]])
    kind, k, width = parse_key(key)
    if kind == "none":
        return mel
    scale = {"mel": float(bank.twin.norm(dim=1).mean()),
             "hidden": float(twin_seen["hidden"].norm(dim=1).mean())}
    query = features(kind, mel.T.float(), said_seen, scale)
    keys = features(kind, bank.twin.float(), twin_seen, scale)
    phone = "phone/" in key
    nearest, weight = nearest_frames(torch.cdist(query, keys), k,
                                     said_seen["symbols"] if phone else None,
                                     twin_seen["symbols"] if phone else None)
    select = "select/" in key  # kNN-VC's rule: the neighbours' real frames themselves
    diff = bank.real[nearest] - (0 if select else bank.twin[nearest])  # (T, k, n_mels)
    mean = (diff * weight[..., None]).sum(1) / weight.sum(1, keepdim=True)
    correction = moving_average(mean, width).T
    return correction if select else mel + correction


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    voice_arguments(p)
    p.add_argument("--draws", type=int, default=2, help="support draws per voice")
    p.add_argument("--keys", nargs="+", default=["mel:4", "hidden:4", "input:4", "hidden+mel:4"])
    p.add_argument("--asr", default="tiny.en", help="not the benchmark's judge (base)")
    p.add_argument("--verifier", default=None,
                   help="a benchmarks/verifier.py model folder: a second judge-free similarity")
    p.add_argument("--naturalness", action="store_true",
                   help="also Distill-MOS of every spoken clip (benchmarks/naturalness.py; not a "
                        "judge of the benchmark, which reads DNSMOS)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    for key in args.keys:
        parse_key(key)
    refs = {v: voice_files(args.data, v, args.support * args.draws + 8)[-8:] for v in args.voices}
    instruments = Instruments(args.verifier, args.naturalness, refs)

    from metatts.vocoder import load_vocoder

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    vocoder = load_vocoder()
    rows = []
    for name in args.voices:
        files = voice_files(args.data, name, args.support * args.draws + 8)
        real_wavs = [audio.prepare_clip(f) for f in files[-8:]]
        target = model.encode_speaker([audio.mel_spectrogram(w) for w in real_wavs])
        for draw in range(args.draws):
            clips = clips_of(files[draw * args.support:(draw + 1) * args.support])
            examples = support_examples(clips, ckpt)
            params = {"speaker.new": vector_of(model, clips)}
            with Capture(model) as cap:
                bank = frame_bank(ckpt, params, examples, smoothing=1)
            lengths = [x.mel.shape[-1] for x in examples]
            twin_seen = {kind: frames_of(v, lengths) for kind, v in cap.seen.items()}
            assert len(twin_seen["hidden"]) == bank.frames
            durations = model.align(collate(examples))  # what frame_bank's outputs used
            twin_seen["symbols"] = torch.cat([
                frame_symbols(x.tokens, durations[i, : len(x.tokens)], n)
                for i, (x, n) in enumerate(zip(examples, lengths))])
            for text in TEXTS:
                ids = speakable_sentences(text, ckpt)[1][0]
                with Capture(model) as cap:
                    mel = _mel(model, params, NEW_SPEAKER, ids, 1.0)
                said_seen = {kind: v[0][0, : mel.shape[1]].float() for kind, v in cap.seen.items()}
                said_durations = predicted_durations(
                    cap.log_durations[0], torch.ones_like(cap.log_durations[0], dtype=torch.bool))
                said_seen["symbols"] = frame_symbols(torch.as_tensor(ids), said_durations[0],
                                                     mel.shape[1])
                for key in args.keys:
                    wav = vocoder(corrected(mel, key, bank, twin_seen, said_seen)).detach()
                    wav = wav.float().numpy()
                    own = model.encode_speaker([audio.mel_spectrogram(wav)])
                    rows.append({"speaker": name, "draw": draw, "key": key, "text": text,
                                 "wav": wav, "own": float(torch.nn.functional.cosine_similarity(
                                     own, target, dim=0))})
                    instruments.read(rows[-1], wav)
            print(f"{name} draw {draw}: {bank.frames} frames in the bank", file=sys.stderr,
                  flush=True)
    instruments.hear(rows, args.asr)
    table = {}
    titles, cells = instruments.header()
    print(f"| key | clips | own-encoder similarity | WER ({args.asr}) |{titles}\n"
          f"|---|---|---|---|{cells}")
    for key in args.keys:
        chosen = [r for r in rows if r["key"] == key]
        cell = table[key] = {**own_cell(chosen), **instrument_cells(chosen)}
        print(f"| {key} | {cell['clips']} | {cell['own']:.3f} | {cell['wer']:.1%} |"
              + instruments.row(cell))
    if instruments.check is not None and len(args.voices) < 2:
        print("(no verifier margin: it needs at least two voices)")
    write_read(args.out, args, table, rows, support=args.support, draws=args.draws,
               **instruments.extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

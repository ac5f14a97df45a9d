"""Frame matching's settings, read on the validation voices (never on the test voices).

For each voice (default: the four natural validation voices, which no checkpoint trains on and
the benchmark never reports), ``--support`` clips (seeded shuffle) give the speaker encoder's
vector and the frame bank (:mod:`metatts.frames`); five sentences are spoken with the vector
alone (``encoder``: post-filtered, as shipped) and with each variant; each clip is scored by
ECAPA cosine to the centroid of 8 of the voice's other clips, Whisper base WER (pooled) and
DNSMOS OVRL. A variant is ``MODE:K:C[:MIX[:T[:F]]]``:

- MODE ``residual`` (the library's): the frame plus the mean real-minus-twin difference of its
  K nearest twin frames; ``select``: the mean of those neighbours' real frames (kNN-VC's rule);
- C: frames of context on each side in the matching features (0: the frame alone);
- MIX: output = MIX * corrected + (1 - MIX) * the model's frame (default 1);
- T: the correction averaged over T consecutive frames (:data:`metatts.frames.SMOOTHING`);
- F: and over F neighbouring mel bins (default 1: none).

``residual:K:0:1:T`` is exactly ``FrameBank(neighbours=K, smoothing=T).apply``.

    python benchmarks/frames_grid.py --variants residual:4:0 residual:4:0:1:3 --out F.json
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metatts import audio  # noqa: E402
from metatts.adapt import make_clip, support_examples  # noqa: E402
from metatts.frames import FrameBank, frame_bank  # noqa: E402
from metatts.model.checkpoint import load_checkpoint  # noqa: E402
from metatts.model.fastspeech2 import NEW_SPEAKER  # noqa: E402
from metatts.postfilter import apply as postfilter  # noqa: E402
from metatts.synthesis import _mel, speakable_sentences  # noqa: E402

VOICES = ("kokoro_en_af_kore", "kokoro_en_am_puck", "kokoro_en_bf_lily", "kokoro_en_bm_lewis")
TEXTS = ("George measured the purple cushion at the bottom of the lake.",
         "Vanessa Fletcher moved from Seattle to Boston last summer.",
         "Did Elena juggle the yellow engine yesterday evening?",
         "If the toy is too noisy, Harriet will wrap it yesterday evening.",
         "Professor Vaughan flew to Melbourne on Saturday morning.")


def voice_files(data: str | Path, name: str, need: int) -> list[Path]:
    """The voice's clips in ``data/name`` in a seeded shuffled order (the same in every script
    that reads the validation voices); exits with a message when fewer than ``need``."""
    files = sorted((Path(data) / name).glob("*.wav"))
    if len(files) < need:
        raise SystemExit(f"{data}/{name}: {len(files)} clips, {need} needed; build the corpus "
                         "first (python -m metatts corpus --out data/corpus --store corpus-store)")
    random.Random(f"0:{name}").shuffle(files)
    return files


def clips_of(files: list[Path]) -> list:
    """Corpus clips (wav + .txt beside it) as :class:`metatts.adapt.Clip`."""
    return [make_clip(audio.prepare_clip(f), audio.SAMPLE_RATE,
                      f.with_suffix(".txt").read_text().strip(), f.stem) for f in files]


def voice_arguments(parser: argparse.ArgumentParser, checkpoint: str = "checkpoints/pretrained"
                    ) -> None:
    """The options every validation-voice script takes: checkpoint, data, voices, support."""
    parser.add_argument("--checkpoint", default=str(ROOT / checkpoint))
    parser.add_argument("--data", default=str(ROOT / "data/corpus"), help="speaker folders")
    parser.add_argument("--voices", nargs="+", default=list(VOICES))
    parser.add_argument("--support", type=int, default=5)


def check_variants(variants: list[str]) -> None:
    """Refuse a bad variant before any work (:func:`convert` raises SystemExit)."""
    for v in variants:
        convert(torch.zeros(80, 2), FrameBank(torch.zeros(3, 80), torch.zeros(3, 80)), v)


def own_cell(chosen: list[dict]) -> dict:
    """A judge-free read's cell: clip count, the own-encoder similarity (``own``) averaged per
    voice then over voices, per voice, and the pooled WER of ``heard`` against ``text``."""
    from eval.metrics import pooled_wer

    per = defaultdict(list)
    for r in chosen:
        per[r["speaker"]].append(r["own"])
    return {"clips": len(chosen), "own": float(np.mean([np.mean(v) for v in per.values()])),
            "own_per_voice": {k: float(np.mean(v)) for k, v in per.items()},
            "wer": pooled_wer([r["text"] for r in chosen], [r["heard"] for r in chosen])}


def instrument_cells(chosen: list[dict]) -> dict:
    """A cell's verifier and naturalness figures from its clips' rows, each per voice then over
    voices (as :func:`own_cell`'s): ``ver``, ``ver_others`` and ``ver_margin`` (``ver`` less
    ``ver_others``) where every row has them, ``nat`` (Distill-MOS, unreadable clips left out)
    where rows have it."""
    voices = sorted({r["speaker"] for r in chosen})
    cell = {}
    for field in ("ver", "ver_others", "nat"):
        if chosen and all(field in r for r in chosen):
            per_voice = [np.nanmean([r[field] for r in chosen if r["speaker"] == v])
                         for v in voices]
            cell[field] = float(np.mean(per_voice))
    if "ver" in cell and "ver_others" in cell:
        cell["ver_margin"] = cell["ver"] - cell["ver_others"]
    return cell


def number(x: float | None) -> str:
    """A table cell: three decimals, or "-" when there is no figure."""
    return "-" if x is None or np.isnan(x) else f"{x:.3f}"


class Instruments:
    """The optional judge-free columns of a validation-voice read: the corpus-trained speaker
    verifier of ``benchmarks/verifier.py`` (``ver``: a spoken clip's cosine to the mean of its
    voice's reference clips; ``ver_others``: its mean cosine to the other voices' means, so that
    a gain common to every voice does not count) and Distill-MOS (``benchmarks/naturalness.py``,
    ``nat``), a naturalness instrument that is not one of the benchmark's judges. Both load
    before any work is done, so that a missing file or package stops a read at its start.
    ``references``: each voice's reference files (the clips a spoken clip is read against)."""

    def __init__(self, verifier_dir: str | None, naturalness: bool,
                 references: dict[str, list[Path]]):
        self.check, self.targets, self.naturalness = None, {}, None
        self.references = references
        self.extra: dict = {}
        if verifier_dir:
            import verifier

            self.check = verifier.load(verifier_dir)
            about = Path(verifier_dir) / "verifier.json"
            self.extra["verifier"] = {"path": verifier_dir, "step": json.loads(
                about.read_text())["step"] if about.is_file() else None}
            for name, wavs in self.reference_wavs.items():
                self.targets[name] = torch.nn.functional.normalize(
                    verifier.embed(self.check, wavs).mean(0), dim=0)
        if naturalness:
            import naturalness as distill_mos

            distill_mos.load()
            self.naturalness = distill_mos
            self.extra["naturalness"] = distill_mos.NAME

    @functools.cached_property
    def reference_wavs(self) -> dict[str, list]:
        """Each voice's reference clips, loaded once for both instruments."""
        return {name: [audio.prepare_clip(f) for f in files]
                for name, files in self.references.items()}

    def read(self, row: dict, wav) -> None:
        """The verifier's figures of one spoken clip into its ``row`` (nothing without it)."""
        if self.check is None:
            return
        import verifier

        emb = verifier.embed(self.check, [wav])[0]
        row["ver"] = float(emb @ self.targets[row["speaker"]])
        others = [float(emb @ t) for v, t in self.targets.items() if v != row["speaker"]]
        if others:
            row["ver_others"] = float(np.mean(others))

    def finish(self, rows: list[dict]) -> None:
        """Distill-MOS of every row's ``wav`` (NaN for a silent clip) and of the references."""
        if self.naturalness is None:
            return
        for r in rows:
            try:
                r["nat"] = self.naturalness.score([r["wav"]], audio.SAMPLE_RATE)[0]
            except ValueError:  # a silent clip: no reading, the rest of the read kept
                r["nat"] = float("nan")
        real = [w for wavs in self.reference_wavs.values() for w in wavs]
        self.extra["naturalness_real_clips"] = float(np.mean(
            self.naturalness.score(real, audio.SAMPLE_RATE)))
        print(f"Distill-MOS of the voices' reference clips: "
              f"{self.extra['naturalness_real_clips']:.3f}")

    def hear(self, rows: list[dict], asr: str) -> None:
        """What Whisper ``asr`` hears in every row's ``wav`` into its ``heard``, then
        :meth:`finish`: a read's instruments after its last clip is spoken."""
        from metatts.asr import transcribe

        for r, heard in zip(rows, transcribe([r["wav"] for r in rows], audio.SAMPLE_RATE,
                                             model=asr)):
            r["heard"] = heard
        self.finish(rows)

    def header(self) -> tuple[str, str]:
        """The extra column titles and their separator cells."""
        titles, cells = "", ""
        if self.check is not None:
            titles += " verifier similarity | verifier margin over the other voices |"
            cells += "---|---|"
        if self.naturalness is not None:
            titles += " Distill-MOS |"
            cells += "---|"
        return titles, cells

    def row(self, cell: dict) -> str:
        """A table row's extra cells."""
        out = ""
        if self.check is not None:
            out += f" {number(cell.get('ver'))} | {number(cell.get('ver_margin'))} |"
        if self.naturalness is not None:
            out += f" {number(cell.get('nat'))} |"
        return out


def write_read(path: str | None, args: argparse.Namespace, table: dict, rows: list[dict],
               **extra) -> None:
    """A validation-voice read as JSON at ``path`` (nothing when None): its settings, table and
    every clip's row without its audio."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "checkpoint": args.checkpoint, "voices": args.voices, "texts": list(TEXTS),
        "asr": args.asr, **extra, "table": table,
        "clips": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                   if k != "wav"} for r in rows]}, indent=1))


def vector_of(model, clips: list) -> torch.Tensor:
    """The speaker encoder's vector of the clips (``speaker.new`` of a zero-shot voice)."""
    return model.encode_speaker([audio.mel_spectrogram(c.wav) for c in clips])


def moving_average(x: torch.Tensor, width: int) -> torch.Tensor:
    """(T, M) averaged over ``width`` consecutive rows (edges repeated)."""
    if width <= 1:
        return x
    half = width // 2
    padded = torch.nn.functional.pad(x.T[None], (half, width - 1 - half), mode="replicate")
    return torch.nn.functional.avg_pool1d(padded, width, stride=1)[0].T


def _context(x: torch.Tensor, c: int) -> torch.Tensor:
    if c == 0:
        return x
    padded = torch.cat([x[:1].expand(c, -1), x, x[-1:].expand(c, -1)])
    return torch.cat([padded[i:i + len(x)] for i in range(2 * c + 1)], 1)


def convert(mel: torch.Tensor, bank: FrameBank, variant: str) -> torch.Tensor:
    """``mel`` (n_mels, T) through one variant (module docstring)."""
    mode, k, c, *rest = variant.split(":")
    k, c = int(k), int(c)
    mix = float(rest[0]) if rest else 1.0
    t = int(rest[1]) if len(rest) > 1 else 1
    f = int(rest[2]) if len(rest) > 2 else 1
    if mode == "residual" and c == 0 and mix == 1.0 and f == 1 and t % 2 == 1:
        return FrameBank(bank.twin, bank.real, k, t).apply(mel)
    frames = mel.T
    nearest = torch.cdist(_context(frames, c), _context(bank.twin, c)).topk(
        min(k, bank.frames), dim=1, largest=False).indices
    if mode == "select":
        out = moving_average(bank.real[nearest].mean(1), t)
    elif mode == "residual":
        correction = moving_average((bank.real[nearest] - bank.twin[nearest]).mean(1), t)
        out = frames + moving_average(correction.T, f).T
    else:
        raise SystemExit(f"unknown mode {mode!r} in {variant!r}: residual or select")
    return (mix * out + (1 - mix) * frames).T.contiguous()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    voice_arguments(p)
    p.add_argument("--variants", nargs="+", default=["residual:4:0", "residual:4:0:1:3"])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    check_variants(args.variants)

    from eval.metrics import pooled_wer
    from eval.naturalness import dnsmos
    from metatts import speaker as ecapa
    from metatts.asr import transcribe
    from metatts.vocoder import load_vocoder

    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    vocoder = load_vocoder()
    pf = ckpt.config.postfilter if ckpt.config.postfilter.active else None
    rows, refs = [], []
    for name in args.voices:
        files = voice_files(args.data, name, args.support + 2)
        support, others = files[: args.support], files[args.support:]
        clips = clips_of(support)
        refs += [{"speaker": name, "wav": audio.load_audio(f)} for f in others[:8]]
        params = {"speaker.new": vector_of(model, clips)}
        bank = frame_bank(ckpt, params, support_examples(clips, ckpt), smoothing=1)
        for text in TEXTS:
            raw = _mel(model, params, NEW_SPEAKER, speakable_sentences(text, ckpt)[1][0], 1.0)
            for variant in ["encoder", *args.variants]:
                mel = (postfilter(raw, pf) if pf else raw) if variant == "encoder" else \
                    convert(raw, bank, variant)
                rows.append({"speaker": name, "variant": variant, "text": text,
                             "wav": vocoder(mel).detach().float().numpy()})
        print(f"{name}: {bank.frames} frames in the bank", file=sys.stderr, flush=True)
    everything = rows + refs
    for r, e in zip(everything, ecapa.embed([r["wav"] for r in everything], audio.SAMPLE_RATE)):
        r["emb"] = e
    centroid = {s: torch.stack([r["emb"] for r in refs if r["speaker"] == s]).mean(0)
                for s in args.voices}
    for r, n in zip(rows, dnsmos([r["wav"] for r in rows], audio.SAMPLE_RATE)):
        r.update(secs=float(ecapa.similarity(r["emb"], centroid[r["speaker"]])),
                 dnsmos=float(n.ovrl),
                 heard=transcribe(r["wav"], audio.SAMPLE_RATE, model="base")[0])
    table = {}
    print("| variant | clips | ECAPA to centroid | WER | DNSMOS OVRL |\n|---|---|---|---|---|")
    for variant in ["encoder", *args.variants]:
        chosen = [r for r in rows if r["variant"] == variant]
        per = defaultdict(list)
        for r in chosen:
            per[r["speaker"]].append(r["secs"])
        table[variant] = {
            "clips": len(chosen), "secs": float(np.mean([np.mean(v) for v in per.values()])),
            "wer": pooled_wer([r["text"] for r in chosen], [r["heard"] for r in chosen]),
            "dnsmos": float(np.mean([r["dnsmos"] for r in chosen])),
            "per_speaker": {k: round(float(np.mean(v)), 3) for k, v in per.items()}}
        t = table[variant]
        print(f"| {variant} | {t['clips']} | {t['secs']:.3f} | {t['wer']:.1%} | "
              f"{t['dnsmos']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "checkpoint": args.checkpoint, "voices": args.voices, "texts": list(TEXTS),
            "table": table,
            "clips": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                       if k not in ("wav", "emb")} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

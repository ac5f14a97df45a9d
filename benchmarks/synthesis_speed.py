"""Synthesis speed, fast vocoder path against the exact one, and what the fast path costs in quality.

    python benchmarks/synthesis_speed.py [--repeats 5] [--part speed|quality|all] [--alternatives]

speed: the shipped pretrained model speaks a 43 s text (12 sentences) with each vocoder path,
interleaved (exact, fast, fast, exact, ...), after a warm-up; prints the medians of the end-to-end
real-time factor (acoustic model + post-filter + vocoder seconds per second of audio, models
loaded beforehand), the vocoder's and the acoustic model's share, the process CPU seconds per
second of audio (both cores together), their exact/fast ratios, and the seconds to the first chunk
of :func:`metatts.synthesis.synthesize_stream` for a short sentence and for the long text.
``--alternatives`` also times other ways to run the same generator on that text's mels, interleaved
(torch float32, torch bfloat16 weights, torch under bfloat16 autocast, onnxruntime on overlapping
chunks).

quality: copy-synthesis of the held-out speakers' real clips (``metatts/eval_speakers``, all of
them unless ``--clips-per-speaker``): clip -> mel -> each vocoder path. Prints pooled Whisper base
WER (eval.metrics normalizer) of the real clips and of each path's output, the mean ECAPA cosine of
each output to its own real clip, and the sample-level difference between the two paths. The bar:
the fast path within 0.01 of the exact one on both. With ``--alternatives``, the bfloat16 torch
path too.

Timing is wall-clock on whatever else the machine runs: print the load average beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVAL_SPEAKERS = ROOT / "metatts" / "eval_speakers"

SHORT = "The garden was quiet after the rain."
LONG = (
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. "
    "A long walk in the park is good for the mind and the body. "
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells. "
    "Tomorrow we will travel to the mountains, where the air is clear and the rivers run cold. "
    "Please remember to bring your coat, your boots and a warm hat. "
) * 2


def _load_average() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def speed(repeats: int, alternatives: bool) -> dict:
    import torch

    from metatts.model.checkpoint import SHIPPED, load_checkpoint
    from metatts.synthesis import synthesize, synthesize_stream
    from metatts.vocoder import default_mode, load_vocoder

    checkpoint = load_checkpoint(SHIPPED / "pretrained")
    name = checkpoint.speakers[0]
    vocoders = {"exact": load_vocoder(mode="exact"), "fast": load_vocoder(mode=default_mode())}
    print(f"speed: torch threads {torch.get_num_threads()}, speaker {name}; the default path "
          f"('fast' below) is mode {default_mode()!r}; {_load_average()}", flush=True)
    for vocoder in vocoders.values():  # warm-up: first-call allocation, kernel selection
        synthesize(checkpoint, SHORT, speaker=name, vocoder=vocoder)
    runs = {mode: [] for mode in vocoders}
    for r in range(repeats):
        for mode in (("exact", "fast") if r % 2 == 0 else ("fast", "exact")):
            cpu = time.process_time()
            out = synthesize(checkpoint, LONG, speaker=name, vocoder=vocoders[mode])
            cpu = time.process_time() - cpu
            runs[mode].append({"rtf": out.rtf, "vocoder_rtf": out.vocoder_seconds / out.seconds,
                               "acoustic_rtf": out.acoustic_rtf, "cpu_rtf": cpu / out.seconds,
                               "audio_seconds": out.seconds})
            print(f"  repeat {r + 1} {mode:5s} RTF {out.rtf:.3f} vocoder "
                  f"{runs[mode][-1]['vocoder_rtf']:.3f} CPU {runs[mode][-1]['cpu_rtf']:.3f}",
                  flush=True)
    first = {mode: {"short": [], "long": []} for mode in vocoders}
    for r in range(repeats):
        for mode in (("exact", "fast") if r % 2 == 0 else ("fast", "exact")):
            for key, text in (("short", SHORT), ("long", LONG)):
                started = time.perf_counter()
                stream = synthesize_stream(checkpoint, text, speaker=name, vocoder=vocoders[mode])
                next(stream)
                first[mode][key].append(time.perf_counter() - started)
                stream.close()
    summary = {}
    for mode, rows in runs.items():
        summary[mode] = {key: _median([row[key] for row in rows]) for key in rows[0]}
        summary[mode]["first_chunk_short_s"] = _median(first[mode]["short"])
        summary[mode]["first_chunk_long_s"] = _median(first[mode]["long"])
    print(f"text: {len(LONG)} characters, {summary['fast']['audio_seconds']:.1f} s of audio, "
          f"{repeats} repeats per path, medians:")
    for mode, row in summary.items():
        print(f"  {mode:5s}  end-to-end RTF {row['rtf']:.3f}  vocoder {row['vocoder_rtf']:.3f}  "
              f"acoustic {row['acoustic_rtf']:.4f}  CPU s per audio s {row['cpu_rtf']:.3f}  "
              f"first chunk: short sentence {row['first_chunk_short_s']:.2f} s, long text "
              f"{row['first_chunk_long_s']:.2f} s")
    ratio = {key: summary["exact"][key] / summary["fast"][key]
             for key in ("rtf", "vocoder_rtf", "cpu_rtf")}
    paired = _median([e["rtf"] / f["rtf"] for e, f in zip(runs["exact"], runs["fast"])])
    print(f"  exact/fast: end-to-end {ratio['rtf']:.2f}x (paired median {paired:.2f}x), "
          f"vocoder {ratio['vocoder_rtf']:.2f}x, CPU {ratio['cpu_rtf']:.2f}x; "
          f"target end-to-end RTF <= 0.15: {'met' if summary['fast']['rtf'] <= 0.15 else 'not met'}")
    print(f"  {_load_average()}")
    result = {"paths": summary, "ratio": ratio, "paired_rtf_ratio": paired, "repeats": repeats,
              "text_chars": len(LONG), "threads": torch.get_num_threads()}
    if alternatives:
        result["alternatives"] = _alternatives(checkpoint, name, vocoders, repeats)
    return result


def _bf16(exact):
    """The exact path's torch generator with bfloat16 weights: mel -> wav float32."""
    import torch

    generator = copy.deepcopy(exact.generator).to(torch.bfloat16)

    def run(mel):
        with torch.inference_mode():
            return generator(mel.bfloat16()[None])[0, 0].float()
    return run


def _chunked(vocoder, core: int = 256, context: int = 20):
    """Vocode ``core`` frames at a time with ``context`` frames of mel on each side, keep the
    middle (HiFi-GAN V1's receptive field is about 15 frames each way)."""
    import torch

    def run(mel):
        frames, out = mel.shape[-1], []
        for start in range(0, frames, core):
            a, b = max(0, start - context), min(frames, start + core + context)
            wav = vocoder(mel[:, a:b])
            out.append(wav[(start - a) * 256:(start - a + min(core, frames - start)) * 256])
        return torch.cat(out)
    return run


def _alternatives(checkpoint, name, vocoders, repeats) -> dict:
    import torch

    from metatts.synthesis import synthesize

    mels = synthesize(checkpoint, LONG, speaker=name, vocoder=vocoders["fast"]).mels
    seconds = sum(m.shape[-1] for m in mels) * 256 / 22050
    exact = vocoders["exact"]

    def autocast(mel):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return exact(mel).float()
    ways = {"torch float32 (exact)": exact, "onnxruntime float32 (fast)": vocoders["fast"],
            "torch bfloat16 weights": _bf16(exact), "torch bfloat16 autocast": autocast,
            "onnxruntime, 256-frame chunks +-20": _chunked(vocoders["fast"])}
    for way in ways.values():
        way(mels[0])
    times = {k: [] for k in ways}
    for r in range(repeats):
        for key in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            started = time.perf_counter()
            for mel in mels:
                ways[key](mel)
            times[key].append((time.perf_counter() - started) / seconds)
    print(f"alternatives (vocoder RTF on the same {len(mels)} mels, {seconds:.1f} s, medians of "
          f"{repeats}; {_load_average()}):")
    out = {}
    for key, values in times.items():
        out[key] = _median(values)
        print(f"  {key:36s} {out[key]:.3f}")
    return out


def quality(clips_per_speaker: int | None, alternatives: bool) -> dict:
    import numpy as np

    from eval.metrics import pooled_wer
    from metatts import asr, audio, speaker
    from metatts.vocoder import load_vocoder

    rows = [json.loads(line) for line in (EVAL_SPEAKERS / "manifest.jsonl").read_text().splitlines()]
    if clips_per_speaker is not None:  # the first clips of each speaker
        seen: Counter[str] = Counter()
        kept = []
        for row in rows:
            seen[row["speaker"]] += 1
            if seen[row["speaker"]] <= clips_per_speaker:
                kept.append(row)
        rows = kept
    texts = [r["text"] for r in rows]
    real = [audio.load_audio(EVAL_SPEAKERS / r["audio"]) for r in rows]
    mels = [audio.mel_spectrogram(w) for w in real]
    from metatts.vocoder import default_mode

    paths = {"exact": load_vocoder(mode="exact"), "fast": load_vocoder(mode=default_mode())}
    print(f"quality: the default path ('fast' below) is mode {default_mode()!r}", flush=True)
    if alternatives:
        paths["onnxruntime float32"] = load_vocoder(mode="fast")
        paths["torch bfloat16 weights"] = _bf16(paths["exact"])
    made = {k: [v(m).numpy() for m in mels] for k, v in paths.items()}
    seconds = sum(len(w) for w in real) / audio.SAMPLE_RATE
    n_speakers = len({r["speaker"] for r in rows})
    print(f"quality: copy-synthesis of {len(rows)} real clips of {n_speakers} held-out speakers "
          f"({seconds:.0f} s); Whisper base, pooled WER; ECAPA cosine to the clip's own real audio")
    real_embeddings = speaker.embed(real, audio.SAMPLE_RATE)
    result = {"clips": len(rows), "speakers": n_speakers,
              "real_wer": pooled_wer(texts, asr.transcribe(real, audio.SAMPLE_RATE))}
    print(f"  real clips     WER {result['real_wer']:.4f}")
    for key, wavs in made.items():
        wer = pooled_wer(texts, asr.transcribe(wavs, audio.SAMPLE_RATE))
        sims = speaker.similarity(speaker.embed(wavs, audio.SAMPLE_RATE), real_embeddings)
        result[key] = {"wer": wer, "ecapa": float(sims.diagonal().mean()),
                       "ecapa_min": float(sims.diagonal().min())}
        print(f"  {key:14s} WER {wer:.4f}  ECAPA mean {result[key]['ecapa']:.4f} "
              f"(min {result[key]['ecapa_min']:.4f})")
    for key in made:
        if key == "exact":
            continue
        diff = np.concatenate([a - b for a, b in zip(made[key], made["exact"])])
        ref = np.concatenate(made["exact"])
        snr = 10 * np.log10(np.sum(ref ** 2) / max(np.sum(diff ** 2), 1e-30))
        d_wer = result[key]["wer"] - result["exact"]["wer"]
        d_sim = result[key]["ecapa"] - result["exact"]["ecapa"]
        held = abs(d_wer) <= 0.01 and abs(d_sim) <= 0.01
        result[key].update(max_abs_diff=float(np.abs(diff).max()), snr_db=float(snr),
                           d_wer=d_wer, d_ecapa=d_sim, within_0_01=held)
        print(f"  {key} - exact: WER {d_wer:+.4f}, ECAPA {d_sim:+.4f} "
              f"({'within' if held else 'NOT within'} 0.01); samples: max |diff| "
              f"{result[key]['max_abs_diff']:.2e}, signal-to-difference {snr:.1f} dB")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", choices=("speed", "quality", "all"), default="all")
    parser.add_argument("--clips-per-speaker", type=int, default=None)
    parser.add_argument("--alternatives", action="store_true",
                        help="also time (and with quality, score) other ways to run the generator")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = {}
    if args.part in ("speed", "all"):
        result["speed"] = speed(args.repeats, args.alternatives)
    if args.part in ("quality", "all"):
        result["quality"] = quality(args.clips_per_speaker, args.alternatives)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

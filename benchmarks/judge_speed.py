"""Seconds per clip of each benchmark judge, on the shipped natural test clips (every 7th clip).

    python benchmarks/judge_speed.py [--clips 15] [--threads 2]

Prints one line per judge (Whisper base through transformers, ECAPA at batch sizes 1, 4 and 16, and
once more with the weight file's subnormal numbers put back, DNSMOS, GE2E). Run it on idle cores:
the judges' thread pools slow down several-fold when other processes share the cores. Figures from
2026-12-03 (2 idle cores, 15 clips of 1.9-12.2 s, 82 s in all), in seconds per clip: Whisper base
1.58 at its default batch of 8 (another run: 1.98 / 1.39 / 1.41 at batch 1 / 4 / 16, the same
transcripts), ECAPA 1.20 / 1.33 / 2.43 (batch 1 / 4 / 16), DNSMOS 1.51, GE2E 0.03. For comparison,
on the same clips CTranslate2 (not a dependency) ran Whisper base at 1.43 (float32, the same 15
transcripts) and 1.08 (int8, 2 of 15 transcripts differ).
On the AMD EPYC (AVX512-BF16) machine of 2026-12-05 (2 idle cores, the same clips): Whisper base
1.11 / 0.96 / 0.90 / 0.91 (batch 1 / 4 / 8 / 16), ECAPA 0.13 / 0.18 / 0.59, DNSMOS 0.81 (its
network 0.18 s a window, already at onnxruntime's best session options), GE2E 0.02.
Both cores are already used: on that machine (2026-12-06, the same 15 clips, two rounds) one
thread instead of two takes Whisper base from 1.02-1.06 to 1.65-1.71 s a clip and DNSMOS from
0.78-0.81 to 1.52-1.57, so two one-thread judge processes side by side would gain about a fifth
on Whisper and nothing on DNSMOS (`--threads 1` against `--threads 2`).
On the Intel Xeon machine of 2026-12-07 (2 idle cores, the same clips): Whisper base 0.78 / 0.68 /
0.71 / 0.86 (batch 1 / 4 / 8 / 16), ECAPA 0.12 / 0.15 / 0.64 (batch 1 / 4 / 16) and 0.67 at batch
1 with the weight file's 62,000 subnormal numbers put back (the same embeddings to the bit: x86
cores compute on subnormals far slower, Intel's more than AMD's; they are zeroed at load since
that day, :func:`metatts.speaker.zero_subnormals`), DNSMOS 0.54, GE2E 0.01.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # eval/ and metatts/ from a clone, without installing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of torch and of DNSMOS's onnxruntime session (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from eval.naturalness import _model, dnsmos
    from metatts import asr, speaker

    files = sorted(glob.glob(str(ROOT / "metatts/eval_speakers/kokoro_en_*/*.flac")))[::7]
    files = files[: args.clips]
    wavs = [sf.read(f, dtype="float32")[0] for f in files]
    rate = sf.info(files[0]).samplerate
    seconds = sum(len(w) for w in wavs) / rate
    print(f"{len(wavs)} clips, {seconds:.1f} s of audio")

    def timed(name, fn):
        fn(wavs[:2])  # load the model and warm up
        started = time.perf_counter()
        fn(wavs)
        print(f"{name}: {(time.perf_counter() - started) / len(wavs):.2f} s per clip", flush=True)

    for batch in (1, 4, 8, 16):
        timed(f"Whisper base (transformers) batch {batch}",
              lambda w, b=batch: asr.transcribe(w, rate, model="base", batch_size=b))
    for batch in (1, 4, 16):
        timed(f"ECAPA batch {batch}", lambda w, b=batch: speaker.embed(w, rate, batch_size=b))
    # the pinned ECAPA file's subnormal weights, zeroed at load (speaker.zero_subnormals), put back
    zeroed = speaker.embed(wavs, rate)
    model = speaker.load_encoder(None).mods.embedding_model
    loaded = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(torch.load(speaker._bundled() / "embedding_model.ckpt",
                                     weights_only=True, map_location="cpu"))
    timed("ECAPA batch 1, the file's subnormal weights kept",
          lambda w: speaker.embed(w, rate, batch_size=1))
    same = torch.equal(speaker.embed(wavs, rate), zeroed)
    model.load_state_dict(loaded)
    print(f"ECAPA embeddings with and without the subnormal weights: "
          f"{'the same to the bit' if same else 'DIFFERENT'}")
    # speechmos opens its session on every core; DNSMOS gets the same threads as torch here
    import onnxruntime as ort

    model = _model()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    model.onnx_sess = ort.InferenceSession(model.onnx_sess._model_path, options,
                                           providers=["CPUExecutionProvider"])
    timed("DNSMOS", lambda w: dnsmos(w, rate))
    try:
        from metatts import ge2e
    except ImportError as err:
        print(f"GE2E: not available ({err})")
    else:
        timed("GE2E", lambda w: ge2e.embed_ge2e(w, rate))


if __name__ == "__main__":
    main()

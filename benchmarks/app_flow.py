"""The app's acceptance figures (issue #7): time from "adapt" to first audio, and its memory.

Starts ``python app.py`` on a free port with the shipped checkpoints (or ``METATTS_CHECKPOINT`` /
``METATTS_META_CHECKPOINT``), then drives it with gradio_client the way a person does: upload
``--clips`` clips of a held-out speaker without transcripts (Whisper fills them in), press adapt
with the page's defaults, synthesize one sentence. Prints the seconds from the adapt call to the
first audio, the server's resident memory (now and peak, from /proc), and stops the app.

    python benchmarks/app_flow.py [--speaker rab] [--clips 3] [--choice fine-tuning]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "metatts" / "eval_speakers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speaker", default="rab", help="a speaker folder of metatts/eval_speakers")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--choice", default="fine-tuning",
                   help="initialization: meta-learned, fine-tuning, or the side-by-side choice")
    p.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    p.add_argument("--out", default="runs/bench/app_flow.json")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit(f"the app did not start: {server.stderr.read()[-2000:]}")
                time.sleep(1)
        startup = time.perf_counter() - started
        idle = memory_mib(server.pid)
        client = Client(url, verbose=False)
        upload = Path(tempfile.mkdtemp())
        wavs = sorted((CLIPS / args.speaker).glob("*.flac"))[: args.clips]
        files = [handle_file(str(shutil.copy(w, upload / w.name))) for w in wavs]
        t0 = time.perf_counter()
        table = client.predict(files, None, api_name="/check_clips")
        check = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, note, _ = client.predict(table, args.choice, 20, 0, api_name="/adapt")
        adapted = time.perf_counter() - t0
        outputs = client.predict(args.text, api_name="/synthesize")
        first_audio = time.perf_counter() - t0
        used = memory_mib(server.pid)
        result = {"speaker": args.speaker, "clips": len(wavs), "choice": args.choice,
                  "startup_s": round(startup, 1), "check_clips_s": round(check, 1),
                  "adapt_s": round(adapted, 1), "adapt_to_first_audio_s": round(first_audio, 1),
                  "rss_idle_mib": round(idle["VmRSS"]), "rss_after_mib": round(used["VmRSS"]),
                  "peak_rss_mib": round(used["VmHWM"]), "note": note,
                  "audio": [o for o in outputs[:2] if o]}
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

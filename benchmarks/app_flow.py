"""The app's acceptance figures (issues #7, #18): time to the first audio, and memory.

Starts ``python app.py`` on a free port with the shipped checkpoints (or ``METATTS_CHECKPOINT`` /
``METATTS_META_CHECKPOINT``), then drives it with gradio_client the way a person does: upload
``--clips`` clips of a held-out speaker without transcripts (Whisper fills them in), hear the
preview in the start voice, press adapt with the page's defaults, speak one sentence (streamed a
sentence at a time). Prints the seconds from pressing speak to the first streamed audio (and from
the adapt call), the server's resident memory (now and peak, from /proc), and stops the app.

    python benchmarks/app_flow.py [--speaker rab] [--clips 3] [--choice fine-tuning] [--settle 10]
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


class App:
    """``python app.py`` on a free loopback port, stopped on exit."""

    def __enter__(self):
        self.port = free_port()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        # the app's messages go to a file: a pipe nobody reads until a failure can fill up
        # and stall the app (loading bars, warnings)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port",
                                        str(self.port)], cwd=ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                break
            except OSError:
                if self.server.poll() is not None or time.perf_counter() - started > 300:
                    self.server.kill()
                    self.log.seek(0)
                    raise SystemExit(f"the app did not start: {self.log.read()[-2000:]}")
                time.sleep(1)
        self.startup_s = time.perf_counter() - started
        return self

    def memory_mib(self) -> dict[str, float]:
        return memory_mib(self.server.pid)

    def __exit__(self, *exc):
        self.server.terminate()
        self.server.wait(timeout=30)
        self.log.close()


def speak_timed(client, text: str) -> tuple[float, float, tuple]:
    """(seconds to the first streamed audio, seconds to the end, the final outputs)."""
    t0 = time.perf_counter()
    job = client.submit(text, api_name="/synthesize")
    first = None
    for _ in job:  # one update per streamed sentence, then the mels, note and files
        if first is None:
            first = time.perf_counter() - t0
    outputs = job.result()
    return first, time.perf_counter() - t0, outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speaker", default="rab", help="a speaker folder of metatts/eval_speakers")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--choice", default="fine-tuning",
                   help="initialization: meta-learned, fine-tuning, or the side-by-side choice")
    p.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    p.add_argument("--steps", type=int, default=None,
                   help="adaptation steps (default: the page's, metatts.adapt.ADAPT_STEPS)")
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds to wait once the page is up before the first action, as a "
                        "person choosing clips does (the models warm up meanwhile); default 0")
    p.add_argument("--out", default="runs/bench/app_flow.json")
    args = p.parse_args(argv)
    if args.steps is None:
        sys.path.insert(0, str(ROOT))
        from metatts.adapt import ADAPT_STEPS

        args.steps = ADAPT_STEPS

    from gradio_client import Client, handle_file

    with App() as served:
        time.sleep(args.settle)
        idle = served.memory_mib()
        client = Client(served.url, verbose=False)
        upload = Path(tempfile.mkdtemp())
        wavs = sorted((CLIPS / args.speaker).glob("*.flac"))[: args.clips]
        files = [handle_file(str(shutil.copy(w, upload / w.name))) for w in wavs]
        t0 = time.perf_counter()
        table = client.predict(files, None, api_name="/check_clips")
        check = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, preview_note = client.predict(api_name="/preview")
        preview = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, note, _ = client.predict(table, args.choice, args.steps, 0, api_name="/adapt")
        adapted = time.perf_counter() - t0
        first, spoken, outputs = speak_timed(client, args.text)
        used = served.memory_mib()
        result = {"speaker": args.speaker, "clips": len(wavs), "choice": args.choice,
                  "steps": args.steps,
                  "text": args.text, "startup_s": round(served.startup_s, 1),
                  "settle_s": args.settle,
                  "check_clips_s": round(check, 1), "preview_s": round(preview, 1),
                  "adapt_s": round(adapted, 1), "speak_to_first_audio_s": round(first, 2),
                  "speak_s": round(spoken, 2), "adapt_to_first_audio_s": round(adapted + first, 1),
                  "rss_idle_mib": round(idle["VmRSS"]), "rss_after_mib": round(used["VmRSS"]),
                  "peak_rss_mib": round(used["VmHWM"]), "preview": preview_note, "note": note,
                  "speech": outputs[-1]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The app under load (issue #18): N people at once, each checking clips, adapting and speaking.

Starts ``python app.py`` on a free loopback port (shipped checkpoints, or ``METATTS_CHECKPOINT``
/ ``METATTS_META_CHECKPOINT``) and runs ``--users`` gradio_client sessions in threads, all
starting together; each uploads ``--clips`` clips of its own held-out speaker (no transcripts:
Whisper hears them), hears the preview, adapts ``--steps`` steps and speaks one sentence. Every
request is bounded by ``--limit`` seconds. Prints the wall time, each person's times and the
queue places they were told, errors, the server's memory (idle before, peak during, after), and
a cross-talk check: each person's speech must be closer (ECAPA) to their own clips than to any
other person's.

    python benchmarks/app_load.py [--users 8] [--clips 2] [--steps 20] [--choice meta-learned]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app_flow import CLIPS, ROOT, App

sys.path.insert(0, str(ROOT))  # metatts, for the cross-talk check

SENTENCE = "Good morning, this is my new voice."


def person(url: str, speaker: str, args, start: threading.Barrier) -> dict:
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    folder = Path(tempfile.mkdtemp(prefix=f"load-{speaker}-"))
    clips = sorted((CLIPS / speaker).glob("*.flac"))[: args.clips]
    out = {"speaker": speaker, "clips": [str(c) for c in clips], "times": {}, "queue": [],
           "error": None}
    try:
        files = [handle_file(str(shutil.copy(c, folder / c.name))) for c in clips]
        client = Client(url, verbose=False)
        start.wait(timeout=120)
        began = time.perf_counter()

        def call(name, *inputs):
            t0 = time.perf_counter()
            job = client.submit(*inputs, api_name=f"/{name}")
            first = None
            while not job.done():
                if time.perf_counter() - t0 > args.limit:
                    job.cancel()
                    raise TimeoutError(f"{name} took over {args.limit} s")
                status = job.status()
                if status.code == Status.IN_QUEUE and status.rank is not None:
                    out["queue"].append(status.rank + 1)  # the place a person sees, from 1
                if first is None and job.outputs():
                    first = time.perf_counter() - t0
                time.sleep(0.05)
            result = job.result()
            out["times"][name] = round(time.perf_counter() - t0, 2)
            if first is not None:
                out["times"][f"{name}_first_output"] = round(first, 2)
            return result

        table = call("check_clips", files, None)
        call("preview")
        call("adapt", table, args.choice, args.steps, 0)
        *_, speech = call("synthesize", SENTENCE)
        out["speech"] = speech[0]
        out["times"]["total"] = round(time.perf_counter() - began, 1)
    except Exception as err:  # noqa: BLE001 (counted and printed: the figure is "errors")
        out["error"] = f"{type(err).__name__}: {err}"
    out["queue"] = sorted(set(out["queue"]), reverse=True)
    return out


def cross_talk(runs: list[dict]) -> dict:
    """Each person's speech against every person's clips: is their own the most alike?"""
    import numpy as np
    import torch

    from metatts import audio, speaker

    done = [r for r in runs if r.get("speech")]
    if not done:
        return {"people": 0}
    rate = speaker.SAMPLE_RATE
    voices = sorted({r["speaker"] for r in done})
    clips = {r["speaker"]: r["clips"] for r in done}
    refs = torch.stack([speaker.embed([audio.load_audio(c, rate) for c in clips[v]], rate)
                        .mean(0) for v in voices])  # (speakers, 192): each speaker's clips
    speech = speaker.embed([audio.load_audio(r["speech"], rate) for r in done], rate)
    sims = speaker.similarity(speech, refs).numpy()  # (people, speakers)
    own = np.array([voices.index(r["speaker"]) for r in done])
    mine = sims[np.arange(len(done)), own]
    others = np.ma.masked_array(sims, np.eye(len(voices), dtype=bool)[own]).mean()
    return {"people": len(done), "own_most_alike": int(np.sum(sims.argmax(1) == own)),
            "own_similarity_mean": round(float(mine.mean()), 3),
            "others_similarity_mean": round(float(others), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--clips", type=int, default=2, help="clips each person uploads")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--choice", default="meta-learned",
                   help="initialization: meta-learned, fine-tuning, or the side-by-side choice")
    p.add_argument("--limit", type=float, default=600, help="seconds any one request may take")
    p.add_argument("--out", default="runs/bench/app_load.json")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 16:
        p.error("--users: 1 to 16 (the app's queue holds 32 waiting jobs)")
    speakers = sorted(d.name for d in CLIPS.iterdir() if d.is_dir())
    people = [speakers[i % len(speakers)] for i in range(args.users)]

    with App() as served:
        idle = served.memory_mib()
        start = threading.Barrier(args.users)
        peak, stop = [idle["VmRSS"]], threading.Event()

        def sample():
            while not stop.wait(0.5):
                peak.append(served.memory_mib()["VmRSS"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            runs = list(pool.map(lambda s: person(served.url, s, args, start), people))
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        after = served.memory_mib()
        alive = served.server.poll() is None
    errors = [f"{r['speaker']}: {r['error']}" for r in runs if r["error"]]
    result = {"users": args.users, "clips_each": args.clips, "steps": args.steps,
              "choice": args.choice, "wall_s": round(wall, 1),
              "errors": errors, "server_alive_after": alive,
              "rss_idle_mib": round(idle["VmRSS"]), "rss_max_sampled_mib": round(max(peak)),
              "peak_rss_mib": round(after["VmHWM"]), "rss_after_mib": round(after["VmRSS"]),
              "queue_places_seen": sorted({q for r in runs for q in r["queue"]}),
              "people": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    result["cross_talk"] = cross_talk(runs)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "people"}, indent=1))
    for r in runs:
        print(r["speaker"], r["times"], "queue places", r["queue"], r["error"] or "")
    return 1 if errors or not alive else 0


if __name__ == "__main__":
    sys.exit(main())

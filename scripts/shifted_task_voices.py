"""Task voices outside the training span, for meta-training: clips of the corpus's training packs
with a vocal-tract and pitch shift beyond any the corpus used (its blends shift formants by
0.88-1.12), written as a manifest dataset that meta-training can add to ``data.datasets`` and
select with ``meta.task_speakers: ["shifted_*"]``.

    python scripts/shifted_task_voices.py --corpus data/corpus --out data/task_voices

Why: tasks drawn from blends carry no signal about adapting (the encoder's start already speaks
a blend as well as 20 steps do, ``benchmarks/task_groups.py``); a voice shifted past the corpus's
range is one the model cannot reach without adapting. Only training packs are shifted (never a
validation or test voice). Every clip is derived from the corpus's own audio by
:func:`metatts.corpus.shift.apply_shift` (Praat "Change gender"); a clip already written is kept,
so the build resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metatts.corpus.shift import Shift, apply_shift  # noqa: E402

# beyond the corpus's FORMANT_RANGE (0.88-1.12): a longer and a shorter vocal tract, with pitch
# moved the same way (benchmarks/voice_shift.py: ECAPA to the unshifted voice 0.30-0.35 at 0.85
# or 1.15, DNSMOS within 0.12 of the unshifted audio, Whisper base WER 0)
SHIFTS = (Shift(formant=0.85, pitch=0.88), Shift(formant=1.15, pitch=1.15))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--out", type=Path, default=Path("data/task_voices"))
    p.add_argument("--clips", type=int, default=12, help="clips per shifted voice")
    p.add_argument("--max-seconds", type=float, default=6.0)
    args = p.parse_args(argv)

    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for line in (args.corpus / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if (row["speaker"].startswith("kokoro_en_") and row.get("split") == "train"
                and row["seconds"] <= args.max_seconds):
            by_speaker[row["speaker"]].append(row)
    if not by_speaker:
        raise SystemExit(f"no training pack clips in {args.corpus}/manifest.jsonl")
    rows = []
    for speaker, clips in sorted(by_speaker.items()):
        texts_seen, chosen = set(), []
        for row in sorted(clips, key=lambda r: r["id"]):
            if row["text"] not in texts_seen:
                texts_seen.add(row["text"])
                chosen.append(row)
        chosen = chosen[: args.clips]
        for shift in SHIFTS:
            name = f"shifted_{speaker.removeprefix('kokoro_en_')}_f{shift.formant:g}_p{shift.pitch:g}"
            folder = args.out / name
            folder.mkdir(parents=True, exist_ok=True)
            for row in chosen:
                target = folder / f"{name}_{row['id'].rsplit('_', 1)[-1]}.wav"
                if not target.exists():
                    wav, rate = sf.read(args.corpus / row["audio"], dtype="float32")
                    sf.write(target, apply_shift(wav, rate, shift), rate)
                rows.append({"id": target.stem, "speaker": name, "text": row["text"],
                             "audio": f"{name}/{target.name}", "split": "train",
                             "group": "natural", "source": row["id"],
                             "formant": shift.formant, "pitch": shift.pitch,
                             "licence": row.get("licence", "")})
        print(f"{speaker}: {len(chosen)} clips x {len(SHIFTS)} shifts", flush=True)
    (args.out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} clips of {len(rows) // args.clips} voices to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

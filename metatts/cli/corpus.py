"""``python -m metatts corpus --out DIR [--hours H] [--seed S]``: build the offline multi-speaker
English corpus (see metatts/corpus/): Kokoro's 28 English voices and hundreds of blends of them
(the "natural" group) beside the previous engine voices (the "engine" group), then score a sample
of it (Whisper WER, DNSMOS, median F0, speaker distinctness and coverage) into DIR/report.json."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

from metatts.corpus.build import DEFAULT_HOURS, BuildConfig, build, planned
from metatts.corpus.engines import ENGINES, INSTALL_SCRIPT, unavailable
from metatts.corpus.voices import VIRTUAL_SPEAKERS, catalogue


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metatts corpus", description=__doc__)
    p.add_argument("--out", type=Path, help="corpus folder (created; an unfinished build there "
                   "is continued)")
    p.add_argument("--hours", type=float, default=DEFAULT_HOURS,
                   help=f"about how much audio of the engine voices (default {DEFAULT_HOURS}; the "
                   "natural voices have fixed clip counts, see --natural-scale)")
    p.add_argument("--virtual-speakers", type=int, default=VIRTUAL_SPEAKERS, metavar="N",
                   help=f"blended natural speakers (default {VIRTUAL_SPEAKERS})")
    p.add_argument("--span-speakers", type=int, default=0, metavar="N",
                   help="natural speakers drawn from the span of the training and non-English "
                   "Kokoro packs (engine kokoro-span, 16 clips each; default 0)")
    p.add_argument("--natural-scale", type=float, default=1.0, metavar="X",
                   help="multiply the natural voices' clip counts (default 1: 30 per test or "
                   "validation voice, 80 per training voice, 16 per blend)")
    p.add_argument("--groups", default="natural,engine",
                   help="which voice groups to build: natural, engine or both (default both)")
    p.add_argument("--seed", type=int, default=0, help="picks the sentences (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="engine calls at once (default 2)")
    p.add_argument("--engines", help=f"comma-separated subset of: {','.join(ENGINES)}")
    p.add_argument("--clips-per-speaker", type=int, help="clips per engine speaker; overrides --hours")
    p.add_argument("--report-clips", type=int, default=4, metavar="N",
                   help="score the first N clips of every voice (0: no report; default 4)")
    p.add_argument("--report-blend-clips", type=int, metavar="M",
                   help="of every blended voice score only the first M clips (default N; the "
                   "report of a full corpus takes about 4.7 s per scored clip on 2 cores)")
    p.add_argument("--eval-set", type=Path, metavar="DIR", help="also export the test "
                   "speakers' first clips to DIR as FLAC (the shipped set is metatts/eval_speakers)")
    p.add_argument("--eval-clips", type=int, default=8, metavar="N",
                   help="clips per test speaker in --eval-set (default 8)")
    p.add_argument("--eval-group", choices=("natural", "engine"),
                   help="export only this group's test speakers (the others in DIR are kept)")
    p.add_argument("--eval-split", choices=("test", "val"), default="test",
                   help="export this split's speakers: val gives the validation voices, for a "
                   "benchmark read that replicates the held-out one (a folder of their own; "
                   "default test)")
    p.add_argument("--store", type=Path, metavar="DIR", help="a packed copy of the slow voices "
                   "(metatts.corpus.store; this repository's is corpus-store/): its clips are "
                   "restored into --out first, and each speaker finished is packed into it")
    p.add_argument("--pack", action="store_true", help="only pack the finished speakers of "
                   "--out into --store (e.g. while another build runs), then stop")
    p.add_argument("--list", action="store_true", help="list the voices and whether they are "
                   "installed, then stop")
    return p


def _voices(engines: str | None, groups: str, virtual: int, seed: int, span: int = 0):
    chosen = {g.strip() for g in groups.split(",") if g.strip()}
    if not chosen or chosen - {"natural", "engine"}:
        raise ValueError(f"--groups takes natural, engine or both, got {groups!r}")
    voices = tuple(v for v in catalogue(virtual, seed, span) if v.group in chosen)
    if engines is None:
        return voices
    wanted = [e.strip() for e in engines.split(",") if e.strip()]
    unknown = sorted(set(wanted) - set(ENGINES))
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    return tuple(v for v in voices if v.engine in wanted)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.virtual_speakers < 0 or args.span_speakers < 0 or args.natural_scale <= 0:
            raise ValueError("--virtual-speakers and --span-speakers must be >= 0 and "
                             "--natural-scale > 0")
        if args.report_blend_clips is not None and args.report_blend_clips < 1:
            raise ValueError("--report-blend-clips must be at least 1 (use --report-clips 0 "
                             "for no report)")
        voices = _voices(args.engines, args.groups, args.virtual_speakers, args.seed,
                         args.span_speakers)
    except ValueError as err:
        print(f"corpus: {err}", file=sys.stderr)
        return 2
    if args.list:
        for v in voices:
            why = unavailable(v)
            print(f"{v.group:8} {v.engine:10} {v.voice_id:44} {v.speaker:28} "
                  f"{'ok' if why is None else why}")
        return 0
    if args.out is None:
        print("corpus: give --out DIR (where to build the corpus)", file=sys.stderr)
        return 2
    if not 0 < args.hours < float("inf") or args.jobs < 1 or (args.clips_per_speaker or 1) < 1:
        print("corpus: --hours, --jobs and --clips-per-speaker must be positive (and --hours "
              "a finite number of hours)", file=sys.stderr)
        return 2
    config = BuildConfig(hours=args.hours, seed=args.seed, jobs=args.jobs,
                         clips_per_speaker=args.clips_per_speaker,
                         virtual_speakers=args.virtual_speakers, natural_scale=args.natural_scale,
                         span_speakers=args.span_speakers)
    clips, skipped = planned(config, voices)
    if args.pack:
        return _pack(args.out, args.store, clips)
    for message in skipped:
        print(f"corpus: skipping {message}", file=sys.stderr)
    if not clips:
        print(f"corpus: no engine is installed; run `sudo bash {INSTALL_SCRIPT}`", file=sys.stderr)
        return 2

    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(total=len(clips), unit="clip", desc="rendering") as bar:
        result = build(args.out, config, voices, on_progress=bar.update, store=args.store)
    build_seconds = time.perf_counter() - start
    for message in result.failures:
        print(f"corpus: FAILED {message}", file=sys.stderr)

    summary = _summary(result.clips)
    summary.update(seed=args.seed, written=result.written, build_seconds=round(build_seconds, 1),
                   skipped=result.skipped, failures=result.failures)
    if args.report_clips > 0 and result.clips:
        from metatts.corpus.quality import assess, sample

        n = len(sample(result.clips, args.report_clips, args.report_blend_clips))
        with tqdm(total=n, unit="clip", desc="scoring") as bar:
            report = assess(args.out, result.clips, args.report_clips, on_progress=bar.update,
                            extra=_real_voices(2 * args.report_clips),
                            per_blend=args.report_blend_clips,
                            transcript_cache=Path(args.out) / "quality_transcripts.jsonl")
        summary["quality"] = dataclasses.asdict(report)
    if args.eval_set is not None and result.clips:
        from metatts.corpus.eval_set import export_eval_set

        try:
            exported = export_eval_set(args.out, args.eval_set, args.eval_clips,
                                       split=args.eval_split, group=args.eval_group)
        except ValueError as err:  # the corpus is built and kept; only the export is refused
            print(f"corpus: {err}", file=sys.stderr)
            return 2
        summary["eval_set"] = {"dir": str(args.eval_set), "clips": len(exported),
                               "speakers": sorted({c.speaker for c in exported})}
    (Path(args.out) / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 1 if result.failures else 0


def _pack(root: Path, store: Path | None, plan) -> int:
    """--pack: store every speaker of the plan whose clips are all rendered in ``root``."""
    from metatts.corpus.build import is_done
    from metatts.corpus.store import pack

    if store is None:
        print("corpus: --pack needs --store DIR (where to pack)", file=sys.stderr)
        return 2
    by_speaker: dict[str, list] = {}
    for clip, _ in plan:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    finished = [c for own in by_speaker.values() if all(is_done(root, c) for c in own)
                for c in own]
    packed = pack(root, store, finished)
    print(json.dumps({"packed": packed, "finished_speakers": len({c.speaker for c in finished}),
                      "store": str(store)}, indent=1))
    return 0


def _real_voices(per_speaker: int) -> list[tuple[str, Path]]:
    """(speaker, file) of the recorded people in the shipped evaluation set, for coverage."""
    from metatts.corpus.eval_set import SHIPPED
    from metatts.corpus.manifest import read_manifest
    from metatts.corpus.voices import REAL_PREFIX

    if not (SHIPPED / "manifest.jsonl").is_file():
        return []
    out, taken = [], collections.Counter()
    for clip in read_manifest(SHIPPED):
        if clip.speaker.startswith(REAL_PREFIX) and taken[clip.speaker] < per_speaker:
            taken[clip.speaker] += 1
            out.append((clip.speaker, SHIPPED / clip.audio))
    return out


def _summary(clips) -> dict:
    """Speakers, clips and hours per split and per engine."""
    def tally(key):
        out = collections.defaultdict(lambda: {"speakers": set(), "clips": 0, "hours": 0.0})
        for c in clips:
            row = out[key(c)]
            row["speakers"].add(c.speaker)
            row["clips"] += 1
            row["hours"] += c.seconds / 3600
        return {k: {"speakers": len(v["speakers"]), "clips": v["clips"],
                    "hours": round(v["hours"], 3)} for k, v in sorted(out.items())}

    return {"speakers": len({c.speaker for c in clips}), "clips": len(clips),
            "hours": round(sum(c.seconds for c in clips) / 3600, 3),
            "by_group": tally(lambda c: c.group),
            "by_group_split": tally(lambda c: f"{c.group}/{c.split}"),
            "by_split": tally(lambda c: c.split), "by_engine": tally(lambda c: c.engine)}

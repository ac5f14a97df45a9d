"""``python -m eval``: the benchmark tables, and ``python -m eval score`` for single files."""

from __future__ import annotations

import argparse
import json
import sys

from eval import metrics


def score_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval score",
        description="Transcribe audio with Whisper and score it. Prints one JSON object per file: "
        '{"audio", "transcript", "wer", "secs"}. '
        f"WER: per-utterance, after the {metrics.NORMALIZER}, counted by jiwer. "
        "secs: mean cosine of ECAPA (spkrec-ecapa-voxceleb) embeddings to the --reference clips "
        "(omitted without references).",
    )
    parser.add_argument("audio", nargs="+", help="audio files to score (wav, flac, mp3, ogg)")
    parser.add_argument("--text", required=True, help="what the audio should say")
    parser.add_argument("--reference", nargs="*", default=None, metavar="REF",
                        help="real clips of the target speaker for speaker similarity")
    parser.add_argument("--asr", default="base",
                        help="Whisper model: base (default), tiny.en, a local dir or a hub id")
    parser.add_argument("--speaker-model", default=None,
                        help="ECAPA model dir or hub id (default: the bundled copy)")
    args = parser.parse_args(argv)

    from metatts.assets import AssetError
    from metatts.audio import AudioError, load_audio

    if not any(ch.isalnum() for ch in metrics.normalize(args.text)):
        parser.error("--text has no words; give the sentence the audio should say")
    if args.reference is not None and not args.reference:
        parser.error("--reference names no clips; give real clips of the speaker after it, or "
                     "leave it out to score WER only")
    try:
        wavs = [load_audio(path, 16000) for path in args.audio]
        refs = [load_audio(path, 16000) for path in args.reference or []]
        from eval.score import score_clips

        scores = score_clips(wavs, 16000, [args.text] * len(wavs), refs or None,
                             asr_model=args.asr, speaker_model=args.speaker_model)
    except (AudioError, AssetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, score in zip(args.audio, scores):
        print(json.dumps({"audio": path, **score.to_dict()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "score":
        return score_main(argv[1:])
    try:
        from eval.benchmark import main as benchmark_main
    except ModuleNotFoundError as err:
        if err.name != "eval.benchmark":
            raise
        print("python -m eval: the benchmark tables are not available in this version yet; "
              "`python -m eval score AUDIO --text TEXT` is.", file=sys.stderr)
        return 2
    return benchmark_main(argv)

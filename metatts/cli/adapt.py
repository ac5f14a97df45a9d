"""``python -m metatts adapt CLIP [CLIP ...] --init meta|pretrained --out VOICE.safetensors``:
adapt the acoustic model to a new voice from a few clips and save the voice file.

A clip's transcript is the same-name .txt beside it; without one, Whisper transcribes it, and a
clip whose transcript is empty or unreliable is left out with a message. Progress goes to stderr,
a JSON summary to stdout."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from safetensors import SafetensorError

from metatts.adapt import (INITS, MIN_CONFIDENCE, STARTS, RECHECK_BELOW, RECHECK_MODEL, AdaptError,
                           ClipSelection, Progress, adapt, default_settings, fitting_clips,
                           load_base, load_clips, with_changes)
from metatts.app_logic import clip_advice
from metatts.assets import AssetError, output_problem
from metatts.audio import AudioError
from metatts.frames import KEYS as FRAME_KEYS
from metatts.meta.inner_loop import OPTIMIZERS, PRECISIONS
from metatts.meta.support import BATCHINGS
from metatts.model.checkpoint import CheckpointError, checkpoint_files
from metatts.model.fastspeech2 import GROUPS
from metatts.text import dropped_letters
from metatts.voice import VoiceError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metatts adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", metavar="CLIP", help="audio files of the new voice "
                   "(wav, flac, mp3, ogg), each with a same-name .txt transcript if possible")
    p.add_argument("--init", required=True, choices=INITS,
                   help="start from the meta-learned initialization, or from the pretrained "
                        "model with the mean speaker embedding (fine-tuning baseline)")
    p.add_argument("--out", required=True, metavar="VOICE.safetensors", help="voice file to write")
    p.add_argument("--force", action="store_true",
                   help="replace the --out file if it exists (never a clip or the checkpoint)")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="base checkpoint (default: the shipped one for --init, checkpoints/INIT)")
    p.add_argument("--steps", type=int, help="gradient steps (default: per --init)")
    p.add_argument("--lr", type=float, help="learning rate (default: per --init and --start)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default: per --init")
    p.add_argument("--groups", nargs="+", choices=GROUPS, metavar="GROUP",
                   help=f"parameter groups to adapt, of {', '.join(GROUPS)} (default: per --init)")
    p.add_argument("--batching", choices=BATCHINGS, help="clips per step (default: per --init)")
    p.add_argument("--batch-size", type=int, help="clips per step with --batching minibatch")
    p.add_argument("--seed", type=int, help="seed for clip order (default 0)")
    p.add_argument("--start", choices=STARTS, help="where the voice vector starts: the "
                   "meta-learned one, the mean of the training speakers, or the speaker "
                   "encoder's vector of the clips (v2 models; --steps 0 gives that zero-shot "
                   "voice). Default auto: per --init and checkpoint")
    p.add_argument("--lock-timing", action=argparse.BooleanOptionalAction, default=None,
                   help="keep durations, pitch and energy those of the start voice (only the "
                   "sound is fitted; v2 models)")
    p.add_argument("--proximal", type=float, metavar="W",
                   help="pull the adapted values back toward the start with weight W")
    p.add_argument("--terms", nargs="+", metavar="TERM", help="follow only these loss terms "
                   "(e.g. mel postnet pitch energy, the default of a v2 model's inner loop: no "
                   "duration gradient); 'all' follows the whole loss")
    p.add_argument("--early-stop", action="store_true", default=None,
                   help="hold out the last clip and keep the step count where its loss is "
                   "lowest (needs 2+ clips)")
    p.add_argument("--piece-frames", type=int, metavar="N",
                   help="step on clips longer than N mel frames as pieces of whole words "
                   "(faster; 0: whole clips; default: per --init)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="arithmetic of the steps: bfloat16 (autocast; faster where the "
                   "processor has native bfloat16) or float32 (default: per --init)")
    p.add_argument("--frames", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the clips' frame bank in the voice, so that every frame it speaks "
                   "is corrected by the clips' own (metatts.frames; default on)")
    p.add_argument("--frames-key", choices=FRAME_KEYS,
                   help="what frame matching compares: the decoder's hidden states (default; "
                   "kept as a third tensor in the voice's bank) or the log-mel")
    p.add_argument("--verifier", type=float, metavar="W",
                   help="weight of the verifier term: the steps also pull the voice toward the "
                   "clips' as the shipped speaker verifier (trained on the corpus's voices) "
                   "hears it; 0: off (default: per --init)")
    p.add_argument("--verifier-every", type=int, metavar="N",
                   help="the verifier term on every N-th step only (cheaper; default: per "
                   "--init)")
    p.add_argument("--asr", default="tiny.en", metavar="MODEL",
                   help="Whisper model for clips without a .txt (default tiny.en)")
    p.add_argument("--recheck", default=RECHECK_MODEL, metavar="MODEL",
                   help=f"Whisper model for a second opinion on transcripts below "
                        f"{RECHECK_BELOW} confidence (default {RECHECK_MODEL}; 'none' to skip)")
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE,
                   help=f"leave out Whisper transcripts below this confidence "
                        f"(default {MIN_CONFIDENCE})")
    p.add_argument("--quiet", action="store_true", help="no per-step progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def progress(p: Progress) -> None:
        print(f"step {p.step}/{p.steps}  loss {p.loss:.4f}", file=sys.stderr, flush=True)

    problem = output_problem(args.out, (".safetensors",), inputs=args.clips, force=args.force)
    if problem:
        return _fail(f"--out {problem}")
    if not 0 <= args.min_confidence <= 1:
        return _fail(f"--min-confidence is a share of Whisper's confidence between 0 and 1, "
                     f"got {args.min_confidence}.")
    try:
        base = load_base(args.init, args.checkpoint)
        problem = output_problem(args.out, inputs=checkpoint_files(base.path), force=True)
        if problem:  # --out is one of the checkpoint's own files
            return _fail(f"--out {problem}")
        overrides = {"steps": args.steps, "lr": args.lr, "optimizer": args.optimizer,
                     "groups": tuple(args.groups) if args.groups else None,
                     "batching": args.batching, "batch_size": args.batch_size, "seed": args.seed,
                     "start": args.start, "lock_timing": args.lock_timing,
                     "proximal": args.proximal, "early_stop": args.early_stop,
                     "terms": (() if args.terms == ["all"] else tuple(args.terms))
                     if args.terms else None,
                     "piece_frames": args.piece_frames, "precision": args.precision,
                     "frames": args.frames, "frames_key": args.frames_key,
                     "verifier": args.verifier, "verifier_every": args.verifier_every}
        try:
            settings = with_changes(default_settings(args.init, base, args.start), **overrides)
        except (TypeError, ValueError) as err:  # a value out of range, e.g. --steps -1
            return _fail(str(err))
        if args.batch_size is not None and settings.batching != "minibatch":
            return _fail(f"--batch-size sets the clips per step of --batching minibatch, and "
                         f"this adaptation batches '{settings.batching}'; add --batching "
                         "minibatch, or leave --batch-size out.")
        selection = load_clips(args.clips, asr_model=args.asr,
                               min_confidence=args.min_confidence,
                               recheck_model=None if args.recheck == "none" else args.recheck)
        fit, unfit = fitting_clips(selection.clips, base)
        for left in [*selection.left_out, *unfit]:
            print(f"left out {left.name}: {left.reason}", file=sys.stderr)
        selection = ClipSelection(tuple(fit), (*selection.left_out, *unfit))
        used = {clip.name for clip in selection.clips}
        for path in args.clips:  # what the app's clip report would say of them
            if Path(path).name in used:
                for advice in clip_advice(path):
                    print(f"note: {Path(path).name}: {advice}", file=sys.stderr)
        for clip in selection.clips:
            foreign = dropped_letters(clip.text)
            if foreign:
                print(f"note: {clip.name}: the model reads English in Latin letters, so "
                      f"{foreign} in its transcript is not in the text it is fitted to; a clip "
                      "of English speech alone fits the voice better.", file=sys.stderr)
        if not selection.clips:
            return _fail(f"none of the {len(args.clips)} clips can be used (see above). Give "
                         "clips of clear speech, each with its transcript in a .txt beside it.")
        result = adapt(selection.clips, base, settings, on_step=None if args.quiet else progress)
        path = _save(result.voice, args.out)
        rescued = path != Path(args.out)  # saved elsewhere: not what was asked
    except (AdaptError, AudioError, AssetError, CheckpointError, VoiceError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        _fail("interrupted; no voice was written.")
        return 130
    print(json.dumps({
        "voice": str(path), **({"requested": args.out} if rescued else {}),
        "init": settings.init, "base": result.voice.base.describe(),
        "clips": len(selection.clips), "left_out": len(selection.left_out),
        "start": result.start, "steps": settings.steps, "groups": list(settings.groups),
        "stopped_at": result.stopped_at,
        "guards": {"lock_timing": settings.lock_timing, "proximal": settings.proximal,
                   "terms": list(settings.terms) or "all", "early_stop": settings.early_stop},
        "verifier": {"weight": settings.verifier, "every": settings.verifier_every},
        "optimizer": settings.optimizer, "piece_frames": settings.piece_frames,
        "precision": settings.precision,
        "frames": result.voice.frames.frames if result.voice.frames is not None else 0,
        "frames_key": settings.frames_key,
        "lr": "learned (Meta-SGD)" if settings.learned_lrs else settings.lr,
        "loss_start": result.losses[0] if result.losses else result.final_loss,
        "loss_final": result.final_loss, "seconds": round(result.seconds, 2),
    }))
    return 1 if rescued else 0


def _save(voice, out: str) -> Path:
    """Write the voice to ``out``; if that fails after all the work, to a temporary folder, and
    say where (the adapted voice is not lost). :class:`VoiceError` if neither can be written."""
    try:
        return voice.save(out)
    except (OSError, SafetensorError) as err:
        rescue = Path(tempfile.mkdtemp(prefix="metatts-voice-")) / Path(out).name
        try:
            voice.save(rescue)
        except (OSError, SafetensorError) as again:
            raise VoiceError(f"could not write the voice to {out} ({err}) nor to {rescue} "
                             f"({again}); free some disk space and adapt again.") from None
        print(f"metatts adapt: could not write {out} ({err}); the voice was saved to {rescue} "
              "instead: move it where you want it.", file=sys.stderr)
        return rescue


def _fail(message: str) -> int:
    print(f"metatts adapt: {message}", file=sys.stderr)
    return 1

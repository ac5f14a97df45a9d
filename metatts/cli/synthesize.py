"""``python -m metatts synthesize --text TEXT (--speaker NAME | --voice VOICE.safetensors |
--reference CLIP [CLIP ...]) --out OUT.wav [--checkpoint PATH] [--vocoder fast|bf16|exact]
[--no-frames]``, or ``--list-speakers``."""

from __future__ import annotations

import argparse
import sys

# metatts.frames.KEYS and DEFAULT_KEY, written out so that `--help` does not import torch
FRAME_KEYS, DEFAULT_FRAMES_KEY = ("mel", "hidden"), "hidden"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metatts synthesize", description=__doc__)
    parser.add_argument("--text", help="what to say (long text is split into sentences)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--speaker", help="a speaker name of the checkpoint (see --list-speakers)")
    who.add_argument("--voice", help="an adapted voice file (.safetensors from `metatts adapt`)")
    who.add_argument("--reference", nargs="+", metavar="CLIP",
                     help="zero-shot: speak in the voice of these clips, encoded by the model's "
                          "speaker encoder with no adaptation step (a v2 model), each frame "
                          "corrected by the clips' own (their transcripts: .txt beside each "
                          "clip, else Whisper's; see --no-frames)")
    parser.add_argument("--out", help="output .wav or .flac (22,050 Hz, 16-bit)")
    parser.add_argument("--force", action="store_true",
                        help="replace the --out file if it exists (never a --reference clip, "
                             "the voice or the checkpoint)")
    parser.add_argument("--checkpoint",
                        help="run directory, checkpoint directory or model.safetensors "
                             "(default: the shipped one: checkpoints/meta for a voice adapted "
                             "from it, else $METATTS_CHECKPOINT or checkpoints/pretrained)")
    parser.add_argument("--list-speakers", action="store_true",
                        help="print the checkpoint's speaker names, one per line, and exit")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="speaking rate, 0.25 to 4 (> 1 is faster; default 1)")
    parser.add_argument("--no-frames", action="store_true",
                        help="speak with the voice's vector and parameters alone: leave out the "
                             "correction of each frame by the clips' own (metatts.frames; on "
                             "by default for --reference and for voices that carry it)")
    parser.add_argument("--frames-key", choices=FRAME_KEYS, default=DEFAULT_FRAMES_KEY,
                        help="with --reference: what frame matching compares, the decoder's "
                             "hidden states (default) or the log-mel (a voice file keeps what it "
                             "was adapted with)")
    parser.add_argument("--no-postfilter", action="store_true",
                        help="leave the mel as the model made it (skip the checkpoint's "
                             "post-filter, see `python -m metatts postfilter`)")
    parser.add_argument("--vocoder", choices=("fast", "bf16", "exact"),
                        help="HiFi-GAN V1 run by onnxruntime (fast), by torch in bfloat16 (bf16) "
                             "or by torch in float32 (exact, the reference path); default: "
                             "$METATTS_VOCODER, else bf16 on CPUs with native bfloat16, else fast")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--verbose", action="store_true",
                        help="report sentences, duration and real-time factor on stderr")
    args = parser.parse_args(argv)

    from metatts.assets import output_problem
    from metatts.audio import OUTPUT_SUFFIXES, save_audio
    from metatts.model.checkpoint import (CheckpointError, checkpoint_files, load_checkpoint,
                                          shipped_checkpoint)
    from metatts.synthesis import check_pace, synthesize
    from metatts.text import TextError, dropped_letters, dropped_symbols
    from metatts.vocoder import load_vocoder
    from metatts.voice import Voice

    try:
        voice = Voice.load(args.voice) if args.voice else None
        if args.checkpoint is None:  # the shipped model the voice was adapted from
            init = voice.settings.get("init") if voice else "pretrained"
            args.checkpoint = shipped_checkpoint(init if init == "meta" else "pretrained")
        if args.list_speakers:
            from metatts.model.checkpoint import read_metadata

            print("\n".join(read_metadata(args.checkpoint)["speakers"]))
            return 0
        if args.text is None or not args.out:
            parser.error("--text and --out are required (or use --list-speakers).")
        if not args.text.strip():
            parser.error("--text is empty: give the words to speak.")
        problem = output_problem(args.out, OUTPUT_SUFFIXES, force=args.force,
                                 inputs=[*(args.reference or ()), *([args.voice] if args.voice
                                                                    else ()),
                                         *checkpoint_files(args.checkpoint)])
        if problem:
            parser.error(f"--out {problem}")
        check_pace(args.pace)  # before anything loads
        if not (args.speaker or args.voice or args.reference):
            parser.error("choose a voice: --speaker NAME (see --list-speakers), --voice FILE or "
                         "--reference CLIP [CLIP ...].")
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda: this machine's PyTorch sees no CUDA GPU; use --device "
                         "cpu (the default) or auto.")
        device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
            "cpu" if args.device == "auto" else args.device)
        checkpoint = load_checkpoint(args.checkpoint, device=device)
        params = references = frames = None
        if voice is not None:
            voice.check_base(checkpoint)  # a voice only fits the model it was adapted from
            params = voice.params
            frames = None if args.no_frames else voice.frames
        if args.reference:
            references = _reference_mels(checkpoint, args.reference)
            params = {"speaker.new": _encoded(checkpoint, references)}
            if not args.no_frames:
                frames = _reference_frames(checkpoint, params, args.reference, args.frames_key)
        vocoder = load_vocoder(mode=args.vocoder)  # on CPU
        # a model with reference attention also reads the clips frame by frame
        result = synthesize(checkpoint, args.text, params, args.speaker, pace=args.pace,
                            vocoder=vocoder, postfilter=not args.no_postfilter,
                            references=references, frames=frames)
        save_audio(args.out, result.wav, result.sample_rate)
        dropped = dropped_letters(args.text)
        if dropped:
            print(f"metatts synthesize: not spoken: {dropped} (the model reads English in Latin "
                  "letters; spell such words out in Latin letters to have them spoken).",
                  file=sys.stderr)
        symbols = dropped_symbols(args.text)
        if symbols:
            print(f"metatts synthesize: not spoken: {symbols} (emoji and symbols are not read "
                  "aloud; write what they say in words to have it spoken).", file=sys.stderr)
    except (CheckpointError, TextError, ValueError) as err:  # VoiceError, AudioError: ValueErrors
        print(f"metatts synthesize: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metatts synthesize: interrupted; nothing was written.", file=sys.stderr)
        return 130
    if args.verbose:
        print(f"{len(result.sentences)} sentence(s), {result.seconds:.2f} s of audio; "
              f"real-time factor {result.rtf:.3f} (acoustic model {result.acoustic_rtf:.3f}, "
              f"vocoder {result.vocoder_seconds / result.seconds:.3f}, {vocoder.mode}); "
              f"wrote {args.out}",
              file=sys.stderr)
        pf = checkpoint.config.postfilter
        print("mel post-filter: " + (f"spectral {pf.spectral}, temporal {pf.temporal}"
                                     if pf.active and not args.no_postfilter else "off"),
              file=sys.stderr)
    return 0


def _reference_mels(checkpoint, clips: list[str]):
    """The log-mels of ``clips``, prepared as every clip is, on the model's device."""
    from metatts.audio import mel_spectrogram, prepare_clip

    device = next(checkpoint.model.parameters()).device
    return [mel_spectrogram(prepare_clip(path)).to(device) for path in clips]


def _reference_frames(checkpoint, params, clips: list[str], key: str):
    """The clips' frame bank (:mod:`metatts.frames`) for the encoded voice ``params``: each clip
    needs its transcript (the same-name .txt beside it, else Whisper's, as for `adapt`). Clips
    without a usable one are named on stderr and left out; None when no clip has one."""
    from metatts.adapt import fitting_clips, load_clips, support_examples
    from metatts.frames import frame_bank

    selection = load_clips(clips)
    fit, unfit = fitting_clips(selection.clips, checkpoint)
    for left in [*selection.left_out, *unfit]:
        print(f"metatts synthesize: {left.name} is not used to correct the frames: "
              f"{left.reason}", file=sys.stderr)
    if not fit:
        print("metatts synthesize: no reference clip has a transcript, so the voice is the "
              "encoder's vector alone (put each clip's words in a .txt beside it).",
              file=sys.stderr)
        return None
    return frame_bank(checkpoint, params, support_examples(fit, checkpoint), key=key)


def _encoded(checkpoint, mels):
    """The speaker vector the model's encoder gives for the clips' ``mels`` (no gradient step)."""
    import torch

    with torch.inference_mode():
        return checkpoint.model.encode_speaker(mels)

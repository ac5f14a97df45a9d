"""The real-voice evaluation group: Allison Smith's Asterisk prompts, a real US woman's recordings.

Debian's ``asterisk-core-sounds-en-g722`` holds the prompts as 16 kHz G.722 and
``asterisk-core-sounds-en`` their texts (``core-sounds-en.txt.gz``, lines "name: text").
:func:`build_real_voice` decodes the prompts of 5+ spoken words and at most 20 s (ffmpeg
``-f g722``; the static build inside the ``imageio-ffmpeg`` wheel), resamples them to the project
rate, trims and loudness-normalizes them as the corpus does, and writes one speaker folder
``<out>/real_allison/<id>.flac`` + ``<id>.txt`` with a corpus ``manifest.jsonl`` (split "test",
engine "human") and the package's copyright file beside it. It is an evaluation group only: its
manifest puts the speaker in "test", so training never takes it.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from metatts.assets import atomic_path
from metatts.audio import SAMPLE_RATE, normalize_loudness, resample, save_audio, trim_silence
from metatts.corpus.manifest import MANIFEST, Clip, read_manifest, write_manifest
from metatts.text import normalize_text

AUDIO_PACKAGE = "asterisk-core-sounds-en-g722"
TEXT_PACKAGE = "asterisk-core-sounds-en"
INSTALL = f"sudo apt-get install -y {AUDIO_PACKAGE} {TEXT_PACKAGE}"
# Where the Debian packages put their files (relative to the file-system root).
SOUND_DIRS = ("usr/share/asterisk/sounds/en_US_f_Allison", "usr/share/asterisk/sounds/en")
TRANSCRIPTS = f"usr/share/doc/{TEXT_PACKAGE}/core-sounds-en.txt.gz"
COPYRIGHTS = (f"usr/share/doc/{AUDIO_PACKAGE}/copyright", f"usr/share/doc/{TEXT_PACKAGE}/copyright")
G722_RATE = 16000  # Hz
G722_BYTES_PER_SECOND = 8000  # 64 kbit/s
SPEAKER = "real_allison"
GROUP = "real"  # the manifest's group column (the corpus has "natural" and "engine")
ENGINE = "human"  # the manifest's engine column for a recorded person
VOICE = "Allison Smith (Asterisk core sounds 1.6)"
LICENCE = "CC-BY-SA-3.0 (Allison Smith, Asterisk core sounds; see COPYRIGHT)"
MIN_WORDS = 5
MAX_SECONDS = 20.0  # longer prompts (menus read out in full) are left out: Whisper hears 30 s
COPYRIGHT_FILE = "COPYRIGHT"
ATTRIBUTION_FILE = "ATTRIBUTION.md"
SHIPPED = Path(__file__).resolve().parents[1] / "eval_speakers" / SPEAKER
DEFAULT_OUT = Path("data/real_voice")
# Listed texts that are not what is said: typos in the list, and words the reader added (where
# Whisper base and tiny.en, run over all kept prompts, both heard the same other words).
CORRECTIONS = {
    "unidentified-no-callback": "Unidentified or withheld and therefore cannot be called back.",
    "pbx-invalid": "I am sorry, but that's not a valid extension. Please try again.",
    "vm-savefolder": "Which folder should I save this message to?",
}
# Telephone-keypad symbols as the prompts speak them ("press * to ...", "followed by #").
_KEYPAD = {"*": " star ", "#": " pound "}
# Text the reader did not say: stage directions and notes ("[beep]", "(simple tone sound plays)").
_ANNOTATION = re.compile(r"[\[\]()]")
# Numbers whose reading the text does not settle ("1234": digits or "twelve thirty-four"?; "28.8";
# "H.323"; "3D"): such prompts are left out rather than given a guessed transcript.
_AMBIGUOUS_NUMBER = re.compile(r"\d{3,}|\d[.,]\d|\w\.\d|\d[A-Za-z]|[A-Za-z]\d")


class RealVoiceUnavailable(RuntimeError):
    """The Debian packages (or ffmpeg) the real-voice group is built from are not installed."""


@dataclass(frozen=True)
class AsteriskSources:
    sounds: Path  # folder of <name>.g722 (and sub-folders such as dictate/)
    transcripts: Path  # core-sounds-en.txt.gz
    copyright: Path  # the package's Debian copyright file (licence and attribution)


@dataclass(frozen=True)
class Prompt:
    name: str  # as in core-sounds-en.txt: "vm-intro", "dictate/both_help"
    written: str  # the text as listed
    spoken: str  # what is said, normalized like every transcript in the project

    @property
    def id(self) -> str:
        return f"{SPEAKER}_{self.name.replace('/', '-')}"


@dataclass(frozen=True)
class Selection:
    prompts: tuple[Prompt, ...]  # kept, in name order
    skipped: dict[str, str]  # prompt name -> why it was left out


@dataclass(frozen=True)
class RealVoiceBuild:
    root: Path
    clips: tuple[Clip, ...]
    written: int  # clips decoded and written this run (0 when everything was already there)
    skipped: dict[str, str]  # prompt name -> why it was left out

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.clips)


@dataclass(frozen=True)
class RealVoice:
    """The real-voice group if it can be had: ``root`` is a folder ``metatts.data.read_dataset``
    reads, or None, and then ``message`` says why and how to install it."""

    root: Path | None
    message: str


# --- finding the packages' files ---------------------------------------------------------------

def find_sources(root: str | Path = "/") -> AsteriskSources:
    """The prompts, transcripts and copyright file under the file-system ``root`` (the known
    Debian paths, then ``dpkg -L``); raises :class:`RealVoiceUnavailable` giving the install
    command."""
    root = Path(root)
    listed = _dpkg_files(AUDIO_PACKAGE) + _dpkg_files(TEXT_PACKAGE) if root == Path("/") else []
    sounds = next((d for d in [root / p for p in SOUND_DIRS] + _g722_dirs(listed)
                   if d.is_dir() and any(d.glob("*.g722"))), None)
    transcripts = next((f for f in [root / TRANSCRIPTS] + [p for p in listed
                        if p.name == Path(TRANSCRIPTS).name] if f.is_file()), None)
    copyright_ = next((f for f in [root / p for p in COPYRIGHTS] if f.is_file()), None)
    missing = [what for what, found in (
        (f"the G.722 prompts ({AUDIO_PACKAGE}: {root / SOUND_DIRS[0]}/*.g722)", sounds),
        (f"their transcripts ({TEXT_PACKAGE}: {root / TRANSCRIPTS})", transcripts),
        (f"the licence file ({root / COPYRIGHTS[0]})", copyright_),
    ) if found is None]
    if missing:
        raise RealVoiceUnavailable(
            f"The real-voice group is built from Debian's Asterisk prompts, but "
            f"{'; '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed. "
            f"Install them with `{INSTALL}`.")
    return AsteriskSources(sounds, transcripts, copyright_)


def _dpkg_files(package: str) -> list[Path]:
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                                check=False)
    except OSError:  # not a Debian system
        return []
    return [Path(line) for line in listed.stdout.splitlines() if line.startswith("/")]


def _g722_dirs(files: list[Path]) -> list[Path]:
    counts: dict[Path, int] = {}
    for f in files:
        if f.suffix == ".g722":
            counts[f.parent] = counts.get(f.parent, 0) + 1
    return sorted(counts, key=counts.get, reverse=True)


def ffmpeg_exe() -> str:
    """The static ffmpeg of the pinned ``imageio-ffmpeg`` wheel, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if found:
            return found
    raise RealVoiceUnavailable("decoding G.722 needs ffmpeg: `pip install imageio-ffmpeg==0.6.0`")


# --- transcripts ---------------------------------------------------------------------------

def read_transcripts(path: str | Path) -> dict[str, str]:
    """``core-sounds-en.txt(.gz)``: "name: text" lines -> {name: text}; ";" lines are comments."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    texts = {}
    for line in lines:
        name, sep, text = line.partition(":")
        if sep and name.strip() and not line.lstrip().startswith(";") and " " not in name.strip():
            texts[name.strip()] = text.strip()
    return texts


def spoken_text(written: str) -> str | None:
    """The words said for a prompt's listed text, or None when the text does not settle them."""
    if _ANNOTATION.search(written) or _AMBIGUOUS_NUMBER.search(written):
        return None
    for symbol, word in _KEYPAD.items():
        written = written.replace(symbol, word)
    written = re.sub(r"\s*(\.\.\.|…)\s*", " ", written)  # "... for ..." fragments: no pause
    return normalize_text(written).strip() or None


def select_prompts(texts: dict[str, str], sounds: Path, min_words: int = MIN_WORDS,
                   max_seconds: float = MAX_SECONDS) -> Selection:
    """The prompts with audio in ``sounds``, at least ``min_words`` spoken words and at most
    ``max_seconds`` of audio (as stored, before trimming)."""
    kept, skipped = [], {}
    for name in sorted(texts):
        spoken = spoken_text(CORRECTIONS.get(name, texts[name]))
        audio = sounds / f"{name}.g722"
        if not audio.is_file():
            skipped[name] = "no audio"
        elif audio.stat().st_size > max_seconds * G722_BYTES_PER_SECOND:
            skipped[name] = f"longer than {max_seconds:.0f} s"
        elif spoken is None:
            skipped[name] = "not a plain transcript (a note, or a number read ambiguously)"
        elif len(spoken.split()) < min_words:
            skipped[name] = f"fewer than {min_words} words"
        else:
            kept.append(Prompt(name, texts[name], spoken))
    return Selection(tuple(kept), skipped)


# --- audio ---------------------------------------------------------------------------------

def decode_g722(path: str | Path, ffmpeg: str | None = None) -> np.ndarray:
    """A G.722 file as mono float32 at G722_RATE. (T,)"""
    out = subprocess.run([ffmpeg or ffmpeg_exe(), "-v", "error", "-nostdin", "-f", "g722",
                          "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(G722_RATE), "-"],
                         capture_output=True, check=False)
    if out.returncode != 0 or not out.stdout:
        raise ValueError(f"{path}: ffmpeg could not decode it as G.722 "
                         f"({out.stderr.decode(errors='replace').strip()[:300]})")
    return np.frombuffer(out.stdout, dtype="<i2").astype(np.float32) / 32768.0


def prepare_prompt(wav: np.ndarray, rate: int = G722_RATE) -> np.ndarray:
    """Resample to the project rate, trim silence, normalize loudness: the corpus's clip path."""
    wav = resample(wav, rate, SAMPLE_RATE)
    return normalize_loudness(trim_silence(wav, SAMPLE_RATE))


# --- the group -----------------------------------------------------------------------------

def build_real_voice(out: str | Path = DEFAULT_OUT, sources: AsteriskSources | None = None,
                     min_words: int = MIN_WORDS) -> RealVoiceBuild:
    """Build (or complete) the real-voice group in ``out``. A clip whose FLAC and matching .txt
    are there is kept as it is; with everything in place nothing is written. A prompt whose audio
    does not decode is left out (listed in ``skipped``).

    The group's manifest.jsonl, COPYRIGHT and ATTRIBUTION.md are its own, so ``out`` must be new,
    empty or a real-voice group: a folder of other data (a manifest of other speakers) is refused
    with ValueError rather than merged into, and so is a selection that keeps no prompt; in both
    cases nothing in ``out`` is touched."""
    out = Path(out)
    _check_build_folder(out)
    sources = sources or find_sources()
    selection = select_prompts(read_transcripts(sources.transcripts), sources.sounds, min_words)
    skipped = dict(selection.skipped)
    ffmpeg = None
    clips, written = [], 0
    for prompt in selection.prompts:
        clip = Clip(id=prompt.id, speaker=SPEAKER, engine=ENGINE, voice=VOICE, licence=LICENCE,
                    split="test", kind="prompt", text=prompt.spoken,
                    audio=f"{SPEAKER}/{prompt.id}.flac", group=GROUP)
        target = out / clip.audio
        if not _clip_present(target, clip.text):
            ffmpeg = ffmpeg or ffmpeg_exe()
            try:
                wav = prepare_prompt(decode_g722(sources.sounds / f"{prompt.name}.g722", ffmpeg))
            except ValueError:
                skipped[prompt.name] = (f"audio that does not decode (damaged .g722; reinstall "
                                        f"{AUDIO_PACKAGE})")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a clip must never pair with another text
            _write_if_changed(target.with_suffix(".txt"), clip.text + "\n")
            save_audio(target, wav, SAMPLE_RATE)  # atomic
            written += 1
        clips.append(dataclasses.replace(clip, seconds=round(sf.info(str(target)).duration, 2)))
    if not clips:  # before _remove_stale: an empty selection must not empty a built group
        reasons = collections.Counter(skipped.values())
        left_out = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        raise ValueError(f"no prompt was kept (left out: {left_out}), so {out} is left as it "
                         f"was; check --min-words (now {min_words}, default {MIN_WORDS}) and "
                         "--root")
    _remove_stale(out / SPEAKER, {c.id for c in clips})
    _write_group_files(out, clips, sources)
    return RealVoiceBuild(out, tuple(clips), written, skipped)


def export_shipped(built: str | Path, out: str | Path = SHIPPED, count: int = 30,
                   min_seconds: float = 2.0, max_seconds: float = 8.0) -> list[Clip]:
    """Copy ``count`` clips of a built group (evenly spread over those of ``min_seconds`` to
    ``max_seconds``) into one clip folder ``out`` (``<id>.flac`` + ``.txt``, its own
    ``manifest.jsonl``, COPYRIGHT, ATTRIBUTION.md); replaces ``out`` atomically, so ``out`` must be
    new, empty or such an export (see :func:`check_ship`), else ValueError."""
    built, out = Path(built), Path(out)
    _check_export_folder(out)
    pool = [c for c in read_manifest(built) if min_seconds <= c.seconds <= max_seconds]
    if not 1 <= count <= len(pool):
        raise ValueError(f"{built} has {len(pool)} clips of {min_seconds:g}-{max_seconds:g} s, "
                         f"so {count} cannot be shipped; ask for 1 to {len(pool)} (--ship-clips)")
    picked = [pool[round(i * (len(pool) - 1) / max(1, count - 1))] for i in range(count)]
    chosen = [dataclasses.replace(c, audio=Path(c.audio).name) for c in picked]
    with atomic_path(out) as staged:
        staged.mkdir(parents=True)
        for old, new in zip(picked, chosen, strict=True):
            shutil.copyfile(built / old.audio, staged / new.audio)
            (staged / new.audio).with_suffix(".txt").write_text(new.text + "\n", encoding="utf-8")
        write_manifest(staged, chosen)
        shutil.copyfile(built / COPYRIGHT_FILE, staged / COPYRIGHT_FILE)
        (staged / ATTRIBUTION_FILE).write_text(attribution(chosen), encoding="utf-8")
    return chosen


def register_in_eval_set(ship: str | Path) -> list[Clip]:
    """List a shipped clip folder in the evaluation set's manifest one level up
    (``<parent>/manifest.jsonl``, audio ``<folder>/<file>``): that speaker's rows are replaced,
    every other line is kept as it is. Returns the rows listed; ValueError, changing nothing, when
    a line of that manifest is not a row with a "speaker"."""
    ship = Path(ship)
    added = [dataclasses.replace(c, audio=f"{ship.name}/{c.audio}") for c in read_manifest(ship)]
    speakers = {c.speaker for c in added}
    target = ship.parent / MANIFEST
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line, speaker in zip(lines, _eval_set_speakers(target), strict=True)
            if speaker not in speakers]
    text = "".join(kept) + "".join(json.dumps(dataclasses.asdict(c), ensure_ascii=False) + "\n"
                                   for c in added)
    _write_if_changed(target, text)
    return added


def check_ship(ship: str | Path) -> None:
    """Raise ValueError, before anything is built, when ``--ship ship`` would lose or break
    something: ``ship`` a file, or a folder holding anything but a previous real-voice export
    (:func:`export_shipped` replaces the whole folder), or a ``manifest.jsonl`` one level up
    that :func:`register_in_eval_set` cannot edit."""
    ship = Path(ship)
    _check_export_folder(ship)
    if (ship.parent / MANIFEST).is_file():
        _eval_set_speakers(ship.parent / MANIFEST)


def real_voice_group(out: str | Path = DEFAULT_OUT, *, build: bool = True,
                     root: str | Path = "/") -> RealVoice:
    """The real-voice group at ``out``: as it is when complete, else built from the installed
    packages (``build=True``); root None with the reason when it cannot be had, so that an
    evaluation can go on with its other groups (the small shipped set is :data:`SHIPPED`)."""
    out = Path(out)
    if is_complete(out):
        return RealVoice(out, f"real voice: {out} (already built)")
    if not build:
        return RealVoice(None, f"real voice: {out} is not built; run `python -m metatts "
                               f"realvoice --out {out}` (needs `{INSTALL}`)")
    try:
        result = build_real_voice(out, find_sources(root))
    except (RealVoiceUnavailable, ValueError) as err:  # not installed; ``out`` not ours
        return RealVoice(None, f"real voice left out: {err}")
    return RealVoice(out, f"real voice: built {len(result.clips)} clips in {out}")


def is_complete(out: str | Path) -> bool:
    """True when ``out`` holds a manifest, the licence file, and every clip it lists."""
    out = Path(out)
    if not (out / MANIFEST).is_file() or not (out / COPYRIGHT_FILE).is_file():
        return False
    try:
        clips = read_manifest(out)
    except ValueError:
        return False
    return bool(clips) and all(_clip_present(out / c.audio, c.text) for c in clips)


def attribution(clips: list[Clip]) -> str:
    minutes = sum(c.seconds for c in clips) / 60
    return "\n".join([
        "# Real voice: Allison Smith (Asterisk core sounds)", "",
        f"{len(clips)} recordings ({minutes:.1f} min) of one real US English speaker, **Allison "
        "Smith** (http://www.theivrvoice.com), from the Asterisk core sound prompts as Debian "
        f"packages them (`{AUDIO_PACKAGE}` 16 kHz G.722 audio, `{TEXT_PACKAGE}` transcripts). "
        "Recorded by Allison Smith; financial contributions by Digium, Inc. Copyright 2003-2010 "
        "Allison Smith.", "",
        "Licence: Creative Commons Attribution-ShareAlike 3.0 (CC-BY-SA-3.0); the full text and "
        f"credits are in `{COPYRIGHT_FILE}` (the Debian package's copyright file, unchanged). "
        "This selection is distributed under the same licence.", "",
        "Changes made (metatts `python -m metatts realvoice`): decoded from G.722, resampled from "
        f"16,000 to {SAMPLE_RATE:,} Hz, leading and trailing silence trimmed, loudness normalized "
        "to -23 dBFS RMS, stored as 16-bit FLAC; prompts of fewer than 5 words and prompts whose "
        "listed text is not what is said (stage notes, ambiguous numbers) left out; transcripts "
        "spelled out as spoken (digits as words, * as star, # as pound).", "",
        "Use: evaluation only (a held-out \"real\" group, split test); never training data.", "",
    ])


def _check_build_folder(out: Path) -> None:
    """ValueError unless ``out`` is absent, empty, a group built here (a manifest of SPEAKER
    only) or a first build cut short (nothing but the SPEAKER folder yet)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; give --out a folder for the group")
    if not out.is_dir():
        return
    try:
        others = [f"speaker {s}" for s in sorted({c.speaker for c in read_manifest(out)}
                                                  - {SPEAKER})]
    except FileNotFoundError:
        others = sorted({p.name for p in out.iterdir()} - {SPEAKER})
    except ValueError as err:
        others = [f"a line that is not a clip: {err}"]
    if others:
        raise ValueError(
            f"{out} holds other data ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
            f", and the group would replace its {MANIFEST}, {COPYRIGHT_FILE} and "
            f"{ATTRIBUTION_FILE}; give --out a new or empty folder (default {DEFAULT_OUT}), and "
            f"--ship DIR to list a set of it in an evaluation set's {MANIFEST}")


def _check_export_folder(out: Path) -> None:
    """ValueError unless ``out`` is absent, empty or holds only what export_shipped wrote."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; give --ship a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        clips = read_manifest(out)
    except (FileNotFoundError, ValueError):
        clips = []
    ours = {MANIFEST, COPYRIGHT_FILE, ATTRIBUTION_FILE} | {
        name for c in clips for name in (c.audio, Path(c.audio).with_suffix(".txt").name)}
    extra = sorted({p.name for p in out.iterdir()} - ours)
    if not clips or {c.speaker for c in clips} != {SPEAKER} or extra:
        what = (f"{', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}" if extra else
                f"a {MANIFEST} that does not list {SPEAKER}'s clips")
        raise ValueError(f"{out} is not a previous real-voice export (it holds {what}), and "
                         f"--ship replaces the whole folder; give --ship a new or empty folder")


def _eval_set_speakers(target: Path) -> list[str | None]:
    """The speaker of each line of an evaluation set's manifest (None for a blank line)."""
    speakers = []
    for number, line in enumerate(target.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            speakers.append(json.loads(line)["speaker"] if line.strip() else None)
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{target}:{number}: not a manifest row with a \"speaker\"; fix or "
                             f"remove that line, or --ship to a folder without a {MANIFEST} "
                             "beside it") from None
    return speakers


def _clip_present(target: Path, text: str) -> bool:
    txt = target.with_suffix(".txt")
    return target.is_file() and txt.is_file() and txt.read_text(encoding="utf-8").strip() == text


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete clips (and their .txt) a previous selection wrote that this one leaves out."""
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix in (".flac", ".txt") and path.stem not in keep:
            path.unlink()


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_group_files(out: Path, clips: list[Clip], sources: AsteriskSources) -> None:
    """manifest.jsonl, COPYRIGHT and ATTRIBUTION.md, each rewritten only if it would change."""
    try:
        same = read_manifest(out) == list(clips)
    except (FileNotFoundError, ValueError):
        same = False
    if not same:
        write_manifest(out, clips)
    _write_if_changed(out / COPYRIGHT_FILE, sources.copyright.read_text(encoding="utf-8"))
    _write_if_changed(out / ATTRIBUTION_FILE, attribution(clips))

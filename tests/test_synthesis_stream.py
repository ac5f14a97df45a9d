"""Long text in chunks: synthesize_stream yields sentence chunks lazily, their audio joined is
synthesize()'s, and the joins are clean (each sentence starts and ends at zero)."""

import numpy as np
import pytest
import torch
from test_synthesis import checkpoint, checkpoint_dir  # noqa: F401  (fixtures: a tiny model)

from metatts.audio import HOP_LENGTH, SAMPLE_RATE
from metatts.cli.synthesize import main
from metatts.synthesis import FADE_SECONDS, PAUSE_SECONDS, fade, synthesize, synthesize_stream
from metatts.text import TextError

TEXT = "Hello there. How are you today? The rain has stopped. We can walk now."


def loud_vocoder(mel):
    """A tone whose level follows the mel: loud at both ends, as a click would be."""
    t = torch.arange(mel.shape[-1] * HOP_LENGTH) / SAMPLE_RATE
    level = mel.mean(0).repeat_interleave(HOP_LENGTH).sigmoid()
    return 0.8 * level * torch.sin(2 * torch.pi * 220 * t + 1.0)


class CountingVocoder:
    def __init__(self):
        self.calls = 0

    def __call__(self, mel):
        self.calls += 1
        return loud_vocoder(mel)


@pytest.mark.parametrize("chunk_sentences", [1, 2, 3, 4, 9])
def test_stream_joined_is_the_whole(checkpoint, chunk_sentences):  # noqa: F811
    whole = synthesize(checkpoint, TEXT, speaker="anna", vocoder=loud_vocoder)
    chunks = list(synthesize_stream(checkpoint, TEXT, speaker="anna", vocoder=loud_vocoder,
                                    chunk_sentences=chunk_sentences))
    assert len(chunks) == -(-4 // chunk_sentences)
    np.testing.assert_array_equal(np.concatenate([c.wav for c in chunks]), whole.wav)
    assert tuple(s for c in chunks for s in c.sentences) == whole.sentences == (
        "Hello there.", "How are you today?", "The rain has stopped.", "We can walk now.")
    assert all(c.sample_rate == SAMPLE_RATE and c.acoustic_seconds > 0 for c in chunks)


def assert_clean_joins(out):
    """Every sentence's audio starts and ends at zero, the pauses are silent, and no step across
    a join (fade, pause, fade) is larger than the largest step inside the sentences' audio."""
    pause = int(PAUSE_SECONDS * SAMPLE_RATE)
    edge = int(FADE_SECONDS * SAMPLE_RATE)
    lengths = [m.shape[-1] * HOP_LENGTH for m in out.mels]
    assert len(out.wav) == sum(lengths) + pause * (len(lengths) - 1)
    inside, across, start = 0.0, 0.0, 0
    for n in lengths:
        piece = out.wav[start:start + n]
        assert piece[0] == 0 and piece[-1] == 0
        assert not out.wav[start + n:start + n + pause].any()
        inside = max(inside, np.abs(np.diff(piece[edge:-edge])).max())
        across = max(across, np.abs(np.diff(out.wav[max(0, start - 2):start + edge])).max(),
                     np.abs(np.diff(out.wav[start + n - edge:start + n + 2])).max())
        start += n + pause
    assert across <= inside, (across, inside)


def test_joins_have_no_jump(checkpoint):  # noqa: F811
    out = synthesize(checkpoint, TEXT, speaker="bob", vocoder=loud_vocoder)
    assert all(np.abs(w).max() > 0.3 for w in np.split(out.wav, [len(out.wav) // 2]))
    assert_clean_joins(out)


@pytest.mark.slow
def test_shipped_model_streams_with_clean_joins():
    from metatts.model.checkpoint import SHIPPED, load_checkpoint

    pretrained = load_checkpoint(SHIPPED / "pretrained")
    text = "The garden was quiet after the rain. We walked along the river."
    name = pretrained.speakers[0]
    whole = synthesize(pretrained, text, speaker=name)  # the default (fast) vocoder
    chunks = list(synthesize_stream(pretrained, text, speaker=name))
    assert [c.sentences for c in chunks] == [(s,) for s in whole.sentences] and len(chunks) == 2
    np.testing.assert_array_equal(np.concatenate([c.wav for c in chunks]), whole.wav)
    assert np.abs(whole.wav).max() > 0.1
    assert_clean_joins(whole)


def test_fade_reaches_zero_smoothly():
    wav = np.ones(1000, np.float32)
    out = fade(wav)
    n = int(FADE_SECONDS * SAMPLE_RATE)
    assert out[0] == 0 and out[-1] == 0 and np.all(out[n:-n] == 1) and wav.all()
    assert np.abs(np.diff(out)).max() < 2 / n
    assert fade(np.ones(1, np.float32)).tolist() == [1.0]  # too short to fade: unchanged


def test_stream_is_lazy(checkpoint):  # noqa: F811
    vocoder = CountingVocoder()
    stream = synthesize_stream(checkpoint, TEXT, speaker="carl", vocoder=vocoder)
    assert vocoder.calls == 0
    first = next(stream)
    assert vocoder.calls == 1 and first.sentences == ("Hello there.",)
    assert first.wav[-int(PAUSE_SECONDS * SAMPLE_RATE):].max() == 0  # ends with the pause
    rest = list(stream)
    assert vocoder.calls == 4 and rest[-1].wav[-1] == 0 and rest[-1].wav[-2] != 0  # no pause


def test_stream_checks_its_input_before_the_first_chunk(checkpoint):  # noqa: F811
    with pytest.raises(TextError, match="Nothing to speak"):
        synthesize_stream(checkpoint, "...", speaker="anna", vocoder=loud_vocoder)
    with pytest.raises(ValueError, match="chunk_sentences"):
        synthesize_stream(checkpoint, TEXT, speaker="anna", vocoder=loud_vocoder,
                          chunk_sentences=0)
    with pytest.raises(ValueError, match="pace"):
        synthesize_stream(checkpoint, TEXT, speaker="anna", vocoder=loud_vocoder, pace=0)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_cli_selects_the_vocoder(checkpoint_dir, tmp_path, capsys, mode):  # noqa: F811
    out = tmp_path / "hi.wav"
    assert main(["--text", "Hi there. Bye now.", "--speaker", "anna", "--out", str(out),
                 "--checkpoint", str(checkpoint_dir), "--vocoder", mode, "--verbose"]) == 0
    assert f"{mode}); wrote" in capsys.readouterr().err

import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from metatts.audio import HOP_LENGTH, SAMPLE_RATE
from metatts.cli.synthesize import main
from metatts.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metatts.model.config import Config, ModelConfig, replace
from metatts.model.fastspeech2 import FastSpeech2
from metatts.synthesis import PAUSE_SECONDS, synthesize
from metatts.text import SYMBOLS, TextError
from metatts.voice import base_model, make_voice

SPEAKERS = ("anna", "bob", "carl")


def silent_vocoder(mel):
    return torch.zeros(mel.shape[-1] * HOP_LENGTH)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    model_config = ModelConfig(n_symbols=len(SYMBOLS), n_speakers=3, hidden=32, heads=2,
                               encoder_layers=1, decoder_layers=1, ffn_hidden=64, speaker_dim=16,
                               variance_hidden=32, postnet_layers=2, postnet_channels=32,
                               aligner_channels=16)
    config = replace(Config(), model=model_config.__dict__, data={"tokens": "characters"})
    torch.manual_seed(0)
    model = FastSpeech2(model_config)
    with torch.no_grad():  # speak a few frames per token, as a trained model would
        model.variance.duration.out.bias.fill_(1.5)
    path = tmp_path_factory.mktemp("ckpt") / "step_00000001"
    save_checkpoint(path, model, config, SYMBOLS, SPEAKERS, step=1)
    return path


@pytest.fixture(scope="module")
def checkpoint(checkpoint_dir):
    return load_checkpoint(checkpoint_dir)


def test_sentences_are_split_and_joined(checkpoint):
    out = synthesize(checkpoint, "Hello there. How are you today?", speaker="bob",
                     vocoder=silent_vocoder)
    assert out.sentences == ("Hello there.", "How are you today?")
    frames = sum(m.shape[-1] for m in out.mels)
    assert len(out.wav) == frames * HOP_LENGTH + int(PAUSE_SECONDS * SAMPLE_RATE)
    assert all(m.shape[0] == 80 and torch.isfinite(m).all() for m in out.mels)
    assert out.sample_rate == SAMPLE_RATE and out.rtf > 0


def test_parameter_overrides_and_the_new_voice(checkpoint):
    model = checkpoint.model
    same = {k: v.clone() for k, v in model.named_parameters()
            if k in model.parameter_groups()["conditional_norms"]}
    base = synthesize(checkpoint, "Good morning.", speaker=1, vocoder=silent_vocoder).mels[0]
    again = synthesize(checkpoint, "Good morning.", same, speaker=1, vocoder=silent_vocoder)
    assert torch.equal(base, again.mels[0])
    voice = {"speaker.new": model.speaker.table.weight[1].detach().clone()}
    as_new = synthesize(checkpoint, "Good morning.", voice, vocoder=silent_vocoder).mels[0]
    assert torch.allclose(base, as_new, atol=1e-5)
    voice = {"speaker.new": torch.randn(16)}
    other = synthesize(checkpoint, "Good morning.", voice, vocoder=silent_vocoder).mels[0]
    assert not torch.allclose(base[:, :5], other[:, :5])
    assert torch.equal(model.speaker.new, checkpoint.model.speaker.new)  # model untouched


@pytest.mark.parametrize("text", ["", "   ", "?!...", "😀"])
def test_unspeakable_text_is_a_clear_error(checkpoint, text):
    with pytest.raises(TextError, match="Nothing to speak"):
        synthesize(checkpoint, text, speaker="anna", vocoder=silent_vocoder)


def test_bad_voice_choices_are_clear_errors(checkpoint):
    with pytest.raises(CheckpointError, match="unknown speaker 'zed'.*anna, bob, carl"):
        synthesize(checkpoint, "Hi.", speaker="zed", vocoder=silent_vocoder)
    with pytest.raises(CheckpointError, match="choose a voice"):
        synthesize(checkpoint, "Hi.", vocoder=silent_vocoder)
    with pytest.raises(CheckpointError, match="does not have"):
        synthesize(checkpoint, "Hi.", {"speaker.newer": torch.zeros(16)}, vocoder=silent_vocoder)
    with pytest.raises(CheckpointError, match="shapes"):
        synthesize(checkpoint, "Hi.", {"speaker.new": torch.zeros(5)}, vocoder=silent_vocoder)


def test_cli_lists_speakers(checkpoint_dir, capsys):
    assert main(["--list-speakers", "--checkpoint", str(checkpoint_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == list(SPEAKERS)


def test_cli_writes_a_valid_wav(checkpoint_dir, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert main(["--text", "Hello world.", "--speaker", "carl", "--out", str(out),
                 "--checkpoint", str(checkpoint_dir), "--verbose"]) == 0
    wav, rate = sf.read(out)
    assert rate == SAMPLE_RATE and wav.ndim == 1 and len(wav) >= 10 * HOP_LENGTH
    err = capsys.readouterr().err
    assert "real-time factor" in err and "mel post-filter: off" in err
    base = base_model(load_checkpoint(checkpoint_dir))
    voice = make_voice({"speaker.new": torch.randn(16)}, base, {}, [1.0], [1.0], 1.0)
    voice.save(tmp_path / "voice.safetensors")
    assert main(["--text", "Hi there.", "--voice", str(tmp_path / "voice.safetensors"),
                 "--out", str(tmp_path / "v.wav"), "--checkpoint", str(checkpoint_dir)]) == 0
    assert sf.info(tmp_path / "v.wav").frames > 0
    save_file({"speaker.new": torch.randn(16)}, str(tmp_path / "bare.safetensors"))
    assert main(["--text", "Hi there.", "--voice", str(tmp_path / "bare.safetensors"),
                 "--out", str(tmp_path / "b.wav"), "--checkpoint", str(checkpoint_dir)]) == 2
    assert "not a metatts voice" in capsys.readouterr().err


def test_cli_errors_name_the_problem(checkpoint_dir, tmp_path, capsys):
    assert main(["--text", "...", "--speaker", "anna", "--out", str(tmp_path / "x.wav"),
                 "--checkpoint", str(checkpoint_dir)]) == 2
    assert "Nothing to speak" in capsys.readouterr().err
    assert main(["--list-speakers", "--checkpoint", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()

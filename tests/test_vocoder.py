import argparse
import json
import math

import pytest
import torch

from eval.metrics import pooled_wer
from metatts import asr, assets, audio, speaker, vocoder
from metatts.assets import AssetError


@pytest.fixture(scope="module")
def short_clips(speech):
    """The first 0.7 s of two fixtures: enough to check shapes cheaply."""
    return [audio.load_audio(path)[: int(0.7 * audio.SAMPLE_RATE)] for _, path, _ in speech[:2]]


def test_output_has_hop_length_samples_per_frame(short_clips):
    wav = short_clips[0][:-100]
    mel = audio.mel_spectrogram(wav)
    out = vocoder.vocode(mel)
    assert out.shape == (mel.shape[-1] * audio.HOP_LENGTH,)
    assert 0 <= len(wav) - len(out) < audio.HOP_LENGTH
    assert out.dtype == torch.float32 and out.abs().max() <= 1.0


def test_batch_gives_the_same_audio_as_single(short_clips):
    mels = [audio.mel_spectrogram(wav) for wav in short_clips]
    batch = vocoder.vocode(torch.stack(mels))  # (2, frames * HOP_LENGTH)
    assert batch.shape == (2, mels[0].shape[-1] * audio.HOP_LENGTH)
    for i, mel in enumerate(mels):
        torch.testing.assert_close(batch[i], vocoder.vocode(mel), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_copy_synthesis_keeps_words_and_voice(speech):
    """Every fixture through mel_spectrogram -> vocode: Whisper WER and ECAPA identity are kept."""
    texts = [text for _, _, text in speech]
    originals = [audio.load_audio(path) for _, path, _ in speech]
    resyns = [vocoder.vocode(audio.mel_spectrogram(wav)).numpy() for wav in originals]
    wer_orig = pooled_wer(texts, asr.transcribe(originals, audio.SAMPLE_RATE))
    wer_resyn = pooled_wer(texts, asr.transcribe(resyns, audio.SAMPLE_RATE))
    assert wer_resyn <= wer_orig + 0.05, (wer_orig, wer_resyn)
    sim = speaker.similarity(speaker.embed(originals, audio.SAMPLE_RATE),
                             speaker.embed(resyns, audio.SAMPLE_RATE)).diagonal()
    assert sim.min() >= 0.9, sim


@pytest.mark.parametrize("shape, match", [
    ((50, 80), "transposed"), ((80,), "shape"), ((1, 1, 80, 50), "shape"), ((80, 0), "no frames"),
])
def test_bad_mel_shapes_are_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        vocoder.check_mel(torch.zeros(shape))


def test_non_finite_mel_is_refused():
    mel = torch.zeros(80, 10)
    mel[3, 4] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        vocoder.check_mel(mel)


@pytest.mark.parametrize(("mode", "owner", "name"), [
    ("exact", torch, "load"), ("bf16", torch, "load"), ("fast", vocoder, "export_onnx")])
def test_sha_mismatch_raises_before_loading(monkeypatch, mode, owner, name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} called on unverified weights")

    monkeypatch.setattr(vocoder, "BUNDLED_SHA256", "0" * 64)
    monkeypatch.setattr(owner, name, refuse)
    with pytest.raises(AssetError, match="sha256"):
        vocoder._load_vocoder.__wrapped__(None, mode)


def test_user_safetensors_file_with_folded_weight_norm(tmp_path):
    from safetensors.torch import save_file

    bundled = vocoder.load_vocoder(mode="exact")
    state = {k.replace(".conv.", "."): v.contiguous()  # back to the original HiFi-GAN names
             for k, v in bundled.generator.state_dict().items()}
    save_file(state, tmp_path / "generator.safetensors")
    user = vocoder._load_vocoder.__wrapped__(str(tmp_path / "generator.safetensors"), "exact")
    assert user.source.kind == "path"
    mel = torch.randn(80, 20) - 5
    torch.testing.assert_close(user(mel), bundled(mel))


def test_files_that_are_not_generators_are_refused(tmp_path):
    torch.save({"generator": {"conv_pre.weight": torch.zeros(3)}}, tmp_path / "small.pth.tar")
    with pytest.raises(AssetError, match="do not fit"):
        vocoder._load_vocoder.__wrapped__(str(tmp_path / "small.pth.tar"), "exact")
    torch.save(argparse.Namespace(generator={}), tmp_path / "pickled.pth")  # needs unpickling
    (tmp_path / "noise.pth").write_bytes(b"not a checkpoint")
    for name in ("pickled.pth", "noise.pth"):
        with pytest.raises(AssetError, match="cannot read"):
            vocoder._load_vocoder.__wrapped__(str(tmp_path / name), "exact")
    with pytest.raises(AssetError, match="not a local file"):
        vocoder._load_vocoder.__wrapped__(str(tmp_path), "fast")


def test_bundled_config_matches_the_mel_convention():
    config = json.loads(
        (assets.package_dir(*vocoder.PACKAGE) / "data" / "config.json").read_text()
    )
    assert (config["sampling_rate"], config["num_mels"], config["hop_size"]) == (
        audio.SAMPLE_RATE, audio.N_MELS, audio.HOP_LENGTH)
    assert (config["n_fft"], config["win_size"], config["fmin"], config["fmax"]) == (
        audio.N_FFT, audio.WIN_LENGTH, audio.F_MIN, audio.F_MAX)
    assert tuple(config["upsample_rates"]) == vocoder.UPSAMPLE_RATES
    assert tuple(config["upsample_kernel_sizes"]) == vocoder.UPSAMPLE_KERNEL_SIZES
    assert config["upsample_initial_channel"] == vocoder.UPSAMPLE_INITIAL_CHANNEL
    assert tuple(config["resblock_kernel_sizes"]) == vocoder.RESBLOCK_KERNEL_SIZES
    assert tuple(map(tuple, config["resblock_dilation_sizes"])) == vocoder.RESBLOCK_DILATION_SIZES
    assert math.prod(vocoder.UPSAMPLE_RATES) == audio.HOP_LENGTH

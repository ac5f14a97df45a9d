"""The checkpoints the repository ships (checkpoints/pretrained, checkpoints/meta) speak, with the
real vocoder, Whisper and ECAPA. The quality bar itself lives in benchmarks/acoustic.py and
``python -m eval``; these tests guard that the committed files load without pickle, run on CPU,
produce words Whisper understands, keep speakers apart, and adapt to a held-out voice."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.metrics import pooled_wer
from metatts.adapt import adapt, default_settings, load_base, load_clips
from metatts.data import read_dataset
from metatts.model.checkpoint import SHIPPED, load_checkpoint
from metatts.synthesis import synthesize
from metatts.voice import VoiceError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EVAL_SPEAKERS = ROOT / "metatts" / "eval_speakers"
# not in the corpus' training texts (written for this test)
SENTENCES = ("The garden was quiet after the rain.",
             "Please bring the blue folder to the meeting tomorrow.",
             "We walked along the river until the sun went down.")


@pytest.fixture(scope="module")
def pretrained():
    return load_checkpoint(SHIPPED / "pretrained")


@pytest.fixture(scope="module")
def vocoder():
    from metatts.vocoder import load_vocoder

    return load_vocoder()


def test_shipped_files_are_small_safetensors_with_their_config():
    for init in ("pretrained", "meta"):
        directory = SHIPPED / init
        names = {p.name for p in directory.iterdir()}
        assert {"model.json", "model.safetensors"} <= names
        assert not {n for n in names if n.endswith((".pt", ".pth", ".bin", ".ckpt", ".pkl"))}
        assert (directory / "model.safetensors").stat().st_size < 100e6
        meta = json.loads((directory / "model.json").read_text())
        assert meta["config"]["model"]["n_speakers"] == len(meta["speakers"]) > 5
    base = json.loads((ROOT / "configs" / "base_v2_warm.json").read_text())["model"]
    shipped = json.loads((SHIPPED / "pretrained" / "model.json").read_text())["config"]["model"]
    assert {k: shipped[k] for k in base} == base  # reproduced by configs/base_v2_warm.json
    assert shipped["pitch"] and shipped["speaker_encoder"]  # the second-generation model
    assert json.loads((SHIPPED / "meta" / "model.json").read_text())["config"]["meta"]


def test_pretrained_speaks_unseen_sentences_intelligibly(pretrained, vocoder):
    from metatts.asr import transcribe

    speaker = pretrained.speakers[0]
    wavs = [synthesize(pretrained, s, speaker=speaker, vocoder=vocoder).wav for s in SENTENCES]
    assert all(np.abs(w).max() > 0.05 and 1.0 < len(w) / 22050 < 8.0 for w in wavs)
    heard = transcribe(wavs, 22050, model="tiny.en")
    assert pooled_wer(list(SENTENCES), heard) < 0.35, heard


def test_pretrained_speakers_stay_apart(pretrained, vocoder):
    from metatts.speaker import embed

    a, b = pretrained.speakers[0], pretrained.speakers[-1]
    wavs = [synthesize(pretrained, s, speaker=who, vocoder=vocoder).wav
            for who, s in ((a, SENTENCES[0]), (a, SENTENCES[1]), (b, SENTENCES[0]))]
    e = embed(wavs, 22050)
    same, other = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > other + 0.2, (same, other)


def test_meta_checkpoint_adapts_to_a_held_out_voice(pretrained, vocoder):
    speaker = sorted(read_dataset(EVAL_SPEAKERS).speakers)[0]
    paths = sorted((EVAL_SPEAKERS / speaker).glob("*.flac"))[:3]
    clips = load_clips(paths).clips
    assert len(clips) == 3
    meta = load_base("meta")
    settings = default_settings("meta", meta)
    result = adapt(clips, meta, settings)
    assert result.final_loss < result.losses[0]
    wav = synthesize(meta, SENTENCES[2], result.voice.params, vocoder=vocoder).wav
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0.05
    result.voice.check_base(meta)
    with pytest.raises(VoiceError, match="made for base model"):
        result.voice.check_base(pretrained)


def test_cli_adapts_from_meta_and_speaks_with_the_voice_alone(tmp_path):
    import soundfile as sf

    from metatts.cli.adapt import main as adapt_main
    from metatts.cli.synthesize import main as synthesize_main

    speaker = sorted(read_dataset(EVAL_SPEAKERS).speakers)[-1]
    clips = [str(p) for p in sorted((EVAL_SPEAKERS / speaker).glob("*.flac"))[:2]]
    voice = tmp_path / "voice.safetensors"
    assert adapt_main([*clips, "--init", "meta", "--steps", "3", "--out", str(voice)]) == 0
    out = tmp_path / "out.wav"  # no --checkpoint: the voice says it was adapted from meta
    assert synthesize_main(["--voice", str(voice), "--text", SENTENCES[0], "--out", str(out)]) == 0
    wav, rate = sf.read(out)
    assert rate == 22050 and len(wav) > rate


def test_a_clip_aligns_alike_alone_and_beside_longer_clips():
    """The aligner's durations of a clip do not depend on the clips it is aligned with (adapt
    aligns a voice's clips together, the frame bank in chunks): its convolutions pad by
    reflection, and a short clip's last tokens once moved beside longer ones (2 of 46 tokens of
    am_fenrir's 2.1 s clip)."""
    from metatts.adapt import make_clip, support_examples
    from metatts import audio
    from metatts.data import collate

    base = load_base("pretrained", SHIPPED / "pretrained")
    files = sorted((EVAL_SPEAKERS / "kokoro_en_am_fenrir").glob("*.flac"))[:5]
    clips = [make_clip(audio.load_audio(f), audio.SAMPLE_RATE,
                       f.with_suffix(".txt").read_text().strip(), f.stem) for f in files]
    examples = support_examples(clips, base)
    lengths = [x.mel.shape[-1] for x in examples]
    assert min(lengths) < max(lengths) / 3  # a short clip beside a long one
    with torch.no_grad():
        together = base.model.eval().align(collate(examples))
        for i, x in enumerate(examples):
            alone = base.model.align(collate([x]))[0]
            assert torch.equal(together[i, :len(x.tokens)], alone), f"clip {i} ({lengths[i]} frames)"

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from torch.func import functional_call

from metatts.data import Example
from metatts.model.checkpoint import load_checkpoint, save_checkpoint
from metatts.model.config import Config, ModelConfig, load_config
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2
from metatts.text import SYMBOLS
from metatts.train.data import StepBatches, WithReferences, collate_train
from metatts.voice import BaseModel, Voice, VoiceError, make_voice

TINY = ModelConfig(n_symbols=len(SYMBOLS), n_speakers=3, hidden=32, heads=2, encoder_layers=1,
                   decoder_layers=1, ffn_hidden=64, speaker_dim=16, variance_hidden=32,
                   postnet_layers=0, aligner_channels=16, dropout=0.0, variance_dropout=0.0,
                   pitch=True, speaker_encoder=True, speaker_encoder_hidden=32)


def v2_model(seed=0, **changes):
    torch.manual_seed(seed)
    return FastSpeech2(dataclasses.replace(TINY, **changes))


def clips(lengths=(40, 25, 60), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(80, t, generator=g) - 5 for t in lengths]


def v2_batch(seed=0):
    """Four clips of three speakers, each with F0 and a reference clip of its speaker."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, (n, t, s) in enumerate([(5, 30, 0), (7, 40, 1), (6, 35, 2), (4, 28, 0)]):
        mel = torch.randn(80, t, generator=g) * 0.5 - 5 + s
        f0 = torch.where(torch.rand(t, generator=g) < 0.7, 120.0 + 40 * s + 10 * torch.rand(t), 0.0)
        items.append((Example(f"u{i}", s, torch.randint(1, TINY.n_symbols, (n,), generator=g), mel),
                      f0, torch.randn(80, 20 + 5 * i, generator=g) * 0.5 - 5 + s))
    return collate_train(items)


def test_encoder_gives_one_vector_per_voice_pooled_over_clips_in_any_order():
    model = v2_model().eval()
    several = model.encode_speaker(clips())
    assert several.shape == (TINY.speaker_dim,)
    assert torch.allclose(several, model.encode_speaker(clips()[::-1]), atol=1e-6)
    alone = torch.stack([model.encode_speaker([c]) for c in clips()])
    assert torch.allclose(several, alone.mean(0), atol=1e-5)  # padding does not leak
    assert not torch.allclose(alone[0], alone[1])
    with pytest.raises(ValueError, match="at least one clip"):
        model.encode_speaker([])


def test_encoded_voice_speaks_as_speaker_new_with_no_gradient_step():
    model = v2_model().eval()
    vector = model.encode_speaker(clips())
    tokens, lengths = torch.randint(1, TINY.n_symbols, (1, 6)), torch.tensor([6])
    speakers = torch.tensor([NEW_SPEAKER])
    with torch.inference_mode():
        direct = model.infer(tokens, lengths, speakers, speaker_vectors=vector[None])
        swapped = _infer_with_new(model, vector, tokens, lengths, speakers)
    assert torch.equal(direct.mel, swapped.mel)


def _infer_with_new(model, vector, tokens, lengths, speakers):
    class Infer(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, *args):
            return self.model.infer(*args)

    return functional_call(Infer(model), {"model.speaker.new": vector}, (tokens, lengths, speakers))


def test_a_model_without_encoder_says_so():
    model = v2_model(speaker_encoder=False)
    with pytest.raises(ValueError, match="no speaker encoder"):
        model.encode_speaker(clips())


def test_tiny_model_with_pitch_and_encoder_trains_and_the_loss_falls():
    model = v2_model()
    batch = v2_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(25):
        torch.manual_seed(step)
        loss = model(batch)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        first = first or loss.items()
    last = loss.items()
    assert {"pitch", "speaker_encoder"} <= set(last)
    assert last["total"] < 0.8 * first["total"]
    assert last["pitch"] < first["pitch"] and last["speaker_encoder"] < first["speaker_encoder"]
    assert model.speaker_encoder.out.weight.grad.abs().sum() > 0


def test_encoder_vector_replaces_the_row_only_in_training():
    model = v2_model()
    batch = v2_batch()
    model.eval()
    evaluated = model.outputs(batch)
    no_refs = model.outputs(dataclasses.replace(batch, references=None, reference_lengths=None))
    assert torch.equal(evaluated.mel, no_refs.mel)  # eval speaks with the table rows
    assert evaluated.encoded_speaker.shape == (4, TINY.speaker_dim)
    model.train()
    mixed = dataclasses.replace(TINY, speaker_encoder_mix=1.0)
    torch.manual_seed(0)
    always = FastSpeech2(mixed).train()
    always.load_state_dict(model.state_dict())
    assert not torch.allclose(always.outputs(batch).mel, evaluated.mel)


def test_v2_checkpoint_round_trip_keeps_encoder_and_pitch_stats(tmp_path):
    model = v2_model()
    model.set_pitch_stats(torch.tensor([[4.5, 0.2], [5.0, 0.25], [5.5, 0.3]]))
    config = Config(model=TINY)
    path = save_checkpoint(tmp_path / "ck", model, config, SYMBOLS, ("a", "b", "c"))
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.model.pitch_stats, model.pitch_stats)
    assert loaded.config.model.generation == 2
    assert torch.allclose(loaded.model.encode_speaker(clips()),
                          model.eval().encode_speaker(clips()))


def test_the_v1_checkpoint_loads_with_the_features_off():
    checkpoint = load_checkpoint("checkpoints/v1")  # the first generation, v2's warm start
    assert checkpoint.config.model.generation == 1
    assert checkpoint.model.speaker_encoder is None and checkpoint.model.variance.pitch is None
    saved = load_file("checkpoints/v1/model.safetensors")
    state = checkpoint.model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_v2_configs_resolve():
    for path in ("configs/base_v2.json", "configs/base_v2_warm.json",
                 "configs/base_v2_warm_natural.json", "configs/tiny_v2.json"):
        config = load_config(path)
        assert config.model.pitch and config.model.speaker_encoder


def test_a_v2_model_refuses_an_old_voice_saying_it_belongs_to_the_previous_model(tmp_path):
    v1 = load_checkpoint("checkpoints/v1")
    old = make_voice({"speaker.new": v1.model.speaker.new.detach()},
                     BaseModel("0" * 64, "checkpoints/v1", v1.step), {}, [1.0], [1.0], 1.0)
    path = old.save(tmp_path / "old.safetensors")
    model = v2_model()
    v2 = load_checkpoint(save_checkpoint(tmp_path / "v2", model, Config(model=TINY), SYMBOLS,
                                         ("a", "b", "c")))
    with pytest.raises(VoiceError, match="belongs to the previous model"):
        Voice.load(path).check_base(v2)
    with pytest.raises(VoiceError, match="was made for base model"):  # a v1 model: as before
        Voice.load(path).check_base(v1)


def test_references_are_other_clips_of_the_same_speaker_drawn_by_step():
    speaker_of = ["a", "a", "a", "b", "b", "c"] * 3
    frames = [300, 100, 50, 400, 260, 90] * 3
    batches = StepBatches(frames, 6, seed=0, start=0, steps=5)
    drawn = list(WithReferences(batches, speaker_of, seed=0, crop=128))
    resumed = list(WithReferences(StepBatches(frames, 6, 0, 3, 5), speaker_of, seed=0, crop=128))
    assert drawn[3:] == resumed
    for batch in drawn:
        for i, ref, start, crop in batch:
            assert speaker_of[ref] == speaker_of[i] and ref != i
            assert crop == 128 and 0 <= start <= max(0, frames[ref] - 128)


def train_tiny_v2(run_dir, features, steps, *extra):
    from metatts.cli.train import main

    root = Path(__file__).resolve().parents[1]
    return main(["--config", str(root / "configs" / "tiny_v2.json"), "--quiet",
                 "--set", f"train.run_dir={run_dir}", "--set", f"train.steps={steps}",
                 "--set", f'data.datasets=["{root / "tests" / "fixtures" / "speech"}"]',
                 "--set", f"data.cache_dir={features}", "--set", "train.log_every=1",
                 "--set", "train.checkpoint_every=2", *extra])


def test_train_cli_on_the_tiny_v2_config_resumes_exactly(tmp_path):
    assert train_tiny_v2(tmp_path / "run", tmp_path / "features", 4) == 0
    assert train_tiny_v2(tmp_path / "resumed", tmp_path / "features", 2) == 0
    assert train_tiny_v2(tmp_path / "resumed", tmp_path / "features", 4, "--resume") == 0
    a = load_file(tmp_path / "run/checkpoints/step_00000004/model.safetensors")
    b = load_file(tmp_path / "resumed/checkpoints/step_00000004/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.step == 4 and checkpoint.config.model.generation == 2
    stats = checkpoint.model.pitch_stats
    assert torch.isfinite(stats).all() and (stats[:, 0] > 4.0).all()  # log-F0 means over 55 Hz
    assert checkpoint.model.encode_speaker(clips()).shape == (TINY.speaker_dim,)


def test_synthesize_reference_speaks_in_the_encoded_voice_with_no_step(tmp_path, capsys):
    from metatts.cli.synthesize import main as synthesize_main

    root = Path(__file__).resolve().parents[1]
    clips_ = sorted((root / "tests/fixtures/speech/slt").glob("*.wav"))[:2]
    assert train_tiny_v2(tmp_path / "run", tmp_path / "features", 2) == 0
    out = tmp_path / "zero_shot.wav"
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--text", "Hello there.",
                            "--reference", *map(str, clips_), "--out", str(out),
                            "--vocoder", "fast"]) == 0
    wav, rate = sf.read(out)
    assert rate == 22050 and len(wav) > 0.2 * rate
    # the clips' transcripts (.txt beside them) let their frames correct the voice's: without
    # them (--no-frames) the same vector speaks other audio of the same length
    plain = tmp_path / "vector_only.wav"
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--text", "Hello there.",
                            "--reference", *map(str, clips_), "--out", str(plain),
                            "--vocoder", "fast", "--no-frames"]) == 0
    other, _ = sf.read(plain)
    assert len(other) == len(wav) and not np.allclose(other, wav, atol=1e-3)
    # a clip whose transcript does not fit it is left out of the frames, with the reason
    odd = tmp_path / "odd.wav"
    shutil.copy(clips_[0], odd)
    odd.with_suffix(".txt").write_text("x")
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--text", "Hello there.",
                            "--reference", *map(str, clips_), str(odd),
                            "--out", str(tmp_path / "with_odd.wav"), "--vocoder", "fast"]) == 0
    assert "odd.wav is not used to correct the frames: its transcript 'x'" in \
        capsys.readouterr().err
    # a model without a speaker encoder says so instead of failing
    assert synthesize_main(["--checkpoint", str(root / "checkpoints" / "v1"), "--text", "Hello.",
                            "--reference", str(clips_[0]), "--out", str(tmp_path / "x.wav")]) == 2
    assert "no speaker encoder" in capsys.readouterr().err


def test_zero_shot_validation_scores_the_held_out_voice_in_the_log(tmp_path):
    from metatts.train.logging import read_log

    assert train_tiny_v2(tmp_path / "run", tmp_path / "features", 2, "--set",
                         "data.val_speakers=0.25", "--set", "train.validate_every=2") == 0
    records = read_log(tmp_path / "run" / "log.jsonl")
    unseen = [r for r in records if r["split"] == "zero_shot"]
    assert [r["step"] for r in unseen] == [2]
    assert unseen[0]["mel"] > 0 and unseen[0]["total"] > 0  # speaker folders: no group columns
    assert len(load_checkpoint(tmp_path / "run").speakers) == 3  # the held-out voice is not one


def test_zero_shot_loss_depends_on_the_encoded_clips_and_is_split_by_group(tmp_path):
    from metatts.data import FeatureCache, FeatureSettings, Utterance
    from metatts.train.zero_shot import validate_zero_shot, zero_shot_voices

    root = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "speech"
    clips_of = {s: sorted((root / s).glob("*.wav")) for s in ("awb", "slt")}
    utts = [Utterance(f"{s}_{i}", s, (p.with_suffix(".txt")).read_text().strip(), p,
                      sf.info(str(p)).duration, "val", "engine" if s == "awb" else "natural")
            for s, paths in clips_of.items() for i, p in enumerate(paths)]
    cache = FeatureCache(tmp_path / "cache", FeatureSettings(tokens="characters", pitch=True))
    voices = zero_shot_voices(utts, cache, pitch=True, references=2, targets=8)
    assert [(v.speaker, v.group, len(v.references), len(v.batch)) for v in voices] == [
        ("awb", "engine", 2, 1), ("slt", "natural", 2, 1)]
    assert (voices[0].batch.speakers == NEW_SPEAKER).all()
    model = v2_model()
    model.train()
    scores = validate_zero_shot(model, voices, torch.device("cpu"))
    assert model.training  # restored
    assert scores["mel"] == pytest.approx((scores["mel_engine"] + scores["mel_natural"]) / 2)
    # cycle: a cosine, per group too, and it depends on the vector spoken with
    assert -1 <= scores["cycle_engine"] <= 1 and -1 <= scores["cycle_natural"] <= 1
    assert scores["cycle"] == pytest.approx((scores["cycle_engine"] + scores["cycle_natural"]) / 2)
    swapped = [dataclasses.replace(voices[0], references=voices[1].references), voices[1]]
    swapped_scores = validate_zero_shot(model, swapped, torch.device("cpu"))
    assert swapped_scores["mel_engine"] != scores["mel_engine"]
    assert swapped_scores["cycle_engine"] != scores["cycle_engine"]
    assert validate_zero_shot(v2_model(speaker_encoder=False), voices, torch.device("cpu")) == {}

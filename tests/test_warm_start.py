"""train.init_from: a v2 run starts from a v1 checkpoint's matching tensors."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from metatts.data.batch import Example, collate
from metatts.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metatts.model.config import load_config
from metatts.model.fastspeech2 import FastSpeech2
from metatts.text import SYMBOLS
from metatts.train.pretrain import warm_start

ROOT = Path(__file__).resolve().parents[1]
TINY_V2 = ROOT / "configs" / "tiny_v2.json"


def v1_checkpoint(directory, tokens="characters", speakers=tuple("abcde")):
    """The tiny v2 sizes with pitch and the encoder off (a previous-generation model)."""
    torch.manual_seed(1)
    config = load_config(TINY_V2, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 5,
                                             "pitch": False, "speaker_encoder": False},
                                   "data": {"tokens": tokens}})
    return save_checkpoint(directory, FastSpeech2(config.model, config.loss), config, SYMBOLS,
                           tuple(speakers))


def test_matching_tensors_are_copied_and_the_rest_starts_fresh(tmp_path):
    old = load_checkpoint(v1_checkpoint(tmp_path / "v1")).model
    config = load_config(TINY_V2, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 3,
                                             "adapter_rank": 2}})
    torch.manual_seed(2)
    model = FastSpeech2(config.model, config.loss)
    fresh_before = {n: v.clone() for n, v in model.state_dict().items()}
    copied, fresh = warm_start(model, tmp_path / "v1", "characters")
    state, theirs = model.state_dict(), old.state_dict()
    assert "encoder.blocks.0.attention.qkv.weight" in copied and "aligner.network.key_layer.0.conv.weight" in copied
    assert all(torch.equal(state[n], theirs[n]) for n in copied)
    assert {"speaker.table.weight", "pitch_stats"} <= set(fresh)
    assert any(n.startswith("speaker_encoder.") for n in fresh)
    assert any(".adapter." in n for n in fresh)
    assert all(torch.equal(state[n], fresh_before[n]) for n in fresh)


def test_speaker_rows_are_carried_over_by_name(tmp_path):
    """A run that adds speakers (e.g. the corpus's span voices) keeps the trained rows of the
    speakers it shares with the checkpoint, wherever they now sit; new ones keep their start."""
    old = load_checkpoint(v1_checkpoint(tmp_path / "v1")).model  # speakers a..e
    config = load_config(TINY_V2, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 4}})
    torch.manual_seed(3)
    model = FastSpeech2(config.model, config.loss)
    start = model.speaker.table.weight.detach().clone()
    copied, fresh = warm_start(model, tmp_path / "v1", "characters", ("c", "new1", "a", "new2"))
    rows, theirs = model.speaker.table.weight.detach(), old.speaker.table.weight.detach()
    assert torch.equal(rows[0], theirs[2]) and torch.equal(rows[2], theirs[0])
    assert torch.equal(rows[1], start[1]) and torch.equal(rows[3], start[3])
    assert "speaker.table.weight[2/4]" in copied
    # reported fresh: the two new rows, not the table
    assert "speaker.table.weight[2 new rows]" in fresh and "speaker.table.weight" not in fresh
    # without the names nothing is carried over
    torch.manual_seed(3)
    plain = FastSpeech2(config.model, config.loss)
    warm_start(plain, tmp_path / "v1", "characters")
    assert torch.equal(plain.speaker.table.weight.detach(), start)


def test_a_warm_start_needs_the_same_tokens(tmp_path):
    v1_checkpoint(tmp_path / "v1", tokens="phonemes")
    config = load_config(TINY_V2, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 3}})
    with pytest.raises(CheckpointError, match="data.tokens"):
        warm_start(FastSpeech2(config.model, config.loss), tmp_path / "v1", "characters")


def test_train_cli_warm_start_is_logged_and_resume_ignores_it(tmp_path, caplog):
    from metatts.cli.train import main

    v1_checkpoint(tmp_path / "v1", speakers=("awb", "x", "slt", "y", "z"))
    common = ["--config", str(TINY_V2), "--quiet",
              "--set", f"train.run_dir={tmp_path / 'run'}",
              "--set", f'data.datasets=["{ROOT / "tests" / "fixtures" / "speech"}"]',
              "--set", f"data.cache_dir={tmp_path / 'features'}",
              "--set", f"train.init_from={tmp_path / 'v1'}", "--set", "train.checkpoint_every=1"]
    with caplog.at_level("INFO", logger="metatts.train.pretrain"):
        assert main([*common, "--set", "train.steps=1"]) == 0
    # the fixture's 4 speakers: awb and slt keep their rows from the checkpoint, by name
    warm = [r.getMessage() for r in caplog.records if "warm start from" in r.getMessage()]
    assert len(warm) == 1 and "rows [2/4] of the speaker table" in warm[0], warm
    caplog.clear()
    with caplog.at_level("INFO", logger="metatts.train.pretrain"):
        assert main([*common, "--set", "train.steps=2", "--resume"]) == 0
    assert not any("warm start from" in r.getMessage() for r in caplog.records)
    run = load_checkpoint(tmp_path / "run")
    assert run.step == 2 and run.config.train.init_from == str(tmp_path / "v1")


def test_the_warm_v2_config_takes_the_shipped_models_text_and_decoder_path():
    config = load_config(ROOT / "configs" / "base_v2_warm.json",
                         {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 40}})
    model = FastSpeech2(config.model, config.loss)
    copied, fresh = warm_start(model, ROOT / config.train.init_from, config.data.tokens)
    mine = dict(model.named_parameters())
    share = sum(mine[n].numel() for n in copied if n in mine) / sum(p.numel()
                                                                   for p in mine.values())
    assert share > 0.6, share  # all but the encoder, pitch, adapters and speaker table
    assert not any(n.startswith(("speaker_encoder.", "variance.pitch")) for n in copied)


def test_a_wider_model_keeps_the_aligner_through_its_own_embedding(tmp_path):
    """model.aligner_embedding: a model of another width takes the other's aligner and, as the
    aligner's own embedding, the other's token embedding; its durations are the other's, and a
    step on durations fixed beforehand leaves that aligner as it was."""
    old = load_checkpoint(v1_checkpoint(tmp_path / "v1")).model.eval()
    width = old.config.hidden
    config = load_config(TINY_V2, {"model": {"n_symbols": len(SYMBOLS), "n_speakers": 5,
                                             "pitch": False, "speaker_encoder": False,
                                             "hidden": 2 * width, "aligner_embedding": width}})
    torch.manual_seed(4)
    model = FastSpeech2(config.model, config.loss)
    copied, _ = warm_start(model, tmp_path / "v1", "characters")
    assert {"aligner_embedding.weight", "aligner.network.key_layer.0.conv.weight"} <= set(copied)
    assert "token_embedding.weight" not in copied  # another width: fresh
    assert torch.equal(model.aligner_embedding.weight, old.token_embedding.weight)
    torch.manual_seed(5)
    batch = collate([Example(uid, i, torch.randint(1, len(SYMBOLS), (n,)), torch.randn(80, t))
                     for i, (uid, n, t) in enumerate((("x", 7, 30), ("y", 5, 22)))])
    model.eval()
    durations = model.align(batch)
    assert torch.equal(durations, old.align(batch))
    assert durations.sum(1).tolist() == [30, 22]
    aligner = {n: v.clone() for n, v in model.state_dict().items() if n.startswith("aligner")}
    embedding = model.token_embedding.weight.detach().clone()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    model(dataclasses.replace(batch, durations=durations)).total.backward()
    optimizer.step()
    assert all(torch.equal(model.state_dict()[n], v) for n, v in aligner.items())
    assert not torch.equal(model.token_embedding.weight, embedding)  # the rest does train

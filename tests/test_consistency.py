"""Speaker consistency: the decoder is trained so that the speaker encoder hears in its output
the vector it was given, for the training speakers and for novel vectors beyond them. The
encoder's weights never move for these terms; with the weights at 0 nothing changes."""

import dataclasses

import pytest
import torch

from metatts.model.config import ConfigError, LossConfig
from metatts.model.fastspeech2 import NEW_SPEAKER, FastSpeech2
from metatts.train.zero_shot import cycle
from test_speaker_encoder import TINY, v2_batch

ON = LossConfig(consistency=1.0, novel=1.0)


def model_with(loss=ON, seed=0, **changes):
    torch.manual_seed(seed)
    return FastSpeech2(dataclasses.replace(TINY, **changes), loss)


def test_off_by_default_and_in_eval_mode():
    torch.manual_seed(1)
    plain = model_with(LossConfig(), novel_voices=1.0)(v2_batch())
    assert "consistency" not in plain.parts and "novel" not in plain.parts
    model = model_with(novel_voices=1.0).eval()  # synthesis, adaptation: never computed
    parts = model(v2_batch()).parts
    assert "consistency" not in parts and "novel" not in parts


@pytest.mark.parametrize("term,mix", [("consistency", 0.0), ("novel", 0.5)])
def test_terms_reach_the_decoder_and_not_the_encoder(term, mix):
    # the encoder that hears the output is held fixed; (with speaker_encoder_mix > 0 the
    # consistency term also reaches the encoder through the vector an item speaks with, as
    # reconstruction does: mix 0 here isolates the hearing side)
    model = model_with(novel_voices=1.0, speaker_encoder_mix=mix).train()
    torch.manual_seed(2)
    out = model(v2_batch())
    assert {"consistency", "novel"} <= set(out.parts)
    assert all(torch.isfinite(out.parts[k]) and out.parts[k] > 0 for k in ("consistency", "novel"))
    model.zero_grad()
    torch.manual_seed(2)
    model(v2_batch()).parts[term].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or not g.any() for n, g in grads.items()
               if n.startswith("speaker_encoder."))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith("decoder."))


def test_novel_vectors_lie_beyond_their_own_speaker():
    model = model_with(novel_voices=1.0, novel_range=0.5, speaker_encoder_mix=0.0).train()
    batch = v2_batch()
    torch.manual_seed(3)
    out = model.outputs(batch)
    heard, vectors = out.novel
    rows = model.speaker(batch.speakers).detach()
    assert heard.shape == vectors.shape and len(vectors) == len(batch.speakers)
    # each novel vector is v + u (v - w): on the ray from a partner row w through the item's row
    for v in vectors:
        assert min(float((v - r).norm()) for r in rows) <= 0.5 * float(
            max((a - b).norm() for a in rows for b in rows)) + 1e-6
    assert not any(torch.allclose(v, r) for v in vectors[1:] for r in rows)
    # no partner of another speaker: nothing to decode
    one = dataclasses.replace(batch, speakers=torch.zeros_like(batch.speakers))
    assert model.outputs(one).novel is None


def test_new_speaker_items_have_no_consistency_target():
    model = model_with().train()
    batch = v2_batch()
    new = dataclasses.replace(batch, speakers=torch.full_like(batch.speakers, NEW_SPEAKER))
    parts = model(new).parts
    assert "consistency" not in parts and "novel" not in parts


def test_training_on_consistency_raises_the_cycle_cosine():
    torch.manual_seed(4)
    model = model_with(LossConfig(mel=0.0, postnet=0.0, duration=0.0, energy=0.0, pitch=0.0,
                                  speaker_encoder=0.0, align=0.0, binarization=0.0,
                                  consistency=1.0), speaker_encoder_mix=0.0)
    batch = v2_batch()
    as_new = dataclasses.replace(batch, speakers=torch.full_like(batch.speakers, NEW_SPEAKER))
    encoder = {n: p.clone() for n, p in model.speaker_encoder.named_parameters()}

    def cycles():
        model.eval()
        return [cycle(model, model.speaker.table.weight[s].detach().clone(), as_new)
                for s in range(3)]

    before = cycles()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        model.train()
        opt.zero_grad()
        model(batch).total.backward()
        opt.step()
    after = cycles()
    assert sum(after) / 3 > sum(before) / 3 + 0.2, (before, after)
    assert all(torch.equal(p, encoder[n]) for n, p in model.speaker_encoder.named_parameters())


def test_config_checks():
    with pytest.raises(ConfigError, match="novel_voices"):
        dataclasses.replace(TINY, novel_voices=1.5)
    with pytest.raises(ConfigError, match="novel_range"):
        dataclasses.replace(TINY, novel_range=-0.1)

"""Reference attention: the decoder's frames read the voice's own clips frame by frame. It starts
as the identity (a warm start speaks as before), reads only the items marked present and only
their real reference frames, trains, and reaches synthesis through ``references``."""

import dataclasses

import pytest
import torch

from metatts.model.config import ConfigError
from metatts.model.fastspeech2 import NEW_SPEAKER
from metatts.model.reference_attention import ReferenceAttention, stack_references
from metatts.train.zero_shot import outputs_as, with_references
from test_speaker_encoder import TINY, clips, v2_batch, v2_model


def trained_like(model):
    """Give the zero-initialized output projections weights, as training would."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in (model.reference_in, model.reference_out):
            module.out.weight.copy_(torch.randn(module.out.weight.shape, generator=g) * 0.3)
    return model


def test_it_needs_the_speaker_encoder_and_sane_settings():
    with pytest.raises(ConfigError, match="needs model.speaker_encoder"):
        dataclasses.replace(TINY, speaker_encoder=False, warp_voices=0.0,
                            reference_attention=True)
    with pytest.raises(ConfigError, match="reference_dropout"):
        dataclasses.replace(TINY, reference_attention=True, reference_dropout=1.0)
    assert dataclasses.replace(TINY, reference_attention=True).generation == 2
    assert v2_model().reference_in is None  # off: the model and its state dict as before
    assert not any(k.startswith("reference") for k in v2_model().state_dict())


def test_a_new_model_speaks_exactly_as_without_it_until_trained():
    plain = v2_model().eval()
    model = v2_model(reference_attention=True).eval()
    model.load_state_dict(plain.state_dict(), strict=False)  # a warm start
    batch = v2_batch()
    assert torch.equal(model.outputs(batch).mel, plain.outputs(batch).mel)
    tokens, lengths = torch.randint(1, TINY.n_symbols, (2, 6)), torch.tensor([6, 4])
    refs = stack_references(clips(), 1024)
    with torch.inference_mode():
        a = model.infer(tokens, lengths, torch.tensor([0, 1]), references=refs)
        b = plain.infer(tokens, lengths, torch.tensor([0, 1]))
    assert torch.equal(a.mel, b.mel)


def test_only_present_items_read_and_padding_is_never_read():
    torch.manual_seed(0)
    layer = ReferenceAttention(80, 32, 2, 0.0).eval()
    torch.nn.init.normal_(layer.out.weight)
    x = torch.randn(3, 10, 32)
    mels = torch.randn(3, 80, 12)
    lengths = torch.tensor([12, 7, 5])
    present = torch.tensor([True, False, True])
    y = layer(x, mels, lengths, present)
    assert torch.equal(y[1], x[1]) and not torch.allclose(y[0], x[0])
    # frames past an item's length change nothing
    noisy = mels.clone()
    noisy[1, :, 7:] = 50.0
    noisy[2, :, 5:] = -50.0
    assert torch.allclose(layer(x, noisy, lengths, present), y, atol=1e-6)
    # the same in bfloat16, where attention is written out
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x, mels, lengths, present)
    assert torch.allclose(low.float(), y, atol=0.1)


def test_stacked_references_keep_every_clip_and_their_order_within_the_budget():
    a, b = torch.zeros(80, 50), torch.ones(80, 30)
    joined, n = stack_references([a, b], 1000)
    assert joined.shape == (1, 80, 80) and n.tolist() == [80]
    assert torch.equal(joined[0, :, :50], a) and torch.equal(joined[0, :, 50:], b)
    cut, n = stack_references([a, b, torch.full((80, 100), 2.0)], 60)  # 20 frames each
    assert n.tolist() == [60]
    assert cut[0, 0, :20].eq(0).all() and cut[0, 0, 20:40].eq(1).all() and cut[0, 0, 40:].eq(2).all()
    with pytest.raises(ValueError, match="at least one reference"):
        stack_references([], 10)


def test_training_reads_references_and_drops_them_for_a_share():
    model = trained_like(v2_model(reference_attention=True, reference_dropout=0.5)).train()
    batch = v2_batch()
    seen = []
    torch.manual_seed(0)
    for _ in range(20):
        seen.append(model._references(batch)[2])
    present = torch.stack(seen).float().mean()
    assert 0.2 < float(present) < 0.8
    model.eval()  # evaluation: every item reads its references
    assert bool(model._references(batch)[2].all())
    assert model._references(dataclasses.replace(batch, references=None)) is None
    # the loss trains the attention's weights
    model.train()
    loss = model.loss(batch).total
    loss.backward()
    assert model.reference_in.query.weight.grad is not None
    assert float(model.reference_out.key_value.weight.grad.abs().sum()) > 0


def test_zero_shot_scoring_and_synthesis_reach_the_references():
    model = trained_like(v2_model(reference_attention=True)).eval()
    vector = model.encode_speaker(clips())
    batch = dataclasses.replace(v2_batch(), references=None, reference_lengths=None,
                                speakers=torch.full((4,), NEW_SPEAKER))
    with torch.no_grad():
        without = outputs_as(model, vector, batch).mel
        read = outputs_as(model, vector, with_references(model, batch, clips())).mel
    assert not torch.allclose(without, read)
    other = v2_model().eval()  # a model without it: the batch as it was
    assert with_references(other, batch, clips()) is batch
    tokens, lengths = torch.randint(1, TINY.n_symbols, (1, 6)), torch.tensor([6])
    new = torch.tensor([NEW_SPEAKER])
    with torch.inference_mode():
        a = model.infer(tokens, lengths, new, speaker_vectors=vector[None])
        b = model.infer(tokens, lengths, new, speaker_vectors=vector[None],
                        references=stack_references(clips(), 1024))
    assert a.mel.shape[-1] == b.mel.shape[-1]  # the timing is the predictors', untouched
    assert not torch.allclose(a.mel, b.mel)


def test_reference_only_items_are_spoken_from_the_mean_vector():
    model = v2_model(reference_attention=True, reference_dropout=0.0, reference_only=1.0,
                     speaker_encoder_mix=0.0).train()
    out = model.outputs(v2_batch())
    mean = model.speaker.table.weight.mean(0)
    assert torch.allclose(out.speaker_vector, mean.expand_as(out.speaker_vector))
    model.eval()  # never in evaluation
    rows = model.speaker(v2_batch().speakers)
    assert torch.allclose(model.outputs(v2_batch()).speaker_vector, rows)
    with pytest.raises(ConfigError, match="reference_only"):
        dataclasses.replace(TINY, reference_attention=True, reference_only=1.5)


def test_synthesize_and_the_cli_pass_reference_clips_to_such_a_model(tmp_path):
    import soundfile as sf

    from metatts import audio
    from metatts.audio import HOP_LENGTH
    from metatts.cli.synthesize import main
    from metatts.model.checkpoint import load_checkpoint, save_checkpoint
    from metatts.model.config import Config, replace
    from metatts.synthesis import synthesize
    from metatts.text import SYMBOLS

    config = replace(Config(), model=dataclasses.replace(TINY, reference_attention=True).__dict__)
    model = trained_like(v2_model(reference_attention=True))
    with torch.no_grad():  # speak a few frames per token, as a trained model would
        model.variance.duration.out.bias.fill_(1.5)
    save_checkpoint(tmp_path / "ckpt", model, config, SYMBOLS, ("a", "b", "c"), step=1)
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    assert checkpoint.model.reference_in is not None

    def vocoder(mel):  # the mel's first band, one sample per hop: what the model said, audibly
        return mel[0].repeat_interleave(HOP_LENGTH) * 1e-3

    mels = clips()
    vector = {"speaker.new": checkpoint.model.encode_speaker(mels)}
    plain = synthesize(checkpoint, "Hello there.", vector, vocoder=vocoder)
    read = synthesize(checkpoint, "Hello there.", vector, vocoder=vocoder, references=mels)
    assert plain.mels[0].shape == read.mels[0].shape
    assert not torch.allclose(plain.mels[0], read.mels[0])

    t = torch.arange(audio.SAMPLE_RATE) / audio.SAMPLE_RATE
    clip = tmp_path / "clip.wav"
    sf.write(clip, (0.3 * torch.sin(2 * torch.pi * 180 * t)).numpy(), audio.SAMPLE_RATE)
    out = tmp_path / "out.wav"
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--reference", str(clip),
                 "--text", "Hello there.", "--out", str(out)]) == 0
    wav, rate = sf.read(out)
    assert rate == audio.SAMPLE_RATE and len(wav) > 0

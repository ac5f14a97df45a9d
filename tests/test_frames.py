"""Frame matching (metatts.frames): the model's frames corrected by the voice's own, found
through the model's teacher-forced twin of its clips."""

import pytest
import torch

import metatts.frames as frames_module
from metatts.adapt import support_examples
from metatts.frames import FrameBank, frame_bank
from metatts.synthesis import synthesize
from test_adapt_v2 import base, clips  # noqa: F401  (module fixtures: a tiny v2 model, slt)


def silent_vocoder(mel):
    return torch.zeros(mel.shape[-1] * 256)


def random_bank(frames=12, mels=5, neighbours=1, seed=0, smoothing=1):
    g = torch.Generator().manual_seed(seed)
    return FrameBank(torch.randn(frames, mels, generator=g), torch.randn(frames, mels, generator=g),
                     neighbours, smoothing)


def test_a_frame_the_twin_made_becomes_the_real_frame_beside_it():
    bank = random_bank()
    picked = [3, 0, 7, 7]
    out = bank.apply(bank.twin[picked].T)
    assert torch.allclose(out, bank.real[picked].T, atol=1e-5)


def test_the_correction_is_the_mean_difference_of_the_nearest_twin_frames():
    twin = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]])
    real = twin + torch.tensor([[1.0, 1.0], [3.0, -1.0], [100.0, 100.0]])
    bank = FrameBank(twin, real, neighbours=2, smoothing=1)
    mel = torch.tensor([[0.4], [0.0]])  # nearest: rows 0 and 1; row 2 is far
    assert torch.allclose(bank.apply(mel), mel + torch.tensor([[2.0], [0.0]]))
    # more neighbours than frames: all of them
    assert torch.allclose(FrameBank(twin, real, 9, 1).apply(mel),
                          mel + (real - twin).mean(0)[:, None])


def test_the_upper_bins_average_their_own_count_of_neighbours():
    """upper_neighbours: the bins from upper_bin up take the mean of that many nearest twin
    frames' differences, those below keep ``neighbours``; 0 (the default) is one count for all."""
    bank = random_bank(frames=12, mels=6, neighbours=4, seed=1)
    mel = torch.randn(6, 9, generator=torch.Generator().manual_seed(2))
    four, one = bank.apply(mel), FrameBank(bank.twin, bank.real, 1, 1).apply(mel)
    split = FrameBank(bank.twin, bank.real, 4, 1, upper_neighbours=1, upper_bin=4).apply(mel)
    torch.testing.assert_close(split[:4], four[:4])
    torch.testing.assert_close(split[4:], one[4:])
    assert not torch.allclose(split, four)
    # the other way round too, and the count of the bins below may be the larger one or not
    flipped = FrameBank(bank.twin, bank.real, 1, 1, upper_neighbours=4, upper_bin=2).apply(mel)
    torch.testing.assert_close(flipped[:2], one[:2])
    torch.testing.assert_close(flipped[2:], four[2:])
    assert torch.equal(FrameBank(bank.twin, bank.real, 4, 1, upper_neighbours=4, upper_bin=3)
                       .apply(mel), four)
    assert random_bank().upper_neighbours == frames_module.UPPER_NEIGHBOURS
    with pytest.raises(ValueError, match="upper_neighbours"):
        FrameBank(bank.twin, bank.real, 4, 1, upper_neighbours=-1)
    with pytest.raises(ValueError, match="upper_bin must lie inside the 6 mel bins"):
        FrameBank(bank.twin, bank.real, 4, 1, upper_neighbours=1, upper_bin=6)


def test_the_correction_is_averaged_over_consecutive_frames():
    bank = random_bank(smoothing=1)
    picked = [3, 0, 7, 5]
    mel = bank.twin[picked].T  # each frame's correction: its own row's real - twin
    own = (bank.real - bank.twin)[picked].T  # (n_mels, 4)
    smoothed = FrameBank(bank.twin, bank.real, 1, 3).apply(mel) - mel
    assert torch.allclose(smoothed[:, 1], own[:, :3].mean(1), atol=1e-5)  # centred
    assert torch.allclose(smoothed[:, 0], (2 * own[:, 0] + own[:, 1]) / 3, atol=1e-5)  # edge
    assert torch.allclose(smoothed[:, 3], (own[:, 2] + 2 * own[:, 3]) / 3, atol=1e-5)
    # a constant correction is left as it is
    still = FrameBank(bank.twin, bank.twin + 0.5, 1, 5)
    assert torch.allclose(still.apply(mel), mel + 0.5, atol=1e-5)


def test_bad_banks_and_mels_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        FrameBank(torch.zeros(4, 5), torch.zeros(4, 6))
    with pytest.raises(ValueError, match="at least one frame"):
        FrameBank(torch.zeros(0, 5), torch.zeros(0, 5))
    with pytest.raises(ValueError, match="neighbours"):
        FrameBank(torch.zeros(4, 5), torch.zeros(4, 5), 0)
    with pytest.raises(ValueError, match="odd"):
        FrameBank(torch.zeros(4, 5), torch.zeros(4, 5), 4, 2)
    with pytest.raises(ValueError, match="n_mels=5"):
        random_bank().apply(torch.zeros(6, 3))


def test_a_bank_goes_into_tensors_and_back():
    bank = random_bank()
    tensors = bank.tensors()
    assert set(tensors) == {"frames.twin", "frames.real"}
    assert all(t.dtype == torch.float16 for t in tensors.values())
    back = FrameBank.from_tensors(tensors, neighbours=3, smoothing=5, upper_neighbours=1,
                                  upper_bin=2)
    assert back.neighbours == 3 and back.smoothing == 5 and back.frames == bank.frames
    assert (back.upper_neighbours, back.upper_bin) == (1, 2)
    assert torch.allclose(back.real, bank.real, atol=1e-2)
    assert FrameBank.from_tensors({"speaker.new": torch.zeros(3)}) is None


def test_the_twin_is_the_models_teacher_forced_rendering_of_each_clip(base, clips, monkeypatch):
    model = base.model.eval()
    examples = support_examples(clips, base)
    vector = model.encode_speaker([x.mel for x in examples])
    bank = frame_bank(base, {"speaker.new": vector}, examples)
    lengths = [x.mel.shape[-1] for x in examples]
    assert bank.frames == sum(lengths) and bank.twin.shape[1] == model.config.n_mels
    assert torch.equal(bank.real, torch.cat([x.mel.T for x in examples]))
    # the twin is the model's output, not the clips: it differs from them, and it depends on
    # the voice's vector
    assert not torch.allclose(bank.twin, bank.real, atol=0.1)
    other = frame_bank(base, {"speaker.new": torch.zeros_like(vector)}, examples)
    assert not torch.allclose(other.twin, bank.twin, atol=1e-3)
    assert torch.equal(other.real, bank.real)
    # clip by clip gives the same twin as all at once: pitch is normalized over all the clips
    monkeypatch.setattr(frames_module, "CHUNK_CLIPS", 1)
    one_by_one = frame_bank(base, {"speaker.new": vector}, examples)
    assert torch.allclose(one_by_one.twin, bank.twin, atol=1e-4)
    # built in eval mode, and the model is left in the mode it was in
    model.train()
    try:
        again = frame_bank(base, {"speaker.new": vector}, examples)
        assert model.training
    finally:
        model.eval()
    assert torch.allclose(again.twin, bank.twin, atol=1e-4)
    with pytest.raises(ValueError, match="at least one clip"):
        frame_bank(base, {"speaker.new": vector}, [])


def test_synthesis_with_frames_speaks_the_corrected_mel_without_the_post_filter(base, clips):
    model = base.model.eval()
    examples = support_examples(clips, base)
    params = {"speaker.new": model.encode_speaker([x.mel for x in examples])}
    bank = frame_bank(base, params, examples)
    text = "The boat sailed at noon."
    plain = synthesize(base, text, params, vocoder=silent_vocoder, postfilter=False)
    matched = synthesize(base, text, params, vocoder=silent_vocoder, frames=bank)
    assert matched.mels[0].shape == plain.mels[0].shape
    assert torch.allclose(matched.mels[0], bank.apply(plain.mels[0]), atol=1e-5)
    assert not torch.allclose(matched.mels[0], plain.mels[0], atol=1e-2)
    # a bank whose real frames are its twin's changes nothing, post-filter or not
    still = FrameBank(bank.twin, bank.twin.clone())
    same = synthesize(base, text, params, vocoder=silent_vocoder, frames=still)
    assert torch.allclose(same.mels[0], plain.mels[0], atol=1e-5)
    wrong = FrameBank(torch.zeros(3, 7), torch.zeros(3, 7))
    with pytest.raises(Exception, match="7 mel bins"):
        synthesize(base, text, params, vocoder=silent_vocoder, frames=wrong)


def test_an_adapted_voice_carries_its_bank_through_its_file(base, clips, tmp_path):
    from metatts.adapt import AdaptSettings, adapt
    from metatts.voice import Voice

    settings = AdaptSettings(steps=2, lr=0.05, start="encoder")
    result = adapt(clips, base, settings, keep=[0, 2])
    bank = result.voice.frames
    assert bank is not None and bank.frames == sum(x.mel.shape[-1]
                                                   for x in support_examples(clips, base))
    assert result.kept[2].frames is bank  # the last count's bank is the voice's
    # step 0's bank is the start's twin: another rendering of the same real frames
    assert torch.equal(result.kept[0].frames.real, bank.real)
    assert not torch.allclose(result.kept[0].frames.twin, bank.twin, atol=1e-4)
    path = result.voice.save(tmp_path / "voice.safetensors")
    back = Voice.load(path)
    assert set(back.params) == set(result.voice.params)  # the bank is not a parameter
    assert back.frames.frames == bank.frames and back.frames.neighbours == bank.neighbours
    assert back.frames.smoothing == bank.smoothing
    assert torch.allclose(back.frames.twin, bank.twin, atol=2e-2)
    assert back.metadata()["frames"] == {"frames": bank.frames, "neighbours": bank.neighbours,
                                         "smoothing": bank.smoothing, "key": "hidden"}
    assert bank.key == "hidden"  # the shipped matching: on the decoder's states
    assert torch.allclose(back.frames.keys, bank.keys, atol=2e-2)
    plain = adapt(clips, base, AdaptSettings(steps=2, lr=0.05, start="encoder", frames=False))
    assert plain.voice.frames is None and "frames" not in plain.voice.metadata()
    assert Voice.load(plain.voice.save(tmp_path / "plain.safetensors")).frames is None


def test_a_hidden_key_bank_matches_on_the_decoder_states_it_is_given():
    g = torch.Generator().manual_seed(3)
    bank = random_bank()
    keys = torch.randn(bank.frames, 6, generator=g)
    keyed = FrameBank(bank.twin, bank.real, 1, 1, keys)
    assert keyed.key == "hidden" and bank.key == "mel"
    mel = torch.randn(5, 3, generator=g)  # whatever the mel, the states pick the rows
    out = keyed.apply(mel, keys[[4, 9, 2]])
    torch.testing.assert_close(out, mel + (bank.real - bank.twin)[[4, 9, 2]].T)
    with pytest.raises(ValueError, match="hidden states"):
        keyed.apply(mel)
    with pytest.raises(ValueError, match="hidden states"):
        keyed.apply(mel, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="one .frames, hidden. row per twin frame"):
        FrameBank(bank.twin, bank.real, 1, 1, keys[:-1])
    tensors = keyed.tensors()
    assert set(tensors) == {"frames.twin", "frames.real", "frames.keys"}
    back = FrameBank.from_tensors(tensors, neighbours=1, smoothing=1)
    assert back.key == "hidden" and torch.allclose(back.keys, keys, atol=1e-2)


def test_a_hidden_key_bank_keeps_the_twins_decoder_states_and_synthesis_uses_them(
        base, clips, tmp_path, monkeypatch):
    from metatts.adapt import AdaptSettings, adapt
    from metatts.voice import Voice

    model = base.model.eval()
    examples = support_examples(clips, base)
    params = {"speaker.new": model.encode_speaker([x.mel for x in examples])}
    bank = frame_bank(base, params, examples)
    keyed = frame_bank(base, params, examples, key="hidden")
    assert keyed.keys.shape == (bank.frames, model.config.hidden)
    assert torch.equal(keyed.twin, bank.twin) and torch.equal(keyed.real, bank.real)
    with pytest.raises(ValueError, match="one of mel, hidden"):
        frame_bank(base, params, examples, key="pitch")
    # synthesis hands the spoken frames' states to the bank: the same as matching by hand
    text = "The boat sailed at noon."
    plain = synthesize(base, text, params, vocoder=silent_vocoder, postfilter=False)
    with frames_module.hidden_states(model) as seen:
        synthesize(base, text, params, vocoder=silent_vocoder, postfilter=False)
    states = seen[0][0, : plain.mels[0].shape[1]]
    matched = synthesize(base, text, params, vocoder=silent_vocoder, frames=keyed)
    torch.testing.assert_close(matched.mels[0], keyed.apply(plain.mels[0], states))
    assert not torch.allclose(matched.mels[0],
                              synthesize(base, text, params, vocoder=silent_vocoder,
                                         frames=bank).mels[0], atol=1e-3)
    # adapt keeps the key in the voice file, and the loaded voice speaks the same
    result = adapt(clips, base, AdaptSettings(steps=1, lr=0.05, start="encoder",
                                              frames_key="hidden"))
    assert result.voice.frames.key == "hidden"
    back = Voice.load(result.voice.save(tmp_path / "keyed.safetensors"))
    assert back.frames.key == "hidden" and back.metadata()["frames"]["key"] == "hidden"
    with pytest.raises(ValueError, match="frames_key"):
        AdaptSettings(frames_key="pitch")
    # how many neighbours a match averages is a setting too, kept in the voice file
    two = adapt(clips, base, AdaptSettings(steps=1, lr=0.05, start="encoder",
                                           frames_key="hidden", frames_neighbours=2),
                keep=[0, 1])
    assert two.voice.frames.neighbours == 2 and two.kept[0].frames.neighbours == 2
    assert Voice.load(two.voice.save(tmp_path / "two.safetensors")).frames.neighbours == 2
    assert result.voice.frames.neighbours == frames_module.NEIGHBOURS
    with pytest.raises(ValueError, match="frames_neighbours must be a whole number"):
        AdaptSettings(frames_neighbours=0)
    # ... and how many the upper mel bins average, kept in the voice file too
    upper = adapt(clips, base, AdaptSettings(steps=1, lr=0.05, start="encoder",
                                             frames_key="hidden", frames_upper=1), keep=[0, 1])
    assert upper.voice.frames.upper_neighbours == 1 and upper.kept[0].frames.upper_neighbours == 1
    loaded = Voice.load(upper.voice.save(tmp_path / "upper.safetensors"))
    assert (loaded.frames.upper_neighbours, loaded.frames.upper_bin) == (1, frames_module.UPPER_BIN)
    assert Voice.load(tmp_path / "two.safetensors").frames.upper_neighbours == 0
    with pytest.raises(ValueError, match="frames_upper must be 0"):
        AdaptSettings(frames_upper=-1)
    # the benchmark tells the voices apart (it keys its clips by voice)
    from dataclasses import replace as changed

    from eval.runner import voice_hash

    ids = {n: voice_hash("meta", result.voice.params, changed(result.voice.frames, neighbours=n))
           for n in (4, 2)}
    ids["upper"] = voice_hash("meta", result.voice.params,
                              changed(result.voice.frames, upper_neighbours=1))
    assert len(set(ids.values())) == 3
    # a bank of 4 neighbours and 3 frames (every bank before they were settings) keeps its id
    # whatever the defaults become, and a default changed to it gets one of its own
    four = changed(result.voice.frames, neighbours=4, smoothing=3)
    two_default = changed(result.voice.frames, neighbours=2, smoothing=3)
    monkeypatch.setattr(frames_module, "NEIGHBOURS", 2)
    assert voice_hash("meta", result.voice.params, four) == ids[4]
    assert voice_hash("meta", result.voice.params, two_default) == ids[2]


def test_the_corrected_loss_is_the_l1_of_the_banks_correction_with_a_gradient(base, clips):
    """frames.corrected_loss (meta.query_frames' outer term): for support clips and other query
    clips of one voice, the mean |real - corrected| of the query's teacher-forced frames, where
    corrected is what a hidden-key bank of the support clips makes of them (FrameBank.apply);
    it has a gradient in the parameters, and is not the plain L1 of the query's frames."""
    from metatts.data.batch import collate
    from metatts.frames import corrected_loss

    model = base.model.eval()
    examples = support_examples(clips, base)
    support, query = examples[:2], examples[2:]
    assert query, "the fixture needs at least three clips"
    vector = model.encode_speaker([x.mel for x in support])
    params = {"speaker.new": vector.clone().requires_grad_(True)}
    got = corrected_loss(model, params, collate(support), collate(query))
    # by hand: a bank of the support clips (their own pitch statistics, as one batch gives
    # them), applied to each query clip's teacher-forced frames and their decoder states
    bank = frame_bank(base, {"speaker.new": vector}, support, key="hidden")
    errors, count = 0.0, 0
    for x in query:
        batch = collate([x])
        with torch.no_grad(), frames_module.hidden_states(model) as seen:
            out = torch.func.functional_call(frames_module._Outputs(model),
                                             {"model.speaker.new": vector}, (batch,),
                                             strict=False)
        said = (out.mel if out.mel_postnet is None else out.mel_postnet)[0]
        fixed = bank.apply(said, seen[0][0])
        errors += float((fixed - x.mel).abs().sum())
        count += fixed.numel()
    assert abs(got.item() - errors / count) < 1e-4
    # differentiable in the voice
    (grad,) = torch.autograd.grad(got, params["speaker.new"])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    plain = float(torch.nn.functional.l1_loss(
        torch.cat([(lambda o: (o.mel if o.mel_postnet is None else o.mel_postnet)[0])(
            torch.func.functional_call(frames_module._Outputs(model),
                                       {"model.speaker.new": vector}, (collate([x]),),
                                       strict=False)).reshape(-1) for x in query]),
        torch.cat([x.mel.reshape(-1) for x in query])).detach())
    assert got.item() != plain  # the correction changes the loss


def test_the_synthesize_cli_offers_the_libraries_frame_keys():
    from metatts.cli import synthesize as cli
    from metatts.frames import DEFAULT_KEY, KEYS

    assert (cli.FRAME_KEYS, cli.DEFAULT_FRAMES_KEY) == (KEYS, DEFAULT_KEY)

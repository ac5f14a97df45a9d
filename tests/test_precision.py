"""Adaptation steps in bfloat16 (AdaptSettings.precision): the arithmetic changes, the state does
not. Parameters, gradients and Adam's moments stay float32; the loss follows float32's closely;
the setting is checked, saved with the voice and kept out of older benchmark records' setup ids."""

import dataclasses

import pytest
import torch

from eval import grid, runner
from metatts.adapt import AdaptSettings, adapt, fast_precision
from metatts.meta import InnerConfig, inner_loop
from metatts.meta.inner_loop import PRECISIONS
from metatts.vocoder import native_bf16

from test_adapt import base, clips  # noqa: F401 - the tiny model and the slt clips


def test_bfloat16_steps_keep_float32_state_and_follow_float32s_loss(base, clips):  # noqa: F811
    fp32 = AdaptSettings(steps=4, lr=0.01)
    bf16 = dataclasses.replace(fp32, precision="bfloat16")
    a, b = adapt(clips, base, fp32), adapt(clips, base, bf16)
    assert b.voice.settings["precision"] == "bfloat16"
    assert all(t.dtype == torch.float32 for t in b.voice.params.values())
    # the same start and steps, rounded differently: close, not equal
    assert a.losses != b.losses
    for x, y in zip(a.losses + [a.final_loss], b.losses + [b.final_loss]):
        assert abs(x - y) < 0.03 * x
    assert b.final_loss < b.losses[0]
    moved = [float((b.voice.params[n] - a.voice.params[n]).abs().max()) for n in a.voice.params]
    assert max(moved) > 0


def test_the_inner_loop_casts_only_inside_each_step(base, clips):  # noqa: F811
    model = base.model
    seen = []
    real = model.loss

    def spy(batch):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                    else None)
        return real(batch)

    from metatts.adapt import fixed_alignment, support_examples
    from metatts.data.batch import collate
    from metatts.meta import initial_params
    support = fixed_alignment(model, support_examples(clips, base), ["speaker.new"], "cpu")
    params = initial_params(model, ("embedding",), detach=True)
    model.loss = spy
    try:
        result = inner_loop(model, params, support, collate,
                            InnerConfig(steps=2, lr=0.01, precision="bfloat16"))
    finally:
        del model.loss
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert not torch.is_autocast_enabled("cpu")
    assert all(p.dtype == torch.float32 for p in result.params.values())


def test_precision_is_checked():
    assert PRECISIONS == ("float32", "bfloat16")
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        InnerConfig(precision="float16")
    with pytest.raises(ValueError, match="unknown precision"):
        AdaptSettings(precision="half")
    with pytest.raises(ValueError, match="second-order"):
        inner_loop(torch.nn.Linear(1, 1), {}, [None], lambda x: x,
                   InnerConfig(precision="bfloat16"), create_graph=True)


def test_fast_precision_follows_the_processor(monkeypatch):
    import metatts.adapt as adapt_mod

    assert fast_precision() == ("bfloat16" if native_bf16() else "float32")
    monkeypatch.setattr(adapt_mod, "native_bf16", lambda: False)
    assert fast_precision("cpu") == "float32"
    monkeypatch.setattr(adapt_mod, "native_bf16", lambda: True)
    assert fast_precision("cpu") == "bfloat16"
    assert fast_precision("meta") == "float32"


def test_float32_keeps_the_setup_id_of_records_made_before_the_setting(base):  # noqa: F811
    import hashlib
    import json

    from metatts.voice import base_model

    method = grid.parse_method("finetune-adam:precision=float32")
    settings = runner.settings_for(method, base, 0, 0).to_dict()
    # a record of before the setting existed (and before the later identity setting)
    del settings["steps"], settings["precision"], settings["identity"]
    del settings["verifier"], settings["verifier_every"], settings["frames_neighbours"]  # later
    del settings["frames_upper"]  # ones
    doc = json.dumps({"settings": settings, "base": base_model(base).sha256}, sort_keys=True)
    before = hashlib.sha256(doc.encode()).hexdigest()[:16]
    assert runner.setup_id(method, base, 0) == before
    bf16 = grid.parse_method("finetune-adam:precision=bfloat16")
    assert runner.setup_id(bf16, base, 0) != before


def test_no_identity_term_keeps_the_setup_id_of_records_made_before_it(base):  # noqa: F811
    import hashlib
    import json

    from metatts.voice import base_model

    method = grid.parse_method("finetune-encoder")
    settings = runner.settings_for(method, base, 0, 0).to_dict()
    del settings["steps"], settings["identity"]  # a record of before the setting existed
    del settings["verifier"], settings["verifier_every"], settings["frames_neighbours"]  # later
    del settings["frames_upper"]  # ones
    if settings.get("precision") == "float32":
        del settings["precision"]
    doc = json.dumps({"settings": settings, "base": base_model(base).sha256}, sort_keys=True)
    assert runner.setup_id(method, base, 0) == hashlib.sha256(doc.encode()).hexdigest()[:16]
    pulled = grid.parse_method("finetune-encoder:identity=10")
    assert runner.setup_id(pulled, base, 0) != runner.setup_id(method, base, 0)


def test_no_verifier_term_keeps_the_setup_id_and_a_verifier_term_is_a_new_setup(base):  # noqa: F811
    import hashlib
    import json

    from metatts.voice import base_model

    method = grid.parse_method("finetune-encoder")
    settings = runner.settings_for(method, base, 0, 0).to_dict()
    assert settings["verifier"] == 0.0 and settings["verifier_every"] == 1
    for name in ("steps", "identity", "verifier", "verifier_every", "frames_neighbours",
                 "frames_upper"):
        del settings[name]
    if settings.get("precision") == "float32":
        del settings["precision"]
    doc = json.dumps({"settings": settings, "base": base_model(base).sha256}, sort_keys=True)
    assert runner.setup_id(method, base, 0) == hashlib.sha256(doc.encode()).hexdigest()[:16]
    heard = grid.parse_method("finetune-encoder:verifier=0.5:verifier_every=4")
    assert runner.settings_for(heard, base, 0, 0).verifier_every == 4
    assert runner.setup_id(heard, base, 0) != runner.setup_id(method, base, 0)
    with pytest.raises(ValueError, match="verifier_every must be a whole number"):
        grid.parse_method("finetune-encoder:verifier_every=0")


def test_every_start_steps_in_the_fast_arithmetic_by_default(base):  # noqa: F811
    from metatts.adapt import ADAPT_STEPS, default_settings

    for start in (None, "encoder", "mean"):
        settings = default_settings("pretrained", base, start)
        assert settings.precision == fast_precision()
        assert settings.steps == ADAPT_STEPS == 50


def test_no_frame_bank_keeps_the_setup_id_of_records_made_before_it(base):  # noqa: F811
    import hashlib
    import json

    from metatts.voice import base_model

    plain = grid.parse_method("finetune-encoder:frames=0")
    settings = runner.settings_for(plain, base, 0, 0).to_dict()
    assert settings["frames"] is False
    del settings["steps"], settings["identity"], settings["frames"]  # a record of before
    del settings["verifier"], settings["verifier_every"], settings["frames_neighbours"]  # later
    del settings["frames_upper"]  # ones
    if settings.get("precision") == "float32":
        del settings["precision"]
    doc = json.dumps({"settings": settings, "base": base_model(base).sha256}, sort_keys=True)
    assert runner.setup_id(plain, base, 0) == hashlib.sha256(doc.encode()).hexdigest()[:16]
    # the default speaks with the clips' frames: a new setup, never mixed with those records
    assert runner.setup_id(grid.parse_method("finetune-encoder"), base, 0) != \
        runner.setup_id(plain, base, 0)

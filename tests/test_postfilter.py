"""The mel post-filter: what it does to a mel, how its strengths are measured, and that the
checkpoint carries them into every synthesis without touching the weights voices are tied to."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from metatts import postfilter
from metatts.assets import sha256_file
from metatts.cli.postfilter import main as postfilter_main
from metatts.data import FeatureCache, FeatureSettings, read_dataset
from metatts.model.checkpoint import SHIPPED, load_checkpoint
from metatts.model.config import ConfigError, PostFilterConfig
from metatts.synthesis import synthesize

FIXTURES = Path(__file__).parent / "fixtures" / "speech"


def silent_vocoder(mel):
    return torch.zeros(mel.shape[-1] * 256)


def rms_detail(mels, kernel, dim):
    return float(torch.cat([postfilter.detail(m, kernel, dim).flatten() for m in mels])
                 .square().mean().sqrt())


def test_off_is_identity_and_flat_regions_stay_flat():
    torch.manual_seed(0)
    mel = torch.randn(80, 40)
    assert torch.equal(postfilter.apply(mel, PostFilterConfig()), mel)
    flat = torch.full((80, 30), -4.0)
    out = postfilter.apply(flat, PostFilterConfig(spectral=1.5, temporal=1.2))
    assert torch.allclose(out, flat)  # no detail, nothing to sharpen, edges included
    one_frame = postfilter.apply(mel[:, :1], PostFilterConfig(spectral=1.5, temporal=1.2))
    assert one_frame.shape == (80, 1) and torch.isfinite(one_frame).all()
    with pytest.raises(ValueError, match="one \\(n_mels, T\\) mel"):
        postfilter.apply(mel[None], PostFilterConfig(spectral=1.5))


def test_it_sharpens_the_detail_and_leaves_the_envelope():
    torch.manual_seed(0)
    mel = torch.randn(80, 60).cumsum(0) * 0.1 + torch.randn(80, 60)  # envelope + detail
    out = postfilter.apply(mel, PostFilterConfig(spectral=1.5))
    before, after = rms_detail([mel], 3, 0), rms_detail([out], 3, 0)
    assert 1.3 * before < after < 1.7 * before
    wide = postfilter.local_mean  # the coarse shape across bins barely moves
    assert (wide(out, 15, 0) - wide(mel, 15, 0)).abs().mean() < 0.1 * (out - mel).abs().mean()


def test_matched_strengths_undo_smoothing():
    """Predicted mels that are a smoothed copy of the real ones: the raw ratios are > 1, one
    pass of them overshoots (the stages interact), and the matched strengths give the filtered
    mels the real mels' detail across bins and across frames."""
    torch.manual_seed(0)
    real = [torch.randn(80, n).cumsum(1) * 0.05 + torch.randn(80, n) for n in (50, 70, 90)]
    smooth = [0.6 * m + 0.4 * postfilter.local_mean(postfilter.local_mean(m, 3, 0), 5, 1)
              for m in real]
    assert postfilter.detail_ratios(real, real) == pytest.approx((1.0, 1.0))
    spectral, temporal = postfilter.detail_ratios(real, smooth)
    assert spectral > 1.2 and temporal > 1.1
    once = [postfilter.apply(m, PostFilterConfig(spectral=spectral, temporal=temporal))
            for m in smooth]
    assert rms_detail(once, 3, 0) > 1.1 * rms_detail(real, 3, 0)
    matched = postfilter.match_detail(real, smooth)
    assert matched.spectral_kernel == 3 and matched.temporal_kernel == 5
    fixed = [postfilter.apply(m, matched) for m in smooth]
    for kernel, dim in ((3, 0), (5, 1)):
        assert rms_detail(fixed, kernel, dim) == pytest.approx(rms_detail(real, kernel, dim),
                                                               rel=0.02)
    with pytest.raises(ValueError, match="same positive number"):
        postfilter.detail_ratios(real, smooth[:1])


def test_config_rejects_even_kernels_and_silly_strengths():
    with pytest.raises(ConfigError, match="positive odd"):
        PostFilterConfig(spectral_kernel=4)
    with pytest.raises(ConfigError, match="1.0 = off"):
        PostFilterConfig(temporal=0.0)
    assert not PostFilterConfig().active and PostFilterConfig(spectral=1.2).active


@pytest.mark.slow
def test_shipped_checkpoint_measures_oversmoothing_and_the_cli_writes_it(tmp_path):
    """On the real pretrained model and real clips of three of its training speakers: the
    predicted mels have less detail than the real ones, the CLI writes strengths > 1 into
    model.json only, synthesis uses them (or not, when asked), and --off / --copy-from work."""
    ckpt_dir = tmp_path / "pretrained"
    shutil.copytree(SHIPPED / "pretrained", ckpt_dir)
    meta = json.loads((ckpt_dir / "model.json").read_text())
    meta["config"].pop("postfilter", None)  # as written before post-filters existed
    (ckpt_dir / "model.json").write_text(json.dumps(meta))
    assert not load_checkpoint(ckpt_dir).config.postfilter.active
    weights = sha256_file(ckpt_dir / "model.safetensors")

    known = set(load_checkpoint(ckpt_dir).speakers)
    clips = [u for u in read_dataset(FIXTURES).utterances if u.speaker in known]
    assert len({u.speaker for u in clips}) >= 3
    direct = postfilter.estimate(load_checkpoint(ckpt_dir), clips,
                                 FeatureCache(tmp_path / "features", FeatureSettings()))
    assert direct.spectral > 1.1 and direct.temporal > 1.0

    assert postfilter_main(["--checkpoint", str(ckpt_dir), "--data", str(FIXTURES),
                            "--cache-dir", str(tmp_path / "features")]) == 0
    ckpt = load_checkpoint(ckpt_dir)
    assert ckpt.config.postfilter == direct
    assert sha256_file(ckpt_dir / "model.safetensors") == weights  # voices still fit

    text, name = "The garden was quiet after the rain.", "slt"
    plain = synthesize(ckpt, text, speaker=name, vocoder=silent_vocoder, postfilter=False)
    sharp = synthesize(ckpt, text, speaker=name, vocoder=silent_vocoder)
    assert torch.allclose(sharp.mels[0], postfilter.apply(plain.mels[0], direct))
    assert rms_detail(sharp.mels, 3, 0) > 1.1 * rms_detail(plain.mels, 3, 0)

    other = tmp_path / "other"
    shutil.copytree(SHIPPED / "pretrained", other)
    assert postfilter_main(["--checkpoint", str(other), "--copy-from", str(ckpt_dir)]) == 0
    assert load_checkpoint(other).config.postfilter == direct
    assert postfilter_main(["--checkpoint", str(other), "--off"]) == 0
    assert not load_checkpoint(other).config.postfilter.active


def test_cli_says_what_is_wrong(tmp_path, capsys):
    assert postfilter_main(["--checkpoint", str(tmp_path)]) == 1
    assert "no checkpoint there" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-3"])
def test_cli_wants_at_least_one_utterance(count, tmp_path, capsys):
    with pytest.raises(SystemExit):
        postfilter_main(["--checkpoint", str(tmp_path), "--utterances", count])
    assert "--utterances must be at least 1" in capsys.readouterr().err

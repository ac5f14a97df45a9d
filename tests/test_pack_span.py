"""benchmarks/pack_span.py: the span residual is 0 inside the hull or span and grows outside it, and
a tarball that is not the checked release is refused."""

import numpy as np
import pytest

from conftest import load_script


def test_residual_inside_and_outside_hull_and_span():
    span = load_script("benchmarks/pack_span.py")
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # columns e1, e2 in 3-d
    inside = 0.3 * basis[:, 0] + 0.7 * basis[:, 1]
    assert span.residual(inside, basis, convex=True) == pytest.approx(0.0, abs=1e-4)
    # 2*e1 is on the linear span but outside the convex hull (weights must sum to 1)
    far = 2.0 * basis[:, 0]
    assert span.residual(far, basis, convex=False) == pytest.approx(0.0, abs=1e-9)
    assert span.residual(far, basis, convex=True) == pytest.approx(0.5, abs=1e-3)
    # a direction no column has stays out of both: residual 1
    off = np.array([0.0, 0.0, 3.0])
    assert span.residual(off, basis, convex=False) == pytest.approx(1.0)
    assert span.residual(off, basis, convex=True) > 1.0


def test_refuses_a_tarball_that_is_not_the_checked_release(tmp_path):
    from metatts.corpus.kokoro_packs import PackError, all_packs

    fake = tmp_path / "kokoro-js-1.2.1.tgz"
    fake.write_bytes(b"not the release")
    with pytest.raises(PackError, match="sha256"):
        all_packs(fake)


def test_span_voices_are_seeded_mixtures_of_training_and_foreign_packs_only():
    from metatts.corpus import kokoro_packs
    from metatts.corpus.voices import NATURAL_TEST, NATURAL_TRAIN, NATURAL_VAL

    if kokoro_packs.missing():
        pytest.skip(kokoro_packs.missing())
    module = load_script("benchmarks/span_voices.py")
    basis, styles = module.span_styles(3, seed=0)
    assert not set(basis) & set(NATURAL_TEST + NATURAL_VAL)  # never a held-out voice
    assert set(NATURAL_TRAIN) <= set(basis) and len(basis) == 43
    assert np.array_equal(styles[2].reshape(510, 256), kokoro_packs.span_style(0, 2))
    again = module.span_styles(3, seed=0)[1]
    assert all(np.array_equal(a, b) for a, b in zip(styles, again))  # a pure function of the seed
    assert not np.array_equal(styles[0], styles[1])
    assert all(s.shape == (510, 1, 256) and s.dtype == np.float32 for s in styles)
    # each is a combination of the basis packs whose weights sum to 1: on their affine span
    packs = kokoro_packs.all_packs(kokoro_packs.tarball_path())
    tables = np.stack([packs[n].reshape(-1) for n in basis]).astype(np.float64)
    lifted = np.vstack([tables.T, np.ones(len(basis))])
    target = np.append(styles[0].reshape(-1).astype(np.float64), 1.0)
    weights = np.linalg.lstsq(lifted, target, rcond=None)[0]
    assert np.abs(lifted @ weights - target).max() < 1e-3

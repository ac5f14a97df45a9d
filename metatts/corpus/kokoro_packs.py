"""Kokoro-82M's English voice packs, from the npm package ``kokoro-js@1.2.1``.

The tarball (``npm pack kokoro-js@1.2.1``; its JavaScript is never installed or run) holds every
Kokoro v1.0 voice as ``package/voices/<name>.bin``: raw little-endian float32 of shape (510, 256),
row i the style vector for an utterance of about i phoneme tokens. The tarball and every pack used
are checked by sha256 before use; a pack is read straight from the tarball into memory, so nothing
unchecked is ever on disk under a trusted name.

A *blend* is a convex combination of packs, row by row: a new, stable voice between its parents.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

PACKAGE = "kokoro-js@1.2.1"
TARBALL = "kokoro-js-1.2.1.tgz"
TARBALL_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
PACK_SHAPE = (510, 256)
INSTALL_SCRIPT = "scripts/install_corpus_engines.sh"

# sha256 of each English pack's .bin, computed from the checked tarball above (2026-12-02).
PACK_SHA256 = {
    "af_alloy": "c4a6b876047fd7fb472edf4ebd63cfac7c3b958a7cae7c106e8f038ca6308c45",
    "af_aoede": "4a004c33430762e2461eedb2013fad808ef4ab3121f5300f554476caf58d8361",
    "af_bella": "f69d836209b78eb8c66e75e3cda491e26ea838a3674257e9d4e5703cbaf55c8b",
    "af_heart": "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b",
    "af_jessica": "a240a5e3c15b43563d6e923bdca8ef5613a23471d9b77653694012435df23bd8",
    "af_kore": "9be5221b6a941c04b561959b8ff0b06e809444dcc4ab7e75a7b23606f691819e",
    "af_nicole": "cd2191ab31b914ed7b318416b0e4440fdf392ddad9106a060819aa600a64f59a",
    "af_nova": "18778272caa0d0eebaea251c35fd635f038434f9eee5e691d02a174bd328414f",
    "af_river": "00a2bcf82b1d86e8f19902ede58c65ccf6c0e43b44b7d74fad54e5d8933c9c30",
    "af_sarah": "4409fbc125afabacc615d94db5398d847006a737b0247d6892b7a9a0007a2f0a",
    "af_sky": "4435255c9744f3f31659e0d714ab7689bf65d9e77ec1cce060f083912614f0b9",
    "am_adam": "162b035ed91cfc48b6046982184c645f72edcdd1b82843347f605d7bf7b15716",
    "am_echo": "3968b92c3c4cd1c4416dbded36c13eaa388a90d5788d02a13e4d781f5f8cf3c3",
    "am_eric": "e8b5be17edd1e3636901ce7598baafe2dc8dd8ff707a0c23bf9e461add7e2832",
    "am_fenrir": "c27989f741f7ee34d273a39d8a595cc0837d35f5ced9a29b7cc162614616df43",
    "am_liam": "52403be32fd047c6a44517cb0bcd6b134f2a18baa73e70ef41651e0eab921ade",
    "am_michael": "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1",
    "am_onyx": "da5d135b424164916d75a68ffb4c2abce3d7d5ccc82dd1ee6cf447ce286145e6",
    "am_puck": "fcf73c989033e9233e0b98713eca600c8c74dcc1614b37009d5450ff4a2274a0",
    "am_santa": "61150cf726ab6c5ed7a99f90a304f91f5a72c00c592e89ec94e5df11c319227a",
    "bf_alice": "08afa6ba24da61ea5e8efa139e5aadc938d83f0a6da5a900adaf763ac1da5573",
    "bf_emma": "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73",
    "bf_isabella": "3754352c4aaa46d17f27654ab7518d65b62ad6163a0f55a5f4330c2da2c4e94f",
    "bf_lily": "5e0ee32ebe64a467124976b14e69590746f1c4ce41a12b587a50c862edfea335",
    "bm_daniel": "6b3194bbceffb746733cbc22c8f593dd44e401a71d53895a2dca891bc595a1e8",
    "bm_fable": "f889083196807b4adb15e9204252165f503b8d33d3982e681c52443c49d798f1",
    "bm_george": "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc",
    "bm_lewis": "b8f671cef828c30e66fdf0b0756a76bba58f6bb3398cbbf27058642acbcedb97",
}
ENGLISH = tuple(PACK_SHA256)


class PackError(RuntimeError):
    """The voice packs are missing, damaged or not the checked release."""


def packs_dir() -> Path:
    """Where the install script puts the tarball: ``$METATTS_KOKORO_JS`` or
    ``~/.cache/metatts/kokoro-js``."""
    return Path(os.environ.get("METATTS_KOKORO_JS") or Path.home() / ".cache/metatts/kokoro-js")


def tarball_path() -> Path:
    return packs_dir() / TARBALL


def accent(name: str) -> str:
    """The espeak-ng language a pack speaks: "en-us" for a* voices, "en-gb" for b* voices."""
    if name not in PACK_SHA256:
        raise PackError(f"{name!r} is not one of Kokoro's 28 English voices ({', '.join(ENGLISH)})")
    return "en-us" if name[0] == "a" else "en-gb"


def missing() -> str | None:
    """None when the tarball is in place, else what to run to get it."""
    if tarball_path().is_file():
        return None
    return (f"Kokoro's English voice packs are not installed ({tarball_path()} is missing); run "
            f"`bash {INSTALL_SCRIPT} --packs-only` (it runs `npm pack {PACKAGE}`, which needs npm) "
            "or set $METATTS_KOKORO_JS to a folder holding that tarball")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked_tarball(path: str | Path) -> bytes:
    """The tarball's bytes, after checking its sha256 against the release's."""
    data = Path(path).read_bytes()
    digest = _sha256(data)
    if digest != TARBALL_SHA256:
        raise PackError(f"{path}: sha256 {digest} is not that of {PACKAGE} ({TARBALL_SHA256}); "
                        f"refusing to use it. Delete it and run `bash {INSTALL_SCRIPT} --packs-only`")
    return data


def all_packs(tarball: str | Path) -> dict[str, np.ndarray]:
    """Every pack in the checked tarball, the 26 non-English ones too (which have no per-pack
    hash here: the tarball's covers them), as (510, 256) float32 arrays."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(_checked_tarball(tarball)), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.startswith("package/voices/") and member.name.endswith(".bin"):
                raw = tar.extractfile(member).read()
                out[Path(member.name).stem] = np.frombuffer(raw, "<f4").reshape(PACK_SHAPE)
    return out


@functools.lru_cache(maxsize=4)
def _read_packs(path: str, mtime_ns: int) -> dict[str, bytes]:
    """Every English pack's bytes from the tarball, after checking the tarball's sha256."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(_checked_tarball(path)), mode="r:gz") as tar:
        for name in ENGLISH:
            member = tar.extractfile(f"package/voices/{name}.bin")
            if member is None:
                raise PackError(f"{path}: package/voices/{name}.bin is missing")
            out[name] = member.read()
    return out


def load_pack(name: str, tarball: str | Path | None = None) -> np.ndarray:
    """One English voice pack as a (510, 256) float32 array, sha256-checked."""
    accent(name)  # a known English voice, or PackError
    path = Path(tarball) if tarball is not None else tarball_path()
    if not path.is_file():
        raise PackError(missing() if tarball is None else f"{path} does not exist")
    raw = _read_packs(str(path), path.stat().st_mtime_ns)[name]
    if _sha256(raw) != PACK_SHA256[name]:
        raise PackError(f"{path}: voice pack {name} has sha256 {_sha256(raw)}, expected "
                        f"{PACK_SHA256[name]}; refusing to use it")
    pack = np.frombuffer(raw, dtype="<f4")
    if pack.size != PACK_SHAPE[0] * PACK_SHAPE[1]:
        raise PackError(f"{path}: voice pack {name} holds {pack.size} floats, not 510 x 256")
    return pack.reshape(PACK_SHAPE).astype(np.float32)


def blend(weights: Mapping[str, float], tarball: str | Path | None = None) -> np.ndarray:
    """The convex combination of packs ``{name: weight}`` (weights are normalized to sum 1)."""
    total = sum(weights.values())
    if not weights or total <= 0 or min(weights.values()) < 0:
        raise ValueError(f"blend weights must be non-negative and sum to more than 0: {weights}")
    return sum(w / total * load_pack(n, tarball) for n, w in weights.items()).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _span_tables(path: str, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray]:
    from metatts.corpus.voices import NATURAL_TEST, NATURAL_VAL

    packs = all_packs(path)
    held_out = set(NATURAL_TEST + NATURAL_VAL)
    names = tuple(sorted(n for n in packs if n not in held_out))
    return names, np.stack([packs[n].astype(np.float64) for n in names])


def span_basis(tarball: str | Path | None = None) -> tuple[str, ...]:
    """The packs span voices are drawn over: every pack but the test and validation voices (the
    17 English training packs and the 26 non-English ones)."""
    path = Path(tarball) if tarball is not None else tarball_path()
    return _span_tables(str(path), path.stat().st_mtime_ns)[0]


def span_style(seed: int, index: int, tarball: str | Path | None = None) -> np.ndarray:
    """Voice ``index`` of span seed ``seed``: a (510, 256) float32 style table drawn from a
    Gaussian over the linear span of :func:`span_basis`, m + sum_i z_i (p_i - m) / sqrt(N) with
    z ~ N(0, 1) and m the packs' mean: a combination of packs with weights summing to 1, some
    negative, which a blend never is. A pure function of (seed, index).
    ``benchmarks/span_voices.py`` measured such voices: intelligible, about as natural as the
    test packs (DNSMOS 3.10 against 3.11; the training packs 3.33), and distinct from each other."""
    path = Path(tarball) if tarball is not None else tarball_path()
    if not path.is_file():
        raise PackError(missing() if tarball is None else f"{path} does not exist")
    _, tables = _span_tables(str(path), path.stat().st_mtime_ns)
    mean = tables.mean(0)
    z = np.random.default_rng([seed, index]).standard_normal(len(tables))
    return (mean + np.tensordot(z, tables - mean, 1) / np.sqrt(len(tables))).astype(np.float32)

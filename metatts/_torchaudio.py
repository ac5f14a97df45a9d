"""Import torchaudio in its pure-Python mode, so SpeechBrain works beside the CPU build of torch.

PyPI's torchaudio wheels carry compiled extensions linked against CUDA libraries that the CPU torch
does not have; loading them raises ``OSError: libc10_cuda.so``. torchaudio treats a *missing*
extension as optional, so before the first import we pre-load its tiny ``_extension.utils`` module
with a loader that reports "not available" on that OSError. Everything SpeechBrain's ECAPA needs
(fbank features, resampling) is pure Python; audio I/O goes through soundfile.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_UTILS = "torchaudio._extension.utils"


def import_torchaudio():
    """Import and return torchaudio; skip its compiled extension if that cannot load."""
    if "torchaudio" in sys.modules:
        return sys.modules["torchaudio"]
    spec = importlib.util.find_spec("torchaudio")
    if spec is None:
        raise ImportError("torchaudio is not installed: pip install -r requirements.txt")
    if _UTILS not in sys.modules:
        utils_path = Path(list(spec.submodule_search_locations)[0]) / "_extension" / "utils.py"
        utils_spec = importlib.util.spec_from_file_location(_UTILS, utils_path)
        utils = importlib.util.module_from_spec(utils_spec)
        utils_spec.loader.exec_module(utils)
        load_lib = utils._load_lib

        def _load_lib_or_skip(lib: str) -> bool:
            try:
                return load_lib(lib)
            except OSError:  # extension built for CUDA / another torch: use pure Python
                return False

        utils._load_lib = _load_lib_or_skip
        sys.modules[_UTILS] = utils
    import torchaudio

    return torchaudio


def import_speechbrain():
    """Import speechbrain after making torchaudio importable."""
    import_torchaudio()
    import speechbrain

    return speechbrain

"""Where pretrained models come from: a local path, a hub id when online, or a pinned pip package.

Every model the project uses is resolved by :func:`resolve` in that order. Weight files that a
package carries are checked by sha256 before anything loads them; files the project derives from
them (for example Whisper converted to a transformers directory) live in :func:`cache_dir` and are
written atomically, so a killed process never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


class AssetError(RuntimeError):
    """A pretrained model could not be found or failed its integrity check."""


@dataclass(frozen=True)
class Source:
    """Where a model was found. ``kind`` is "path", "hub" or "bundled"; ``location`` a dir or hub id."""

    kind: str
    location: str


def cache_dir() -> Path:
    """The user cache for derived model files: $METATTS_CACHE, else $XDG_CACHE_HOME/metatts."""
    root = os.environ.get("METATTS_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    ) / "metatts"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def is_online(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    """True when the Hugging Face hub can be reached; False under HF_HUB_OFFLINE=1."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("METATTS_OFFLINE"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    return sha256_file(path) == expected


def verify_sha256(path: str | Path, expected: str, what: str) -> Path:
    """Return ``path`` if its sha256 is ``expected``, else raise :class:`AssetError`."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{what}: expected file {path} does not exist.")
    stat = path.stat()
    if not _verified(str(path), stat.st_size, stat.st_mtime_ns, expected):
        raise AssetError(
            f"{what}: {path} has sha256 {sha256_file(path)}, expected {expected}. "
            "The file is corrupt or not the pinned release; reinstall it with "
            "`pip install --force-reinstall -r requirements.txt`."
        )
    return path


def package_dir(module: str, pip_name: str) -> Path:
    """The installed directory of ``module`` without importing (executing) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {pip_name} is not installed (pip install {pip_name})")
    return Path(list(spec.submodule_search_locations)[0])


def output_problem(target: str | Path, suffixes: tuple[str, ...] = (), *,
                   inputs: Iterable[str | Path] = (), force: bool = False) -> str | None:
    """Why a file cannot be written at ``target``, or None when it can: checked before any work
    is done, so that a long job does not end in an error at its last line. ``suffixes``: the
    endings allowed (e.g. ``(".wav", ".flac")``; empty: any). A file already there is replaced
    only with ``force``, and never when it is one of ``inputs`` (the files the job reads: the
    user's clips, a voice, the checkpoint's files), which the job would destroy."""
    target = Path(target)
    if not str(target) or str(target) == ".":
        return "no file name given."
    try:
        if target.is_dir():
            return f"{target} is a folder; give a file name inside it."
        if suffixes and target.suffix.lower() not in suffixes:
            return f"{target}: the file name must end in {' or '.join(suffixes)}."
        if target.exists():
            if any(Path(i).exists() and target.samefile(i) for i in inputs):
                return (f"{target} is one of this command's inputs, and writing there would "
                        "replace it; choose another file name.")
            if not force:
                return (f"{target} already exists; choose another file name, or add --force to "
                        "replace it.")
        folder = target.parent
        while not folder.exists():  # the first folder that exists must let us create the rest
            folder = folder.parent
        if not folder.is_dir():
            return f"{target}: {folder} is a file, so it cannot be made; choose another path."
        if not os.access(folder, os.W_OK | os.X_OK):
            return (f"{target}: the folder {folder} is not writable; choose a path in a folder "
                    "you can write to.")
    except OSError as err:  # e.g. a folder on the way that this user may not enter
        return f"{target}: cannot be reached ({err}); choose another path."
    return None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    Works for a file or a directory written at the yielded path.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(
    what: str,
    *,
    model: str | Path | None = None,
    hub_id: str | None = None,
    bundled: Callable[[], Path] | None = None,
    fix: str = "pip install -r requirements.txt",
) -> Source:
    """Find model ``what``.

    ``model`` is what the user asked for: a local directory/file, or a hub id. Without it the order
    is: the default ``hub_id`` when online, then ``bundled()``, which returns a local directory
    (verifying and deriving files as needed) or raises FileNotFoundError saying why. If nothing
    works, raise one AssetError naming the model, everything tried, and how to fix it.
    """
    tried: list[str] = []
    if model is not None:
        if Path(model).exists():
            return Source("path", str(model))
        if is_online():
            return Source("hub", str(model))
        raise AssetError(
            f"{what}: {str(model)!r} is not a local path, and as a hub id it cannot be downloaded "
            "because this machine is offline. Give a local model directory, or leave the option "
            "out to use the copy bundled with the pinned pip package."
        )
    if hub_id is not None:
        if is_online():
            return Source("hub", hub_id)
        tried.append(f"hub id {hub_id!r} (this machine is offline)")
    if bundled is not None:
        try:
            return Source("bundled", str(bundled()))
        except FileNotFoundError as err:
            tried.append(f"bundled copy ({err})")
    raise AssetError(
        f"Could not find the {what} model. Tried: {'; '.join(tried) or 'nothing'}. "
        f"To fix: {fix}, or pass a local model directory."
    )

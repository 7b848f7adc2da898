import io
import shutil
import urllib.error

import pytest

from crashchat.tasks import TASKS
from leaderboard import split as split_module
from leaderboard.split import SplitError, load_split


def test_real_split_is_official(split_dir):
    split = load_split(split_dir)
    assert split.official
    assert {t: len(r) for t, r in split.records.items()} == {
        "crash_recognition": 1839, "crash_localization": 1162, "pre_crash_localization": 1162,
        "crash_description": 1839, "causal_reasoning": 1839, "prevention_reasoning": 1838}
    assert split.records["crash_recognition"][0].video == "cap_21_008073.mp4"
    assert split.info()["sha256"] == split.sha256 and len(split.sha256) == 64


def test_env_variable_and_modified_copy(tmp_path, split_dir, monkeypatch):
    for task in TASKS[:2]:
        shutil.copy(split_dir / task.split_file(), tmp_path / task.split_file())
    (tmp_path / TASKS[0].split_file()).write_text((tmp_path / TASKS[0].split_file()).read_text()[:-1] + " ]")
    monkeypatch.setenv("CRASHCHAT_SPLIT_DIR", str(tmp_path))
    split = load_split()
    assert not split.official and split.records["crash_description"] == []
    assert split.sha256 != load_split(split_dir).sha256


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(SplitError, match="does not exist"):
        load_split(tmp_path / "nope")
    with pytest.raises(SplitError, match="no test split files"):
        load_split(tmp_path)


def test_download_verifies_and_caches(tmp_path, split_dir, monkeypatch):
    monkeypatch.delenv("CRASHCHAT_SPLIT_DIR", raising=False)
    monkeypatch.setenv("CRASHCHAT_CACHE", str(tmp_path / "cache"))
    asked = []

    def fake_urlopen(url, timeout):  # serves the shared copy as the pinned GitHub files
        asked.append(url)
        assert split_module.COMMIT in url
        return io.BytesIO((split_dir / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(split_module.urllib.request, "urlopen", fake_urlopen)
    assert load_split().official and len(asked) == 6
    assert load_split().official and len(asked) == 6  # second time from the cache


def test_download_with_wrong_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CRASHCHAT_SPLIT_DIR", raising=False)
    monkeypatch.setenv("CRASHCHAT_CACHE", str(tmp_path))
    monkeypatch.setattr(split_module.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"[]"))
    with pytest.raises(SplitError, match="expected"):
        load_split()
    assert not list(tmp_path.rglob("*.json"))  # nothing unverified is cached


def test_offline_message_says_how_to_point_at_a_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("CRASHCHAT_SPLIT_DIR", raising=False)
    monkeypatch.setenv("CRASHCHAT_CACHE", str(tmp_path))

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(split_module.urllib.request, "urlopen", offline)
    with pytest.raises(SplitError, match="--split-dir DIR or CRASHCHAT_SPLIT_DIR"):
        load_split()

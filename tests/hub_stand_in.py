"""A local stand-in for the Hugging Face Hub: files laid out as huggingface_hub's cache holds a download.

`offline_hub(monkeypatch, cache)` switches huggingface_hub to offline mode with `cache` as its
cache, so the real download code (`snapshot_download`, `hf_hub_download`, called by
`crashchat.weights.snapshot` and `crashchat.bases`) runs unchanged and finds what
`put(cache, repo, files)` wrote, with the commit hash in the path as a real download has it.
Nothing leaves the machine: a file that is not in the stand-in fails as an offline machine does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def offline_hub(monkeypatch, cache: Path) -> Path:
    import huggingface_hub.constants as hub

    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    return cache


def put(cache: Path, repo: str, files: dict[str, Path | str | dict], revision: str = REVISION) -> Path:
    """Write `files` (path in the repo -> a local file or folder to copy, text, or a dict written as
    JSON) into the cached snapshot `revision` of `repo`, and point `main` at it. Returns the snapshot."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / revision
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path) and content.is_dir():
            shutil.copytree(content, target, dirs_exist_ok=True)
        elif isinstance(content, Path):
            shutil.copyfile(content, target)
        elif isinstance(content, dict):
            target.write_text(json.dumps(content))
        else:
            target.write_text(content)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(revision)
    return snapshot

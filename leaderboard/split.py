"""The CrashChat test split: found locally or downloaded once, verified, fingerprinted.

Where the six files come from, in order:
1. `split_dir` (the `--split-dir` flag), then the `CRASHCHAT_SPLIT_DIR` environment variable:
   a folder holding `crashchat_dada_video_total_<name>_test.json` files. A folder whose files
   differ from the published ones (a mini split in tests, a private split) is accepted and
   marked `official: false`, so its scores are never mistaken for comparable ones.
2. The user cache (`CRASHCHAT_CACHE`, else `$XDG_CACHE_HOME/crashchat`, else `~/.cache/crashchat`),
   filled on first use from the authors' repository at a pinned commit and checked against the
   SHA-256 digests below.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from crashchat.records import RecordError, read_records
from crashchat.tasks import TASKS, Task
from crashchat.weights import cache_root

REPO = "Liangkd/CrashChat"
COMMIT = "3e556223830b92d78ed6cc1addaa5d726864362e"
URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/data/{{file}}"

# Published digests of the six test files, keyed by the split's own task name.
SHA256 = {
    "cause_reasoning": "35ce9492b02884cf4bcd424f1ad4596e43e8284cae306adfe318b9e9b9c40f04",
    "crash_description": "58679722f71665978ec5b2e14bbbb5cf58e05c3ff5623ec93d6322a5ddfbd89f",
    "crash_localization": "fae4823e51659dd9f65ae3b3a5a3f1717eceab60616e469551f9d67800f78e0d",
    "crash_recognition": "478950d521177ee216387aa911d43939e6ed717763421089fb1ff423137ef9de",
    "pre_crash_localization": "de2484b167d8cb6bc8119408d2b25a3d9a01ef7e3ec402ea82121f0cd603dadb",
    "prevention_reasoning": "d1063194d715293ffffad6ce5e5502986a1793663cb3acb66b93716a0eac6bb1",
}


class SplitError(Exception):
    """The split cannot be found, downloaded or read; the message says what to do."""


@dataclass(frozen=True)
class SplitRecord:
    video: str
    """Basename of the record's video, the key predictions are matched on."""
    prompt: str
    answer: str
    source: str


@dataclass
class Split:
    dir: Path
    records: dict[str, list[SplitRecord]]
    """Task id -> records in file order (empty for a task whose file the folder lacks)."""
    digests: dict[str, str]
    """Task id -> SHA-256 of its file."""
    official: bool
    """True when all six files are the published ones."""
    sha256: str = field(init=False)
    """Fingerprint of the whole split (see `fingerprint`)."""

    def __post_init__(self) -> None:
        self.sha256 = fingerprint(self.digests)

    def info(self) -> dict:
        return {"sha256": self.sha256, "official": self.official, "files": dict(self.digests)}


def fingerprint(digests: dict[str, str]) -> str:
    """SHA-256 over `<file name> <file sha256>` lines in task order; absent files are skipped."""
    lines = "".join(f"{t.split_file()} {digests[t.id]}\n" for t in TASKS if t.id in digests)
    return hashlib.sha256(lines.encode()).hexdigest()


def cache_dir() -> Path:
    return cache_root() / "split" / COMMIT[:12]


def load_split(split_dir: str | os.PathLike | None = None) -> Split:
    """The test split from `split_dir`, `CRASHCHAT_SPLIT_DIR`, or the verified download cache."""
    chosen = split_dir or os.environ.get("CRASHCHAT_SPLIT_DIR")
    if chosen:
        folder = Path(chosen)
        if not folder.is_dir():
            raise SplitError(f"split folder {folder} does not exist")
        return _read_folder(folder)
    folder = cache_dir()
    _download_missing(folder)
    split = _read_folder(folder)
    if not split.official:  # a cached file was altered after its verified download
        raise SplitError(f"cached split in {folder} does not match the published digests; delete it")
    return split


def _read_folder(folder: Path) -> Split:
    records: dict[str, list[SplitRecord]] = {}
    digests: dict[str, str] = {}
    for task in TASKS:
        path = folder / task.split_file()
        if not path.is_file():
            records[task.id] = []
            continue
        data = path.read_bytes()
        digests[task.id] = hashlib.sha256(data).hexdigest()
        records[task.id] = _parse_records(path, data, task)
    if not digests:
        raise SplitError(
            f"no test split files in {folder}: expected crashchat_dada_video_total_<task>_test.json")
    official = all(digests.get(t.id) == SHA256[t.split_name] for t in TASKS)
    return Split(dir=folder, records=records, digests=digests, official=official)


def _parse_records(path: Path, data: bytes, task: Task) -> list[SplitRecord]:
    try:
        found, _ = read_records(path, task=task.id, data=data)
    except RecordError as exc:
        raise SplitError(str(exc)) from None
    out, seen = [], set()
    for rec in found:
        if rec.name in seen:
            raise SplitError(f"{rec.where}: video {rec.name} appears twice")
        seen.add(rec.name)
        # The truth of a closed-form task must parse: every score is computed against it.
        if rec.answer is None or (task.kind != "text" and task.parse(rec.answer) is None):
            raise SplitError(f"{rec.where}: answer {rec.answer!r} is not a {task.kind.replace('_', ' ')} answer"[:300])
        out.append(SplitRecord(video=rec.name, prompt=rec.question, answer=rec.answer, source=rec.source or ""))
    return out


def _download_missing(folder: Path) -> None:
    for task in TASKS:
        target = folder / task.split_file()
        if target.is_file():
            continue
        url = URL.format(file=task.split_file())
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise SplitError(
                f"cannot download the test split ({getattr(exc, 'reason', exc)}); point at a local "
                "copy with --split-dir DIR or CRASHCHAT_SPLIT_DIR=DIR (a folder with the six "
                "crashchat_dada_video_total_<task>_test.json files)") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256[task.split_name]:
            raise SplitError(f"downloaded {url} has SHA-256 {digest}, expected {SHA256[task.split_name]}")
        folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so an interrupted download never leaves a half file in the cache.
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)

"""The Hub mirror: the database file copied to a Hugging Face dataset repository.

On a Space the disk is lost on restart, so the database is mirrored to a dataset repository
(`CRASHCHAT_RESULTS_REPO`, token in `HF_TOKEN`): fetched once at start when the local database is
empty, then committed in consistent snapshots by a `huggingface_hub.CommitScheduler`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

from huggingface_hub import CommitScheduler

from crashchat.settings import from_env, positive
from leaderboard.store import DB_NAME, Store


class HubSync:
    """Mirror the database file to a HF dataset repository, so a Space keeps results on restart.

    `pull()` once at start (only when the local database has no rows), then `start()`: a
    `huggingface_hub.CommitScheduler` commits a consistent snapshot at most once every
    `every_minutes`, and only when a write happened since the last commit (`push_soon()` marks
    it), so a burst of submissions makes one commit; its exit hook commits what is left. If the
    pull fails for any reason other than "nothing stored yet", syncing is disabled for this run:
    an empty local database must never overwrite the stored results.
    """

    def __init__(self, store: Store, repo_id: str, token: str | None = None, *, every_minutes: float = 2.0,
                 api=None, filename: str = DB_NAME) -> None:
        self.store, self.repo_id, self.token, self.filename = store, repo_id, token, filename
        self.every_minutes = every_minutes
        self.api = api
        """A `huggingface_hub.HfApi` (default) or a local stand-in with the same methods (tests)."""
        self.enabled = True
        self.scheduler: _SnapshotScheduler | None = None
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, store: Store) -> HubSync | None:
        repo = os.environ.get("CRASHCHAT_RESULTS_REPO")
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        every = from_env("CRASHCHAT_SYNC_MINUTES", 2.0, positive, "a positive number of minutes")
        return cls(store, repo, token, every_minutes=every) if repo and token else None

    def _api(self):
        if self.api is None:
            from huggingface_hub import HfApi

            self.api = HfApi(token=self.token)
        return self.api

    def pull(self) -> str:
        """Fetch the stored database if the local one is empty; returns what happened."""
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        if self.store.rows(include_hidden=True):
            return f"kept the local database {self.store.path} (it has rows)"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                got = Path(self._api().hf_hub_download(repo_id=self.repo_id, filename=self.filename,
                                                       repo_type="dataset", local_dir=tmp))
                self._restore(got)
        except (EntryNotFoundError, RepositoryNotFoundError):
            return f"no stored database in {self.repo_id} yet; starting empty"
        except Exception as exc:  # noqa: BLE001 - any failure disables syncing, said to the caller
            self.enabled = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            return f"could not fetch results from {self.repo_id} ({self.last_error}); sync disabled"
        return f"restored {len(self.store.rows(include_hidden=True))} rows from {self.repo_id}"

    def _restore(self, source: Path) -> None:
        with contextlib.closing(sqlite3.connect(source)) as src, self.store._connect() as dst:
            src.backup(dst)
        Store(self.store.path)  # re-check (and migrate) the schema of what came in
        with self.store._write():
            pass  # a new generation: caches built before the restore expire
        self.store.clear_cache()

    def start(self) -> str:
        """Start the scheduled commits (after `pull`); returns what happened."""
        if not self.enabled:
            return f"results sync to {self.repo_id} is disabled ({self.last_error})"
        try:
            self.scheduler = _SnapshotScheduler(self, repo_id=self.repo_id, repo_type="dataset", private=True,
                                                folder_path=tempfile.mkdtemp(prefix="crashchat-sync-"),
                                                every=self.every_minutes, hf_api=self._api())
        except Exception as exc:  # noqa: BLE001 - e.g. no network or a token without write access
            self.enabled = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            return f"could not start results sync to {self.repo_id} ({self.last_error}); sync disabled"
        return f"results sync to {self.repo_id}: a commit at most every {self.every_minutes:g} min after changes"

    def push_soon(self) -> None:
        """Mark the database changed: the next scheduled commit uploads a snapshot."""
        if self.enabled and self.scheduler is not None:
            self.scheduler.dirty.set()

    def flush(self):
        """Commit now if anything changed (waits; returns the commit info or None)."""
        return None if self.scheduler is None else self.scheduler.trigger().result()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()


class _SnapshotScheduler(CommitScheduler):
    """CommitScheduler that uploads a fresh SQLite snapshot, and only after a write.

    The live file cannot be uploaded as is (WAL, writes during the upload). The flag is cleared
    before the snapshot is taken, so a write that lands after that marks the next round: no
    change is ever dropped, and a burst of writes costs one commit.
    """

    def __init__(self, sync: HubSync, **kwargs) -> None:
        self.sync = sync
        self.dirty = threading.Event()
        super().__init__(**kwargs)

    def push_to_hub(self):
        if not self.dirty.is_set():
            return None
        with self.lock:
            self.dirty.clear()
            staged = self.folder_path / (self.sync.filename + ".part")
            self.sync.store.snapshot(staged)
            os.replace(staged, self.folder_path / self.sync.filename)
        try:
            info = super().push_to_hub()
        except Exception as exc:
            self.dirty.set()  # retried at the next round
            self.sync.last_error = f"{type(exc).__name__}: {exc}"
            print(f"warning: results sync to {self.sync.repo_id} failed: {self.sync.last_error}", file=sys.stderr)
            raise
        self.sync.last_error = None
        return info



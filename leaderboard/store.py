"""The leaderboard's store: verified submissions in SQLite, with their answers and scores.

`python -m leaderboard.store {list,rescore,hide,unhide,delete} [--db PATH] ...`

One SQLite file (stdlib `sqlite3`, WAL so readers never block the single writer) at
`CRASHCHAT_DB`, else `<user data dir>/crashchat/leaderboard.sqlite3`. Each row keeps the
submitted answers (canonical rows, see `submission.canonical_rows`, zlib-compressed) next to the
scorer's JSON, so every row can be re-scored when the scorer or the split changes. Every
operation opens its own connection, so threads (Gradio workers) never share one.

A submission's identity is the digest of its canonical answers, not of its file bytes: the same
answers reordered, split over other files or in another layout point at the existing row.

Reading is cached: every write bumps a `generation` counter in the database (so a write by
another process is seen too), and `rows()` parses a row's JSON only when it is new or changed.

On a Hugging Face Space the file is mirrored to a dataset repository (`CRASHCHAT_RESULTS_REPO`,
token in `HF_TOKEN`) so that results survive restarts: see `HubSync`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import tempfile
import threading
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import CommitScheduler

from crashchat import provenance as provenance_mod
from leaderboard import SCORER_VERSION
from leaderboard.scoring import score
from leaderboard.split import Split, SplitError, load_split
from leaderboard.submission import (
    MAX_BYTES,
    Submission,
    SubmissionError,
    answers_digest,
    canonical_rows,
    read_canonical,
    read_submission,
)

SCHEMA_VERSION = 2
DB_NAME = "leaderboard.sqlite3"
MAX_FILES = 12
MAX_REQUEST_BYTES = 100 * 1024**2
"""All files of one submission together (each file at most `submission.MAX_BYTES`)."""
MAX_NAME = 80
MAX_LINK = 500
MAX_NOTES = 2000

# Columns in this order: SQLite reads a row's leading columns without touching the large ones.
_SUBMISSIONS = """
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    link TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    submitted_at TEXT NOT NULL,
    answers_sha256 TEXT NOT NULL,
    files_sha256 TEXT NOT NULL,
    files_json TEXT NOT NULL,
    split_sha256 TEXT NOT NULL,
    scorer_version TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    rescored_at TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL DEFAULT 0,
    provenance_json TEXT NOT NULL DEFAULT '',
    result_json TEXT NOT NULL,
    answers_zlib BLOB NOT NULL,
    -- The same answers on the same split and scorer version are one row.
    UNIQUE (answers_sha256, split_sha256, scorer_version)
)"""


class StoreError(Exception):
    """The database cannot be used (e.g. written by a newer schema); the message says why."""


class SubmitError(ValueError):
    """A submission's form is unusable (name, link, notes, files); one line naming the field."""


def user_data_dir() -> Path:
    """The per-user data folder (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "crashchat"


def default_db_path() -> Path:
    """`CRASHCHAT_DB`, else the user data folder."""
    env = os.environ.get("CRASHCHAT_DB")
    return Path(env).expanduser() if env else user_data_dir() / DB_NAME


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StoredRow:
    """One verified submission as stored (the answers are loaded separately: they are large)."""

    id: int
    model: str
    link: str
    notes: str
    submitted_at: str
    answers_sha256: str
    """Digest of the canonical answers: the row's identity (with split and scorer version)."""
    files_sha256: str
    """Digest of the submitted files' digests (what was uploaded, for the record)."""
    files: list[tuple[str, str]]
    split_sha256: str
    scorer_version: str
    hidden: bool
    rescored_at: str
    revision: int
    """Bumped whenever the row's scores change (re-scoring); caches key on it."""
    provenance: dict | None
    """The validated `.meta.json` sent with the predictions (`crashchat.provenance`), if any."""
    result: dict

    def as_dict(self) -> dict:
        """A shallow dict of the fields (the result is shared, not copied: treat it as read-only)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_LIGHT = ("id, model, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256, "
          "scorer_version, hidden, rescored_at, revision, provenance_json")


def _row(rec: tuple, result: dict) -> StoredRow:
    (id_, model, link, notes, submitted_at, answers_sha256, files_sha256, files_json, split_sha256,
     scorer_version, hidden, rescored_at, revision, provenance_json) = rec
    return StoredRow(id_, model, link, notes, submitted_at, answers_sha256, files_sha256,
                     [tuple(f) for f in json.loads(files_json)], split_sha256, scorer_version, bool(hidden),
                     rescored_at, revision, json.loads(provenance_json) if provenance_json else None, result)


def pack_answers(rows: list[dict]) -> bytes:
    return zlib.compress(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 6)


def unpack_answers(blob: bytes) -> list[dict]:
    return json.loads(zlib.decompress(blob).decode("utf-8"))


class Store:
    """The SQLite file of verified rows. Cheap to create; safe to use from many threads."""

    def __init__(self, path: Path | str | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cache: tuple[int, list[tuple[tuple, StoredRow]]] | None = None
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema version {version} is newer than this code's "
                                 f"{SCHEMA_VERSION}; upgrade CrashChat or point CRASHCHAT_DB elsewhere")
            if version == 0:
                con.execute(_SUBMISSIONS)
            elif version == 1:
                _migrate_v1(con)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            con.execute("COMMIT")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes), so two
        # writers queue on the database lock instead of failing on a read->write upgrade.
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that also bumps the generation, so every reader's cache expires."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    def generation(self) -> int:
        """A counter bumped by every write (from any process): equal values mean nothing changed."""
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    # --- reading --------------------------------------------------------------------------------

    def rows(self, *, include_hidden: bool = False) -> list[StoredRow]:
        """Every row (visible ones unless `include_hidden`), by id; parsed once per change."""
        every = self._all_rows()
        return every if include_hidden else [r for r in every if not r.hidden]

    def clear_cache(self) -> None:
        """Forget parsed rows (the next `rows()` reads and parses everything again)."""
        with self._lock:
            self._cache = None

    def _all_rows(self) -> list[StoredRow]:
        with self._lock:
            cached = self._cache
        with self._connect() as con:
            con.execute("BEGIN")  # one snapshot for the generation and the rows
            generation = int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            if cached is not None and cached[0] == generation:
                con.execute("COMMIT")
                return [row for _, row in cached[1]]
            known = {row.id: (rec, row) for rec, row in cached[1]} if cached is not None else {}
            light = con.execute(f"SELECT {_LIGHT} FROM submissions ORDER BY id").fetchall()
            # Only new or re-scored rows have their (large) result JSON read and parsed again.
            stale = [rec[0] for rec in light if rec[0] not in known or known[rec[0]][1].revision != rec[12]]
            results = {}
            for i in range(0, len(stale), 500):
                chunk = stale[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for id_, text in con.execute(f"SELECT id, result_json FROM submissions WHERE id IN ({marks})", chunk):
                    results[id_] = json.loads(text)
            con.execute("COMMIT")
        pairs = []
        for rec in light:
            old = known.get(rec[0])
            if old is not None and old[0] == rec:
                pairs.append((rec, old[1]))  # unchanged: the same object
            else:
                pairs.append((rec, _row(rec, results[rec[0]] if rec[0] in results else old[1].result)))
        with self._lock:
            self._cache = (generation, pairs)
        return [row for _, row in pairs]

    def get(self, row_id: int) -> StoredRow | None:
        return next((r for r in self._all_rows() if r.id == int(row_id)), None)

    def find(self, answers_sha256: str, split_sha256: str, scorer_version: str) -> StoredRow | None:
        with self._connect() as con:
            rec = con.execute("SELECT id FROM submissions WHERE answers_sha256 = ? AND split_sha256 = ? "
                              "AND scorer_version = ?", (answers_sha256, split_sha256, scorer_version)).fetchone()
        return None if rec is None else self.get(rec[0])

    def answers(self, row_id: int) -> list[dict]:
        """The stored answers: canonical rows `[{"video", "task", "response"[, "fields"]}]`."""
        with self._connect() as con:
            rec = con.execute("SELECT answers_zlib FROM submissions WHERE id = ?", (int(row_id),)).fetchone()
        if rec is None:
            raise KeyError(f"no leaderboard row #{row_id}")
        return unpack_answers(rec[0])

    # --- writing --------------------------------------------------------------------------------

    def add(self, *, model: str, answers_sha256: str, files_sha256: str, files: Sequence[tuple[str, str]],
            result: dict, answers: list[dict], link: str = "", notes: str = "",
            provenance: dict | None = None) -> tuple[StoredRow, bool]:
        """Insert a scored submission; (row, True), or (the existing row, False) for known answers."""
        split_sha256 = result["split"]["sha256"]
        version = str(result["scorer_version"])
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO submissions (model, link, notes, submitted_at, answers_sha256, files_sha256, "
                "files_json, split_sha256, scorer_version, provenance_json, result_json, answers_zlib) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (answers_sha256, split_sha256, scorer_version) DO NOTHING",
                (model, link, notes, now_utc(), answers_sha256, files_sha256, json.dumps([list(f) for f in files]),
                 split_sha256, version, json.dumps(provenance) if provenance else "", json.dumps(result),
                 pack_answers(answers)))
            added = cur.rowcount == 1
        row = self.find(answers_sha256, split_sha256, version)
        assert row is not None, "a row just inserted or found by its unique key must exist"
        return row, added

    def update_result(self, row_id: int, result: dict) -> None:
        """Replace a row's scores after re-scoring (its split and scorer version follow the result)."""
        with self._write() as con:
            con.execute("UPDATE submissions SET result_json = ?, split_sha256 = ?, scorer_version = ?, "
                        "rescored_at = ?, revision = revision + 1 WHERE id = ?",
                        (json.dumps(result), result["split"]["sha256"], str(result["scorer_version"]),
                         now_utc(), int(row_id)))

    def set_hidden(self, row_id: int, hidden: bool, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._write() as con:
            changed = con.execute("UPDATE submissions SET hidden = ? WHERE id = ?",
                                  (int(bool(hidden)), int(row_id))).rowcount
        if not changed:
            raise KeyError(f"no leaderboard row #{row_id}")

    def delete(self, row_id: int, *, admin_token: str | None) -> None:
        check_admin(admin_token)
        with self._write() as con:
            changed = con.execute("DELETE FROM submissions WHERE id = ?", (int(row_id),)).rowcount
        if not changed:
            raise KeyError(f"no leaderboard row #{row_id}")

    def snapshot(self, dest: Path | str) -> Path:
        """A consistent single-file copy (SQLite backup API: includes what is still in the WAL)."""
        dest = Path(dest)
        with self._connect() as con, contextlib.closing(sqlite3.connect(dest)) as out:
            con.backup(out)
        return dest


def _migrate_v1(con: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in the open transaction: identity by canonical answers, provenance, revision.

    Every row is kept with its id (and the id sequence, so ids are never reused). Rows that
    schema 1 kept apart although their answers are the same (e.g. shuffled files) all stay; the
    later ones get a marked identity, so new submissions point at the first.
    """
    con.execute("ALTER TABLE submissions RENAME TO submissions_v1")
    con.execute(_SUBMISSIONS)
    seen: dict[tuple, int] = {}
    for rec in con.execute("SELECT id, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, "
                           "scorer_version, result_json, answers_zlib, hidden, rescored_at "
                           "FROM submissions_v1 ORDER BY id").fetchall():
        (id_, model, link, notes, submitted_at, files_sha256, files_json, split_sha256, version, result_json,
         blob, hidden, rescored_at) = rec
        rows = sorted(unpack_answers(blob), key=lambda r: (r["video"], r["task"]))
        digest = answers_digest(rows)
        key = (digest, split_sha256, version)
        if key in seen:
            digest = f"{digest}:same-answers-as-#{seen[key]}"
        seen.setdefault(key, id_)
        con.execute("INSERT INTO submissions (id, model, link, notes, submitted_at, answers_sha256, files_sha256, "
                    "files_json, split_sha256, scorer_version, hidden, rescored_at, result_json, answers_zlib) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (id_, model, link, notes, submitted_at, digest, files_sha256, files_json, split_sha256,
                     version, hidden, rescored_at, result_json, blob))
    old = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'submissions_v1'").fetchone()
    con.execute("DROP TABLE submissions_v1")
    if old is not None:
        con.execute("DELETE FROM sqlite_sequence WHERE name = 'submissions'")
        con.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('submissions', ?)", (old[0],))


def check_admin(token: str | None) -> None:
    """Admin actions need `CRASHCHAT_ADMIN_TOKEN` set and the same token given."""
    expected = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
    if not expected:
        raise PermissionError("admin actions are disabled: CRASHCHAT_ADMIN_TOKEN is not set")
    if not isinstance(token, str) or not token or not hmac.compare_digest(token.encode("utf-8"),
                                                                         expected.encode("utf-8")):
        raise PermissionError("wrong admin token")


# --- the submission pipeline --------------------------------------------------------------------

# Characters that change how text around them is shown (bidi controls) or are invisible: a
# name holding them can pass for another model's name.
_FORMAT_CATEGORIES = ("Cf", "Cc", "Co", "Cs", "Cn", "Zl", "Zp")


def _bad_character(text: str, allowed: str = "") -> str | None:
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in _FORMAT_CATEGORIES or not char.isprintable():
            name = unicodedata.name(char, "unnamed character")
            return f"U+{ord(char):04X} ({name})"
    return None


def check_entry(model: str, link: str = "", notes: str = "") -> None:
    """Validate the form: model name 1-80 printable characters; optional http(s) link; notes."""
    if not isinstance(model, str) or not model.strip():
        raise SubmitError("model name: required (1-80 printable characters)")
    if len(model) > MAX_NAME:
        raise SubmitError(f"model name: {len(model)} characters, at most {MAX_NAME}")
    bad = _bad_character(model)
    if bad:
        raise SubmitError(f"model name: character {bad} is not allowed (no tabs, newlines, control, "
                          "bidi or invisible characters)")
    link = link or ""
    if not isinstance(link, str) or not isinstance(notes or "", str):
        raise SubmitError("link and notes: text expected")
    if link:
        if len(link) > MAX_LINK or _bad_character(link) or " " in link:
            raise SubmitError(f"link: one URL without spaces or invisible characters, at most {MAX_LINK} characters")
        if not link.lower().startswith(("https://", "http://")):
            raise SubmitError("link: must start with https:// or http://")
    notes = notes or ""
    if len(notes) > MAX_NOTES:
        raise SubmitError(f"notes: {len(notes)} characters, at most {MAX_NOTES}")
    bad = _bad_character(notes, allowed="\n\t")
    if bad:
        raise SubmitError(f"notes: character {bad} is not allowed")


@dataclass(frozen=True)
class Upload:
    """The files of one submission, sorted into predictions and an optional provenance file."""

    predictions: list[Path]
    files: list[tuple[str, str]]
    """(name, SHA-256) of each prediction file."""
    files_sha256: str
    """Digest of the set of prediction files (any order gives the same digest)."""
    provenance: dict | None
    """The validated provenance (`crashchat.provenance`), when a `.meta.json` came with them."""


def read_upload(paths: Sequence[str | os.PathLike], *, provenance_path: str | os.PathLike | None = None,
                max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
                max_request_bytes: int = MAX_REQUEST_BYTES) -> Upload:
    """Check count and size limits (before reading any content), then read the provenance file.

    A file named `*.meta.json` among `paths` is the provenance file (`crashchat.provenance`), as
    is `provenance_path`; at most one. Raises `SubmitError` (limits) or `ProvenanceError`.
    """
    paths = [Path(p) for p in paths or []]
    metas = [p for p in paths if p.name.lower().endswith(provenance_mod.SUFFIX)]
    if provenance_path:
        metas.append(Path(provenance_path))
    predictions = [p for p in paths if p not in metas]
    if len(metas) > 1:
        raise SubmitError(f"files: {len(metas)} provenance files ({', '.join(p.name for p in metas)}); at most one")
    if not predictions:
        raise SubmitError("files: no prediction file given")
    if len(predictions) + len(metas) > max_files:
        raise SubmitError(f"files: {len(predictions) + len(metas)} files, at most {max_files}")
    total = 0
    for path in predictions + metas:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise SubmitError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
        limit = provenance_mod.MAX_BYTES if path in metas else max_bytes
        if size > limit:
            raise SubmitError(f"{path.name}: file is {size} bytes, over the {limit}-byte limit")
        total += size
    if total > max_request_bytes:
        raise SubmitError(f"files: {total} bytes together, over the {max_request_bytes}-byte limit of one submission")
    files = [(p.name, _sha256_file(p)) for p in predictions]
    digest = hashlib.sha256("\n".join(sorted(d for _, d in files)).encode()).hexdigest()
    meta = provenance_mod.loads(metas[0].read_bytes(), metas[0].name) if metas else None
    return Upload(predictions, files, digest, meta)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Outcome:
    row: StoredRow
    added: bool
    """False when the same answers were already scored on this split and scorer version."""
    result: dict
    """The scorer's JSON, plus a `leaderboard` block naming the row."""


def _with_row(result: dict, row: StoredRow, added: bool) -> dict:
    out = dict(result)
    out["leaderboard"] = {"row_id": row.id, "model": row.model, "added": added,
                          "answers_sha256": row.answers_sha256, "files_sha256": row.files_sha256,
                          "submitted_at": row.submitted_at, "provenance": row.provenance}
    return out


def validate(paths: Sequence[str | os.PathLike], split: Split, *, provenance_path: str | os.PathLike | None = None,
             max_bytes: int = MAX_BYTES) -> tuple[Upload, Submission]:
    """Read the files against the split (raises `SubmitError`, `SubmissionError` or `ProvenanceError`)."""
    upload = read_upload(paths, provenance_path=provenance_path, max_bytes=max_bytes)
    return upload, read_submission(upload.predictions, split, max_bytes=max_bytes)


def submit(store: Store, paths: Sequence[str | os.PathLike], model: str, *, split: Split,
           link: str = "", notes: str = "", provenance_path: str | os.PathLike | None = None,
           bootstrap: int = 1000, seed: int = 0, max_bytes: int = MAX_BYTES) -> Outcome:
    """Validate, score and store one submission; known answers point at their existing row.

    Nothing is stored unless every file (and the provenance file) reads. Answers that match a
    row an admin hid are refused, so that nothing of the hidden row comes back.
    """
    check_entry(model, link, notes)
    upload, submission = validate(paths, split, provenance_path=provenance_path, max_bytes=max_bytes)
    answers = canonical_rows(submission.answers)
    digest = answers_digest(answers)
    existing = store.find(digest, split.sha256, SCORER_VERSION)
    if existing is None:  # skip the scoring work for known answers
        result = score(submission, split, bootstrap=bootstrap, seed=seed)
        existing, added = store.add(model=model, link=link or "", notes=notes or "", answers_sha256=digest,
                                    files_sha256=upload.files_sha256, files=upload.files, result=result,
                                    answers=answers, provenance=upload.provenance)
    else:
        added = False
    if existing.hidden and not added:
        raise SubmitError("files: these answers were already submitted and that row was hidden by an admin; "
                          "no row added")
    return Outcome(existing, added, _with_row(existing.result, existing, added))


def stored_submission(store: Store, row_id: int, split: Split) -> Submission:
    """Rebuild a row's submission from its stored answers (for re-scoring, compare, failures)."""
    return read_canonical(store.answers(row_id), split, f"row-{row_id}")


def rescore(store: Store, split: Split, *, force: bool = False, bootstrap: int = 1000,
            seed: int = 0) -> list[str]:
    """Re-score rows scored by another scorer version or split (all rows with `force`).

    Returns one line per row touched. A row whose answers no longer read (a stricter reader) or
    whose new key collides with another row (the same answers already scored under this scorer
    and split) keeps its old scores, and the line says why.
    """
    report = []
    for row in store.rows(include_hidden=True):
        if not force and row.scorer_version == SCORER_VERSION and row.split_sha256 == split.sha256:
            continue
        try:
            result = score(stored_submission(store, row.id, split), split, bootstrap=bootstrap, seed=seed)
            # What only the submitted files knew: their names and digests, and (same split) how
            # many of their records matched no video of it.
            result["files"] = row.result.get("files", result["files"])
            if row.split_sha256 == split.sha256:
                for task, counts in result["validation"].items():
                    counts["unknown"] = row.result.get("validation", {}).get(task, {}).get("unknown", 0)
            store.update_result(row.id, result)
        except SubmissionError as exc:
            report.append(f"#{row.id} {row.model!r}: kept old scores: answers unreadable: {exc}")
            continue
        except sqlite3.IntegrityError:
            report.append(f"#{row.id} {row.model!r}: kept old scores: the same answers were already "
                          f"scored under scorer {SCORER_VERSION} on this split")
            continue
        report.append(f"#{row.id} {row.model!r}: re-scored (scorer {row.scorer_version} -> "
                      f"{SCORER_VERSION}, split {row.split_sha256[:12]} -> {split.sha256[:12]})")
    return report


# --- Hugging Face dataset sync -----------------------------------------------------------------


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
        every = float(os.environ.get("CRASHCHAT_SYNC_MINUTES") or 2)
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


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboard.store",
                                     description="Inspect and maintain the leaderboard database.")
    parser.add_argument("--db", default=None, help="database file (default: CRASHCHAT_DB or the user data dir)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list verified rows (hidden ones marked)")
    p = sub.add_parser("rescore", help="re-score rows from another scorer version or split")
    p.add_argument("--split-dir", default=None)
    p.add_argument("--force", action="store_true", help="re-score every row")
    p.add_argument("--bootstrap", type=int, default=1000)
    for name in ("hide", "unhide", "delete"):
        p = sub.add_parser(name, help=f"{name} a row (needs CRASHCHAT_ADMIN_TOKEN in the environment)")
        p.add_argument("row_id", type=int)
    args = parser.parse_args(argv)
    try:
        store = Store(args.db)
        if args.command == "list":
            rows = store.rows(include_hidden=True)
            if not rows:
                print(f"no verified rows yet in {store.path}")
            for row in rows:
                flag = " (hidden)" if row.hidden else ""
                print(f"#{row.id}\t{row.model!r}{flag}\tscorer {row.scorer_version}\tsplit "
                      f"{row.split_sha256[:12]}\t{row.submitted_at}\tanswers {row.answers_sha256[:16]}")
        elif args.command == "rescore":
            split = load_split(args.split_dir)
            lines = rescore(store, split, force=args.force, bootstrap=args.bootstrap)
            print("\n".join(lines) if lines else "every row is current")
        else:
            token = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
            if args.command == "delete":
                store.delete(args.row_id, admin_token=token)
            else:
                store.set_hidden(args.row_id, args.command == "hide", admin_token=token)
            print(f"#{args.row_id}: {args.command} done")
    except (StoreError, SplitError, PermissionError, KeyError, sqlite3.DatabaseError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

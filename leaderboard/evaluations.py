"""The evaluation-request queue: Hub model ids the leaderboard evaluates itself, kept in its SQLite file.

A request goes `pending` -> `running` (a worker claimed it, holding a lease it renews) ->
`finished` (with the leaderboard row it produced) or `failed` (with a one-line reason). A lease
that runs out puts the request back to `pending` (the worker died or lost the network); after
`max_attempts` claims it ends `failed`. Claims are atomic (one `BEGIN IMMEDIATE` transaction), so
two workers never get the same request, and each claim gets its own lease token: a worker whose
lease ran out can no longer renew, finish or fail a request another worker now holds.

Before a request is queued the model is checked as the Open LLM Leaderboard checks its
submissions, each refusal one line naming the check (`RequestRefused`): the id's syntax, that it
exists on the Hub at that revision (resolved to a commit now, so the worker runs exactly what was
asked for), not gated or disabled, safetensors weights, a config that `AutoConfig` reads without
remote code, and a model type transformers runs as image-text-to-text (`crashchat.generic`
checks the processor's video support when a worker loads it). Local folders are refused unless
`CRASHCHAT_ALLOW_LOCAL_MODELS=1` (tests). The same model, commit and frame policy already
pending, running or finished answer with the existing request (a failed one may be asked again).

The table lives beside the submissions in `CRASHCHAT_DB` (so it syncs to the Hub with them) but
is created on its own (`CREATE TABLE IF NOT EXISTS`): it does not depend on the submissions
schema. Nothing here knows Gradio; `leaderboard.evaluation_api` is the endpoints' server side.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

STATUSES = ("pending", "running", "finished", "failed")
LEASE_SECONDS = 600.0
"""A worker renews its lease every third of this; a worker silent this long has lost the request."""
MAX_ATTEMPTS = 3
"""Claims of one request before it is given up (a model that kills every worker that loads it)."""
MAX_REASON = 300
MAX_SUBMITTER = 100
MAX_LIST = 500
ALLOW_LOCAL_ENV = "CRASHCHAT_ALLOW_LOCAL_MODELS"
WORKER_TOKEN_ENV = "CRASHCHAT_WORKER_TOKEN"


@dataclass(frozen=True)
class RequestFrames:
    """How the worker samples each clip (`predict --fps/--max-frames/--max-pixels`)."""

    fps: float
    max_frames: int
    max_pixels: int | None
    about: str


REQUEST_FRAMES = {
    "paper": RequestFrames(10.0, 96, None, "10 fps, at most 96 frames, as decoded (the paper's sampling)"),
    "paper-448px": RequestFrames(10.0, 96, 448 * 448, "10 fps, at most 96 frames, each at most 448x448 pixels "
                                                       "(for models whose memory does not take full frames)"),
}
DEFAULT_FRAMES = "paper"

_ID_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
_COMMIT = re.compile(r"[0-9a-f]{40}")

_TABLE = """
CREATE TABLE IF NOT EXISTS evaluation_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,                 -- the Hub's canonical id (or a local folder, when allowed)
    revision TEXT NOT NULL,              -- as requested: a branch, tag or commit
    commit_sha TEXT NOT NULL,            -- resolved when requested; '' for a local folder
    frames TEXT NOT NULL,                -- a REQUEST_FRAMES key
    submitter TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL DEFAULT '',
    lease TEXT NOT NULL DEFAULT '',      -- the current claim's token; '' when nobody holds it
    lease_expires REAL NOT NULL DEFAULT 0,  -- seconds since the epoch
    attempts INTEGER NOT NULL DEFAULT 0,
    row_id INTEGER                       -- the leaderboard row it produced
)"""
# One live request per model, commit and frame policy; failed ones may be asked again.
_LIVE_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS evaluation_requests_live ON evaluation_requests "
               "(model COLLATE NOCASE, commit_sha, frames) WHERE status != 'failed'")
_COLUMNS = ("id, model, revision, commit_sha, frames, submitter, status, reason, created_at, started_at, "
            "finished_at, worker, lease_expires, attempts, row_id")


class RequestRefused(ValueError):
    """A request that is not queued; one line naming the check that failed."""


class LeaseError(RuntimeError):
    """A worker call for a request it does not hold (any more); one line."""


@dataclass(frozen=True)
class EvaluationRequest:
    id: int
    model: str
    revision: str
    commit: str
    frames: str
    submitter: str
    status: str
    reason: str
    created_at: str
    started_at: str
    finished_at: str
    worker: str
    lease_expires: float
    attempts: int
    row_id: int | None

    @property
    def policy(self) -> RequestFrames:
        return REQUEST_FRAMES[self.frames]

    def public(self) -> dict:
        """What `/evaluation_queue` shows (no submitter: who asked is the identity layer's to show)."""
        out = asdict(self)
        out["request_id"] = out.pop("id")
        out.pop("submitter")
        out.pop("lease_expires")
        return out


def _request(rec: tuple) -> EvaluationRequest:
    return EvaluationRequest(*rec)


ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime(ISO)


def one_line(text: object, limit: int = MAX_REASON) -> str:
    """Text safe to store and show: control and format characters become spaces, one line, bounded.

    >>> one_line("out of memory\\n  at line 3\\u202e")
    'out of memory at line 3'
    """
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in str(text))
    cleaned = " ".join(cleaned.split())
    return cleaned[:limit - 1] + "…" if len(cleaned) > limit else cleaned


def default_path() -> Path:
    """The leaderboard's database (`CRASHCHAT_DB`, else the user data folder)."""
    from leaderboard.store import default_db_path  # the store owns the rule; imported late (it is heavy)

    return default_db_path()


def check_worker_token(token: object) -> None:
    """Worker calls need `CRASHCHAT_WORKER_TOKEN` set on the server and the same token (constant-time)."""
    expected = os.environ.get(WORKER_TOKEN_ENV)
    if not expected:
        raise PermissionError(f"worker calls are disabled: {WORKER_TOKEN_ENV} is not set on the server")
    if not isinstance(token, str) or not token or not hmac.compare_digest(token.encode("utf-8"),
                                                                         expected.encode("utf-8")):
        raise PermissionError("wrong worker token")


# --- the checks before a request is queued ------------------------------------------------------


def _hub_info(model_id: str, revision: str):
    from huggingface_hub import HfApi

    return HfApi().model_info(model_id, revision=revision)


def _auto_config(source: str, revision: str | None):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return one_line(text.splitlines()[0] if text else type(exc).__name__, 200)


def check_model(model_id: object, revision: object = "main", *, hub_info: Callable | None = None,
                config_loader: Callable | None = None) -> tuple[str, str, str]:
    """(canonical id, revision, commit) of a model the workers can evaluate; else `RequestRefused`.

    `hub_info(id, revision)` stands in for `HfApi().model_info` and `config_loader(source,
    revision)` for `AutoConfig.from_pretrained` in tests.
    """
    hub_info = hub_info or _hub_info
    config_loader = config_loader or _auto_config
    if not isinstance(model_id, str) or not model_id.strip():
        raise RequestRefused("model id: required (owner/name, as on the Hugging Face Hub)")
    model_id = model_id.strip()
    revision = (revision.strip() if isinstance(revision, str) else "") or "main"
    local = os.environ.get(ALLOW_LOCAL_ENV) == "1" and model_id.startswith("/") and len(model_id) < 1000
    if local:
        folder = Path(model_id)
        if not (folder / "config.json").is_file():
            raise RequestRefused(f"model id: {model_id!r} is not a folder with a config.json")
        if revision != "main":
            raise RequestRefused("revision: a local folder has no revisions")
        canonical, commit = str(folder.resolve()), ""
        source, at = canonical, None
    else:
        parts = model_id.split("/")
        if (len(model_id) > 200 or len(parts) != 2 or not all(_ID_PART.fullmatch(p) for p in parts)
                or "--" in model_id or ".." in model_id):
            shown = one_line(model_id, 80)
            paths = ("or an absolute path to a local folder (allowed here: " + ALLOW_LOCAL_ENV + "=1)"
                     if os.environ.get(ALLOW_LOCAL_ENV) == "1" else "local paths are not accepted")
            raise RequestRefused(f"model id: {shown!r} is not a Hub model id (owner/name: letters, digits, "
                                 f"'-', '_', '.'; {paths})")
        if not _REVISION.fullmatch(revision) or ".." in revision:
            raise RequestRefused(f"revision: {one_line(revision, 80)!r} is not a branch, tag or commit name")
        info = _checked_info(hub_info, model_id, revision)
        canonical, commit = str(getattr(info, "id", None) or model_id), str(getattr(info, "sha", "") or "")
        if not _COMMIT.fullmatch(commit):
            raise RequestRefused(f"exists: the Hub gave no commit for {model_id}@{revision}")
        siblings = getattr(info, "siblings", None)
        if siblings is not None and not any(str(getattr(s, "rfilename", "")).endswith(".safetensors")
                                            for s in siblings):
            raise RequestRefused(f"weights: {canonical}@{commit[:12]} has no .safetensors files (pickled "
                                 "weights are not loaded)")
        source, at = canonical, commit
    try:
        config = config_loader(source, at)
    except Exception as exc:  # noqa: BLE001 - remote code, no config, unknown type: one line each
        text = str(exc)
        if "trust_remote_code" in text or "remote code" in text:
            raise RequestRefused(f"config: {canonical} needs its own Python code (trust_remote_code), which the "
                                 "workers do not run") from None
        raise RequestRefused(f"config: AutoConfig cannot read {canonical} ({_first_line(exc)})") from None
    family = getattr(config, "model_type", None) or type(config).__name__
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    # The rule `crashchat.generic.check_video_support` applies at load time (it also checks the processor).
    if family not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise RequestRefused(f"video model: {canonical} is a {family!r} model, not an image-text-to-text "
                             "(video) model in transformers")
    return canonical, revision, commit


def _checked_info(hub_info: Callable, model_id: str, revision: str):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = hub_info(model_id, revision)
    except GatedRepoError:
        raise RequestRefused(f"gated: {model_id} is gated; the workers cannot download it") from None
    except RepositoryNotFoundError:
        raise RequestRefused(f"exists: no public model {model_id} on the Hub") from None
    except RevisionNotFoundError:
        raise RequestRefused(f"exists: {model_id} has no revision {revision!r}") from None
    except Exception as exc:  # noqa: BLE001 - network or Hub trouble: said, not queued
        raise RequestRefused(f"exists: cannot check {model_id} on the Hub now ({type(exc).__name__}: "
                             f"{_first_line(exc)}); try again later") from None
    if getattr(info, "gated", False):
        raise RequestRefused(f"gated: {model_id} is gated; the workers cannot download it")
    if getattr(info, "disabled", False):
        raise RequestRefused(f"exists: {model_id} is disabled on the Hub")
    if getattr(info, "private", False):
        raise RequestRefused(f"exists: {model_id} is private")
    return info


# --- the queue ----------------------------------------------------------------------------------


class EvaluationQueue:
    """The requests table. Cheap to create; every operation opens its own connection (thread-safe,
    and safe across processes sharing the file)."""

    def __init__(self, path: str | os.PathLike | None = None, *, clock: Callable[[], float] = time.time,
                 lease_seconds: float = LEASE_SECONDS, max_attempts: int = MAX_ATTEMPTS,
                 timeout: float = 60.0) -> None:
        if not lease_seconds > 0 or max_attempts < 1:
            raise ValueError("lease_seconds must be positive and max_attempts at least 1")
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.clock, self.lease_seconds, self.max_attempts, self.timeout = clock, lease_seconds, max_attempts, timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as con:
            con.execute(_TABLE)
            con.execute(_LIVE_INDEX)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading (BEGIN IMMEDIATE): writers queue, never interleave."""
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _get(self, con: sqlite3.Connection, request_id: int) -> EvaluationRequest | None:
        rec = con.execute(f"SELECT {_COLUMNS} FROM evaluation_requests WHERE id = ?", (int(request_id),)).fetchone()
        return None if rec is None else _request(rec)

    def _stored(self, con: sqlite3.Connection, request_id: int | None) -> EvaluationRequest:
        """A request this connection has just written (so it exists)."""
        found = None if request_id is None else self._get(con, request_id)
        if found is None:
            raise LookupError(f"evaluation request #{request_id} vanished inside its own transaction")
        return found

    def get(self, request_id: int) -> EvaluationRequest | None:
        with self._connect() as con:
            return self._get(con, request_id)

    # --- asking ---------------------------------------------------------------------------------

    def request(self, model_id: object, revision: object = "main", frames: object = DEFAULT_FRAMES, *,
                submitter: str = "", hub_info: Callable | None = None,
                config_loader: Callable | None = None,
                admit: Callable[[], None] | None = None) -> tuple[EvaluationRequest, bool]:
        """Queue a checked request: (request, True), or (the live one for the same model, commit and
        frame policy, False). Raises `RequestRefused` naming the failed check. `admit` runs only
        when a new request is about to be stored, inside the write transaction (the per-submitter
        limit: asking again for a queued model costs nothing, and two racing requests are counted
        one after the other); it refuses by raising."""
        frames = DEFAULT_FRAMES if frames is None or frames == "" else frames
        if not isinstance(frames, str) or frames.strip() not in REQUEST_FRAMES:
            raise RequestRefused(f"frames: {one_line(frames, 40)!r} is not a frame policy; choose from "
                                 f"{', '.join(REQUEST_FRAMES)}")
        frames = frames.strip()
        submitter = one_line(submitter or "", MAX_SUBMITTER)
        if isinstance(revision, str) and _COMMIT.fullmatch(revision.strip()) and isinstance(model_id, str):
            known = self._live(model_id.strip(), revision.strip(), frames)  # a pinned commit: no Hub call needed
            if known is not None:
                return known, False
        model, revision, commit = check_model(model_id, revision, hub_info=hub_info, config_loader=config_loader)
        now = self.clock()
        with self._write() as con:
            known = self._live(model, commit, frames, con)
            if known is not None:
                return known, False
            if admit is not None:
                admit()
            cur = con.execute("INSERT INTO evaluation_requests (model, revision, commit_sha, frames, submitter, "
                              "status, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                              (model, revision, commit, frames, submitter, iso(now)))
            return self._stored(con, cur.lastrowid), True

    def _live(self, model: str, commit: str, frames: str, con: sqlite3.Connection | None = None):
        query = (f"SELECT {_COLUMNS} FROM evaluation_requests WHERE model = ? COLLATE NOCASE AND commit_sha = ? "
                 "AND frames = ? AND status != 'failed' ORDER BY id LIMIT 1")
        if con is not None:
            rec = con.execute(query, (model, commit, frames)).fetchone()
        else:
            with self._connect() as own:
                rec = own.execute(query, (model, commit, frames)).fetchone()
        return None if rec is None else _request(rec)

    def request_times(self, submitter: str, since: datetime) -> list[datetime]:
        """When `submitter` made requests, from `since` on (timezone-aware; for `identity.check_rate`)."""
        with self._connect() as con:
            found = con.execute("SELECT created_at FROM evaluation_requests WHERE submitter = ? AND created_at >= ?",
                                (one_line(submitter, MAX_SUBMITTER), iso(since.timestamp()))).fetchall()
        return [datetime.strptime(t, ISO).replace(tzinfo=timezone.utc) for (t,) in found]

    # --- working --------------------------------------------------------------------------------

    def _expire(self, con: sqlite3.Connection, now: float) -> None:
        """Running requests whose lease ran out: back to pending, or failed after max_attempts."""
        stale = con.execute("SELECT id, attempts, worker FROM evaluation_requests WHERE status = 'running' "
                            "AND lease_expires < ?", (now,)).fetchall()
        for id_, attempts, worker in stale:
            who = one_line(worker, 80) or "a worker"
            if attempts >= self.max_attempts:
                con.execute("UPDATE evaluation_requests SET status = 'failed', lease = '', finished_at = ?, "
                            "reason = ? WHERE id = ?",
                            (iso(now), f"gave up after {attempts} attempts: the last worker ({who}) stopped "
                             "renewing its lease", id_))
            else:
                con.execute("UPDATE evaluation_requests SET status = 'pending', lease = '', worker = '', "
                            "started_at = '', reason = ? WHERE id = ?",
                            (f"attempt {attempts} stopped ({who} stopped renewing its lease); queued again", id_))

    def claim(self, worker: str) -> tuple[EvaluationRequest, str] | None:
        """The oldest pending request, now running for `worker`, and its lease token; None when none."""
        worker = one_line(worker, 80) or "worker"
        now = self.clock()
        with self._write() as con:
            self._expire(con, now)
            rec = con.execute("SELECT id FROM evaluation_requests WHERE status = 'pending' ORDER BY id LIMIT 1").fetchone()
            if rec is None:
                return None
            lease = secrets.token_urlsafe(24)
            con.execute("UPDATE evaluation_requests SET status = 'running', worker = ?, lease = ?, lease_expires = ?, "
                        "attempts = attempts + 1, started_at = ?, reason = '' WHERE id = ?",
                        (worker, lease, now + self.lease_seconds, iso(now), rec[0]))
            return self._stored(con, rec[0]), lease

    def _held(self, con: sqlite3.Connection, request_id: object, lease: object) -> EvaluationRequest:
        # API clients send numbers as JSON: an int, a whole float or a digit string.
        if isinstance(request_id, bool) or not isinstance(request_id, (int, float, str)) or (
                isinstance(request_id, float) and not request_id.is_integer()):
            raise LeaseError(f"request id: expected a number, got {one_line(request_id, 40)!r}")
        try:
            number = int(request_id)
        except ValueError:
            raise LeaseError(f"request id: expected a number, got {one_line(request_id, 40)!r}") from None
        found = self._get(con, number)
        if found is None:
            raise LeaseError(f"request #{number}: no such request")
        held = con.execute("SELECT lease FROM evaluation_requests WHERE id = ?", (number,)).fetchone()[0]
        if (found.status != "running" or not isinstance(lease, str) or not held
                or not hmac.compare_digest(held.encode(), lease.encode())):
            raise LeaseError(f"request #{number}: not held by this lease (it is {found.status}; a lease that "
                             "ran out is handed to another worker)")
        return found

    def holding(self, request_id: object, lease: object) -> EvaluationRequest:
        """The request if `lease` holds it now; else `LeaseError`."""
        with self._connect() as con:
            return self._held(con, request_id, lease)

    def renew(self, request_id: object, lease: object) -> EvaluationRequest:
        """Extend the lease by `lease_seconds` from now."""
        now = self.clock()
        with self._write() as con:
            found = self._held(con, request_id, lease)
            con.execute("UPDATE evaluation_requests SET lease_expires = ? WHERE id = ?",
                        (now + self.lease_seconds, found.id))
            return self._stored(con, found.id)

    def finish(self, request_id: object, lease: object, row_id: int) -> EvaluationRequest:
        """Mark a held request finished with the leaderboard row it produced."""
        now = self.clock()
        with self._write() as con:
            found = self._held(con, request_id, lease)
            con.execute("UPDATE evaluation_requests SET status = 'finished', lease = '', finished_at = ?, row_id = ?, "
                        "reason = '' WHERE id = ?", (iso(now), int(row_id), found.id))
            return self._stored(con, found.id)

    def fail(self, request_id: object, lease: object, reason: object) -> EvaluationRequest:
        """Mark a held request failed, with a one-line reason (bounded, control characters removed)."""
        now = self.clock()
        text = one_line(reason) or "failed (no reason given)"
        with self._write() as con:
            found = self._held(con, request_id, lease)
            con.execute("UPDATE evaluation_requests SET status = 'failed', lease = '', finished_at = ?, reason = ? "
                        "WHERE id = ?", (iso(now), text, found.id))
            return self._stored(con, found.id)

    # --- showing --------------------------------------------------------------------------------

    def list(self, limit: int = MAX_LIST) -> list[dict]:
        """The newest requests first, as `/evaluation_queue` shows them; pending ones with their
        place in the queue (1: next). Leases that ran out are settled first, so the list is current."""
        limit = max(1, min(int(limit), MAX_LIST))
        with self._write() as con:
            self._expire(con, self.clock())
            recs = con.execute(f"SELECT {_COLUMNS} FROM evaluation_requests ORDER BY id DESC LIMIT ?",
                               (limit,)).fetchall()
            pending = [r[0] for r in con.execute("SELECT id FROM evaluation_requests WHERE status = 'pending' "
                                                 "ORDER BY id").fetchall()]
        place = {id_: i for i, id_ in enumerate(pending, start=1)}
        out = []
        for rec in recs:
            item = _request(rec).public()
            item["position"] = place.get(item["request_id"])
            out.append(item)
        return out

"""The evaluation-request queue (`leaderboard.evaluations`): checks before queuing (the Hub and
AutoConfig through stand-ins, never the network), duplicates, atomic claims raced by threads and
by processes, leases that run out on an injected clock, and the worker token."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from leaderboard import evaluations
from leaderboard.evaluations import EvaluationQueue, LeaseError, RequestRefused

REPO = Path(__file__).resolve().parents[1]
SHA = "a" * 40
OTHER_SHA = "b" * 40


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _response():
    return SimpleNamespace(headers={}, request=None)


class FakeHub:
    """`HfApi().model_info` for a few made-up repositories."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.repos = {
            "Qwen/Qwen2-VL-2B-Instruct": {"main": SHA, "v2": OTHER_SHA},
            "org/pickled": {"main": SHA},
            "org/gated-manual": {"main": SHA},
            "org/remote-code": {"main": SHA},
            "org/llama": {"main": SHA},
            "org/noconfig": {"main": SHA},
        }

    def __call__(self, model_id: str, revision: str):
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

        self.calls.append((model_id, revision))
        if model_id == "org/gated":
            raise GatedRepoError("gated", response=_response())
        if model_id == "org/offline":
            raise ConnectionError("Failed to resolve 'huggingface.co'\nmore")
        canonical = next((k for k in self.repos if k.lower() == model_id.lower()), None)
        if canonical is None:
            raise RepositoryNotFoundError("404", response=_response())
        sha = self.repos[canonical].get(revision) or (revision if revision in self.repos[canonical].values() else None)
        if sha is None:
            raise RevisionNotFoundError("404", response=_response())
        files = ["config.json", "model.bin"] if canonical == "org/pickled" else ["config.json", "model.safetensors"]
        return SimpleNamespace(id=canonical, sha=sha, gated="manual" if canonical == "org/gated-manual" else False,
                               private=False, disabled=False,
                               siblings=[SimpleNamespace(rfilename=f) for f in files])


def fake_config(source: str, revision: str | None):
    if source == "org/remote-code":
        raise ValueError("The repository org/remote-code contains custom code which must be executed to correctly "
                         "load the model. Please pass the argument `trust_remote_code=True` to allow custom code.")
    if source == "org/noconfig":
        raise OSError("org/noconfig does not appear to have a file named config.json.\nCheck the URL.")
    return SimpleNamespace(model_type="llama" if source == "org/llama" else "qwen2_vl")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def queue(tmp_path, clock) -> EvaluationQueue:
    return EvaluationQueue(tmp_path / "board.sqlite3", clock=clock, lease_seconds=60, max_attempts=3)


def ask(queue, hub, model="Qwen/Qwen2-VL-2B-Instruct", revision="main", frames="paper", **kwargs):
    return queue.request(model, revision, frames, hub_info=hub, config_loader=fake_config, **kwargs)


def test_a_request_is_resolved_to_a_commit_and_duplicates_point_at_it(queue, hub):
    first, added = ask(queue, hub, submitter="alice")
    assert added and first.status == "pending" and first.commit == SHA and first.revision == "main"
    assert first.model == "Qwen/Qwen2-VL-2B-Instruct" and first.frames == "paper" and first.attempts == 0
    again, added = ask(queue, hub, model="qwen/qwen2-vl-2b-instruct")  # the Hub's ids ignore case
    assert not added and again.id == first.id
    calls = len(hub.calls)
    pinned, added = ask(queue, hub, revision=SHA)  # a pinned commit finds its request without the Hub
    assert not added and pinned.id == first.id and len(hub.calls) == calls
    other_frames, added = ask(queue, hub, frames="paper-448px")
    other_revision, added2 = ask(queue, hub, revision="v2")
    assert added and added2 and len({first.id, other_frames.id, other_revision.id}) == 3
    assert other_revision.commit == OTHER_SHA and other_revision.revision == "v2"


def test_finished_is_a_duplicate_failed_is_not(queue, hub):
    first, _ = ask(queue, hub)
    request, lease = queue.claim("w1")
    queue.finish(request.id, lease, row_id=7)
    assert ask(queue, hub)[0].id == first.id
    second, _ = ask(queue, hub, frames="paper-448px")
    request, lease = queue.claim("w1")
    queue.fail(request.id, lease, "out of memory")
    retried, added = ask(queue, hub, frames="paper-448px")
    assert added and retried.id != second.id and retried.status == "pending"


@pytest.mark.parametrize("model, revision, frames, message", [
    ("", "main", "paper", "model id: required"),
    ("../etc/passwd", "main", "paper", "model id: '../etc/passwd' is not a Hub model id"),
    ("a/b/c", "main", "paper", "model id: 'a/b/c' is not a Hub model id"),
    ("/tmp/model", "main", "paper", "model id: '/tmp/model' is not a Hub model id"),
    ("owner/na--me", "main", "paper", "model id: 'owner/na--me' is not a Hub model id"),
    ("owner/name\u202e", "main", "paper", "model id: 'owner/name' is not a Hub model id"),
    ("Qwen/Qwen2-VL-2B-Instruct", "a..b", "paper", "revision: 'a..b' is not a branch, tag or commit name"),
    ("Qwen/Qwen2-VL-2B-Instruct", "main", "nope", "frames: 'nope' is not a frame policy; choose from paper"),
    ("Qwen/Qwen2-VL-2B-Instruct", "main", 3, "frames: '3' is not a frame policy"),
    ("org/missing", "main", "paper", "exists: no public model org/missing on the Hub"),
    ("Qwen/Qwen2-VL-2B-Instruct", "v9", "paper", "exists: Qwen/Qwen2-VL-2B-Instruct has no revision 'v9'"),
    ("org/offline", "main", "paper", "exists: cannot check org/offline on the Hub now (ConnectionError: Failed"),
    ("org/gated", "main", "paper", "gated: org/gated is gated"),
    ("org/gated-manual", "main", "paper", "gated: org/gated-manual is gated"),
    ("org/pickled", "main", "paper", "weights: org/pickled@aaaaaaaaaaaa has no .safetensors files"),
    ("org/remote-code", "main", "paper", "config: org/remote-code needs its own Python code (trust_remote_code)"),
    ("org/noconfig", "main", "paper", "config: AutoConfig cannot read org/noconfig (org/noconfig does not appear"),
    ("org/llama", "main", "paper", "video model: org/llama is a 'llama' model, not an image-text-to-text"),
])
def test_each_refusal_is_one_line_naming_the_check(queue, hub, model, revision, frames, message):
    with pytest.raises(RequestRefused) as exc:
        ask(queue, hub, model=model, revision=revision, frames=frames)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert queue.list() == []  # nothing stored


def test_local_folders_only_when_allowed(queue, tmp_path, monkeypatch):
    from transformers import Qwen2VLConfig

    folder = tmp_path / "tiny"
    Qwen2VLConfig().save_pretrained(folder)
    with pytest.raises(RequestRefused, match="is not a Hub model id"):
        queue.request(str(folder))
    monkeypatch.setenv("CRASHCHAT_ALLOW_LOCAL_MODELS", "1")
    request, added = queue.request(str(folder))  # the real AutoConfig reads the folder, offline
    assert added and request.model == str(folder.resolve()) and request.commit == ""
    assert queue.request(str(folder))[0].id == request.id
    with pytest.raises(RequestRefused, match="revision: a local folder has no revisions"):
        queue.request(str(folder), "v1")
    with pytest.raises(RequestRefused, match="is not a folder with a config.json"):
        queue.request(str(tmp_path))


def test_claims_take_the_oldest_and_leases_guard_every_call(queue, hub, clock):
    a, _ = ask(queue, hub)
    clock.now += 1
    b, _ = ask(queue, hub, frames="paper-448px")
    got_a, lease_a = queue.claim("w1")
    got_b, lease_b = queue.claim("w2")
    assert (got_a.id, got_b.id) == (a.id, b.id) and queue.claim("w3") is None
    assert got_a.status == "running" and got_a.worker == "w1" and got_a.attempts == 1
    assert got_a.lease_expires == clock.now + 60
    clock.now += 30
    assert queue.renew(a.id, lease_a).lease_expires == clock.now + 60
    with pytest.raises(LeaseError, match=f"request #{a.id}: not held by this lease"):
        queue.renew(a.id, lease_b)
    with pytest.raises(LeaseError, match="no such request"):
        queue.renew(999, lease_a)
    done = queue.finish(a.id, lease_a, row_id=12)
    assert done.status == "finished" and done.row_id == 12 and done.finished_at
    with pytest.raises(LeaseError, match="it is finished"):
        queue.finish(a.id, lease_a, row_id=13)
    failed = queue.fail(b.id, lease_b, "predict exited with code 1:\n  error: CUDA out of memory\x1b[0m")
    assert failed.status == "failed" and failed.reason == "predict exited with code 1: error: CUDA out of memory [0m"
    with pytest.raises(LeaseError):
        queue.fail(b.id, lease_b, "again")


def test_an_expired_lease_returns_the_request_then_gives_up(queue, hub, clock):
    first, _ = ask(queue, hub)
    _, lease1 = queue.claim("dead-worker")
    clock.now += 61  # no renewal: the lease ran out
    [shown] = queue.list()
    assert shown["status"] == "pending" and shown["position"] == 1 and "dead-worker stopped renewing" in shown["reason"]
    again, lease2 = queue.claim("w2")
    assert again.id == first.id and again.attempts == 2 and lease2 != lease1
    with pytest.raises(LeaseError):  # the first worker came back: too late
        queue.finish(first.id, lease1, row_id=1)
    queue.renew(first.id, lease2)
    clock.now += 61
    _, lease3 = queue.claim("w3")
    clock.now += 61
    assert queue.claim("w4") is None  # three attempts ran out: given up
    gone = queue.get(first.id)
    assert gone.status == "failed" and gone.reason.startswith("gave up after 3 attempts: the last worker (w3)")
    with pytest.raises(LeaseError):
        queue.renew(first.id, lease3)


def test_the_list_is_newest_first_without_the_submitter(queue, hub, clock):
    a, _ = ask(queue, hub, submitter="alice")
    clock.now += 5
    b, _ = ask(queue, hub, frames="paper-448px", submitter="bob")
    rows = queue.list()
    assert [r["request_id"] for r in rows] == [b.id, a.id] and [r["position"] for r in rows] == [2, 1]
    assert "submitter" not in rows[0] and "lease" not in json.dumps(rows).replace("lease_", "")
    assert set(rows[0]) >= {"model", "revision", "commit", "frames", "status", "reason", "created_at", "started_at",
                            "finished_at", "worker", "attempts", "row_id"}
    def since(seconds: float) -> datetime:
        return datetime.fromtimestamp(clock() - seconds, timezone.utc)

    assert len(queue.request_times("alice", since(60))) == 1 and len(queue.request_times("bob", since(1))) == 1
    assert len(queue.request_times("alice", since(2))) == 0


def _fill(queue: EvaluationQueue, n: int) -> list[int]:
    """n pending rows written straight into the table (the checks are tested above)."""
    with queue._write() as con:
        for i in range(n):
            con.execute("INSERT INTO evaluation_requests (model, revision, commit_sha, frames, status, created_at) "
                        "VALUES (?, 'main', ?, 'paper', 'pending', '2026-01-01T00:00:00Z')", (f"org/m{i}", SHA))
    return [r["request_id"] for r in queue.list()]


def test_racing_threads_never_share_a_request(tmp_path):
    queue = EvaluationQueue(tmp_path / "q.sqlite3")
    ids = _fill(queue, 40)
    got: list[int] = []
    start = threading.Barrier(8)

    def claimer(name: str) -> None:
        start.wait()
        while (claimed := queue.claim(name)) is not None:
            got.append(claimed[0].id)

    threads = [threading.Thread(target=claimer, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(got) == sorted(ids)  # every request once, none twice


_CLAIMER = """
import sys, time
from leaderboard.evaluations import EvaluationQueue
queue = EvaluationQueue(sys.argv[1])
while time.time() < float(sys.argv[2]):
    pass  # start together
while (claimed := queue.claim(sys.argv[3])) is not None:
    print(claimed[0].id, flush=True)
"""


def test_racing_processes_never_share_a_request(tmp_path):
    import time

    path = tmp_path / "q.sqlite3"
    ids = _fill(EvaluationQueue(path), 60)
    go = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, str(path), str(go), f"p{i}"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    got = [int(line) for out in outputs for line in out.split()]
    assert sorted(got) == sorted(ids)


def test_the_table_sits_beside_the_submissions(tmp_path):
    from leaderboard.store import Store

    path = tmp_path / "board.sqlite3"
    store = Store(path)
    EvaluationQueue(path)
    assert Store(path).schema_version() == store.schema_version() and store.rows() == []
    import sqlite3

    with sqlite3.connect(path) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"submissions", "evaluation_requests"} <= tables


def test_worker_token(monkeypatch):
    monkeypatch.delenv("CRASHCHAT_WORKER_TOKEN", raising=False)
    with pytest.raises(PermissionError, match="worker calls are disabled: CRASHCHAT_WORKER_TOKEN is not set"):
        evaluations.check_worker_token("anything")
    monkeypatch.setenv("CRASHCHAT_WORKER_TOKEN", "s3cret")
    evaluations.check_worker_token("s3cret")
    for wrong in ("s3cre", "", None, 5, "s3cret "):
        with pytest.raises(PermissionError, match="wrong worker token"):
            evaluations.check_worker_token(wrong)

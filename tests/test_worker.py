"""`crashchat worker` against the endpoints' server side (`leaderboard.evaluation_api`) in-process,
through a fake transport and stand-in predict runs (no Gradio): a request whose worker died is
taken again after its lease; a lost lease stops the run; refused answers, out of memory, unusable
claims and clips that do not decode each fail the request with their reason. The gradio_client
transport is checked against a stand-in client. A real predict run on a tiny model, through the
running app and a worker process, is `tests/test_evaluation_tab.py`."""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from pathlib import Path

import pytest
from mini_split import VIDEOS, write_mini_split

from crashchat import provenance, worker
from crashchat.tasks import TASK_IDS
from crashchat.worker import Refused, Unreachable
from leaderboard.evaluation_api import API_ERRORS, EvaluationAPI
from leaderboard.evaluations import EvaluationQueue
from leaderboard.split import load_split
from leaderboard.submission import read_submission

TOKEN = "worker-token"
READABLE = [v for v in VIDEOS if v[2] == "ok"]


class LocalTransport:
    """The worker's transport, calling the server side directly; refusals become `Refused`."""

    def __init__(self, api: EvaluationAPI, token: str = TOKEN, *, renew_refused: bool = False):
        self.api, self.token, self.renew_refused = api, token, renew_refused
        self.calls: list[str] = []

    def _call(self, name: str, *args):
        self.calls.append(name)
        try:
            return getattr(self.api, name)(self.token, *args)
        except API_ERRORS as exc:
            raise Refused(str(exc)) from None

    def claim(self, worker_name):
        return self._call("claim_evaluation", worker_name)

    def renew(self, request_id, lease):
        if self.renew_refused:
            self.calls.append("renew_evaluation")
            raise Refused(f"request #{request_id}: not held by this lease")
        return self._call("renew_evaluation", request_id, lease)

    def finish(self, request_id, lease, files, provenance_block):
        return self._call("finish_evaluation", request_id, lease, [str(f) for f in files], provenance_block)

    def fail(self, request_id, lease, reason):
        return self._call("fail_evaluation", request_id, lease, reason)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A mini split whose every clip is readable (a worker refuses to start otherwise)."""
    return write_mini_split(tmp_path_factory.mktemp("worker-data"), READABLE)


@pytest.fixture
def board(tmp_path, data, monkeypatch):
    """A queue, the API over it, and a submit that reads the answers against the split as the store would."""
    monkeypatch.setenv("CRASHCHAT_WORKER_TOKEN", TOKEN)
    monkeypatch.setenv("CRASHCHAT_ALLOW_LOCAL_MODELS", "1")
    split = load_split(data[0])
    filed = []

    def submit(request, files, provenance_block):
        submission = read_submission([files[0]], split)
        filed.append((request, files, provenance_block, submission))
        return 100 + len(filed)

    queue = EvaluationQueue(tmp_path / "board.sqlite3", lease_seconds=0.6)
    api = EvaluationAPI(queue, submit, max_new_tokens=3)
    return queue, api, filed


def _cfg(tmp_path, data, **kwargs) -> worker.WorkerConfig:
    return worker.WorkerConfig(name="test-worker", split_dir=data[0], videos_dir=data[1], work_dir=tmp_path / "work",
                               gpus=1, device="cpu", max_new_tokens=3, poll_s=0.01, **kwargs)


def _local_model(tmp_path, name="model") -> Path:
    """A folder that passes the request checks without weights (a video model's config only)."""
    from transformers import Qwen2VLConfig

    folder = tmp_path / name
    Qwen2VLConfig().save_pretrained(folder)
    return folder


def _fake_runner(log_text: str = "", code: int = 0, revision: str | None = None, wait: threading.Event | None = None,
                 unreadable: tuple[str, ...] = ()):
    """A predict stand-in: writes answers and a provenance matching its command (or fails as told)."""
    seen = {}

    def run(command, log_path, *, timeout_s, stop):
        seen["command"], seen["stop"] = command, stop
        log_path.write_text(log_text)
        if wait is not None:
            stop.wait(10)
            seen["stopped"] = stop.is_set()
            return -15
        if code:
            return code
        args = dict(zip(command[3::2], command[4::2], strict=False)) if command[2] == "crashchat" else {}
        out = Path(command[command.index("--out") + 1])
        out.write_text(json.dumps({"video": "c0.mp4", "task": "crash_recognition", "response": "Yes"}) + "\n")
        model, _, commit = command[command.index("--model") + 1].partition("@")
        meta = provenance.example()
        meta["model"].update(id=model, revision=revision if revision is not None else (commit or None))
        meta["frames"].update(fps=10.0, max_frames=96, max_pixels=None)
        meta["generation"]["max_new_tokens"] = 3
        meta["run"].update(tasks=list(TASK_IDS), device="NVIDIA H200")
        out.with_name(out.name + provenance.SUFFIX).write_text(json.dumps(meta))
        out.with_name(out.name + ".errors.jsonl").write_text("".join(
            json.dumps({"video": v, "tasks": ["crash_recognition"], "error": "unreadable: x"}) + "\n" for v in unreadable))
        seen["args"] = args
        return 0

    run.seen = seen
    return run


def test_a_dead_workers_request_is_taken_again_after_its_lease(tmp_path, data, board):
    queue, api, filed = board
    model = _local_model(tmp_path)
    asked = api.request_evaluation(str(model))
    dead = LocalTransport(api).claim("dead-worker")  # claimed, then the worker died: no renewal
    assert dead["request_id"] == asked["request_id"] and dead["attempt"] == 1
    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), once=True) == 0  # the lease is still good
    assert queue.get(asked["request_id"]).status == "running"
    time.sleep(0.7)  # past the 0.6 s lease
    runner = _fake_runner()
    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), once=True, runner=runner) == 0
    done = queue.get(asked["request_id"])
    assert done.status == "finished" and done.attempts == 2 and done.worker == "test-worker"
    assert filed[0][2]["worker"]["gpu"] == "NVIDIA H200"
    assert "request-1-attempt-2" in " ".join(runner.seen["command"])
    with pytest.raises(Refused):  # the dead worker's lease is worthless now
        LocalTransport(api).finish(dead["request_id"], dead["lease"], [], {})


def test_a_lost_lease_stops_predict_and_sends_nothing(tmp_path, data, board):
    queue, api, filed = board
    asked = api.request_evaluation(str(_local_model(tmp_path)))
    transport = LocalTransport(api, renew_refused=True)
    runner = _fake_runner(wait=threading.Event())
    assert worker.serve(transport, _cfg(tmp_path, data), once=True, runner=runner) == 1
    assert runner.seen["stopped"] and "finish_evaluation" not in transport.calls and "fail_evaluation" not in transport.calls
    assert not filed and queue.get(asked["request_id"]).status == "running"  # its lease will run out


def test_answers_that_do_not_match_the_request_are_refused_and_the_request_fails(tmp_path, data, board):
    queue, api, filed = board
    asked = api.request_evaluation(str(_local_model(tmp_path)))
    runner = _fake_runner(revision="c" * 40)  # a provenance claiming another commit
    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), once=True, runner=runner) == 1
    failed = queue.get(asked["request_id"])
    assert failed.status == "failed" and not filed
    assert failed.reason.startswith("the leaderboard refused the answers: provenance model.revision: 'ccc")


def test_out_of_memory_is_named(tmp_path, data, board):
    queue, api, _ = board
    asked = api.request_evaluation(str(_local_model(tmp_path)))
    log = "loading\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB.\n"
    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), once=True, runner=_fake_runner(log, code=1)) == 1
    assert queue.get(asked["request_id"]).reason == ("out of memory: torch.OutOfMemoryError: CUDA out of memory. "
                                                     "Tried to allocate 20.00 GiB.")


def test_an_unusable_claim_fails_the_request(tmp_path, data, board):
    queue, api, _ = board
    asked = api.request_evaluation(str(_local_model(tmp_path)))
    transport = LocalTransport(api)
    claim = transport.claim("w")
    claim["frames"]["fps"] = -1
    assert worker.handle(transport, _cfg(tmp_path, data), claim) == "failed"
    assert queue.get(asked["request_id"]).reason == "worker test-worker: claim field 'frames.fps': unusable value -1"


def test_the_worker_token_and_an_unreachable_leaderboard(tmp_path, data, board, capsys):
    _, api, _ = board
    assert worker.serve(LocalTransport(api, token="wrong"), _cfg(tmp_path, data), once=True) == 2
    assert capsys.readouterr().err.strip() == "error: the leaderboard refused this worker: wrong worker token"

    class Down:
        def claim(self, name):
            raise Unreachable("ConnectError: connection refused")

    assert worker.serve(Down(), _cfg(tmp_path, data), once=True) == 1
    assert "error: cannot reach the leaderboard: ConnectError: connection refused" in capsys.readouterr().err
    naps = []
    with pytest.raises(KeyboardInterrupt):  # the loop waits and tries again
        worker.serve(Down(), _cfg(tmp_path, data), sleep=lambda s: naps.append(s) or (len(naps) > 2 and _stop()))
    assert naps == [0.01, 0.01, 0.01]


def _stop():
    raise KeyboardInterrupt


def test_predict_command(tmp_path, data):
    job = worker.Job(request_id=3, lease="l", lease_seconds=600, model="Qwen/Qwen2-VL-2B-Instruct", commit="a" * 40,
                     frames="paper-448px", fps=10.0, max_frames=96, max_pixels=200704, attempt=1)
    cfg = _cfg(tmp_path, data)
    one = worker.predict_command(job, cfg, tmp_path / "o.jsonl")
    assert one[1:5] == ["-m", "crashchat", "predict", "--model"] and one[5] == f"hf:Qwen/Qwen2-VL-2B-Instruct@{'a' * 40}"
    assert one[one.index("--max-pixels") + 1] == "200704" and one[one.index("--fps") + 1] == "10"
    cfg.gpus = 4
    four = worker.predict_command(job, cfg, tmp_path / "o.jsonl")
    assert four[1:6] == ["-m", "accelerate.commands.launch", "--num_processes", "4", "-m"] and four[6:8] == [
        "crashchat", "predict"]


def test_a_worker_without_every_clip_does_not_start(tmp_path, data, capsys):
    assert worker.main(["--url", "http://127.0.0.1:9", "--token", "t", "--split-dir", str(data[0]),
                        "--videos-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {len(READABLE)} of the split's {len(READABLE)} clips are not in {tmp_path}")
    assert err.count("\n") == 1 and "crashchat data fetch" in err


def test_gradio_transport_is_thin(tmp_path):
    from gradio_client.exceptions import AppError

    calls = []

    class Client:
        def __init__(self, url):
            self.url = url

        def predict(self, *args, api_name):
            calls.append((api_name, args))
            if api_name == "/renew_evaluation":
                raise AppError("request #3: not held by this lease")
            if api_name == "/fail_evaluation":
                raise ConnectionError("connection reset\nby peer")
            return {"request_id": 3} if api_name != "/claim_evaluation" else None

    made = []
    transport = worker.GradioTransport("http://space", "tok", client_factory=lambda url: made.append(url) or Client(url))
    assert transport.claim("w") == {}
    with pytest.raises(Refused, match="request #3: not held by this lease"):
        transport.renew(3, "lease")
    with pytest.raises(Unreachable, match="ConnectionError: connection reset by peer"):
        transport.fail(3, "lease", "why")
    sent = [tmp_path / "p.jsonl", tmp_path / "p.jsonl.meta.json"]
    for f in sent:
        f.write_text("{}")
    transport.finish(3, "lease", sent, {"worker": "w"})
    assert [c[0] for c in calls] == ["/claim_evaluation", "/renew_evaluation", "/fail_evaluation", "/finish_evaluation"]
    assert calls[0][1] == ("tok", "w") and calls[2][1] == ("tok", 3, "lease", "why")
    files = calls[3][1][3]
    assert [f["path"] for f in files] == [str(f) for f in sent] and calls[3][1][4] == {"worker": "w"}
    assert made == ["http://space", "http://space"]  # reconnected after the failed call


def test_the_contract_in_the_docstring_is_what_the_server_implements():
    """Every endpoint `crashchat/worker.py` documents is an `EvaluationAPI` method taking those arguments."""
    documented = re.findall(r"^\s+/(\w+)\(([^)]*)\)", worker.__doc__, flags=re.M)
    assert {name for name, _ in documented} == {"request_evaluation", "evaluation_queue", "claim_evaluation",
                                                "renew_evaluation", "finish_evaluation", "fail_evaluation"}
    for name, args in documented:
        wanted = [a.strip() for a in args.split(",") if a.strip()]
        params = list(inspect.signature(getattr(EvaluationAPI, name)).parameters)[1:]
        assert params[:len(wanted)] == wanted, name


def test_an_unexpected_error_fails_the_request_and_the_worker_goes_on(tmp_path, data, board):
    queue, api, _ = board
    first = api.request_evaluation(str(_local_model(tmp_path, "a")))
    second = api.request_evaluation(str(_local_model(tmp_path, "b")))

    def broken_runner(command, log_path, *, timeout_s, stop):
        if "attempt" in str(log_path) and "request-1-" in str(log_path):
            raise OSError(28, "No space left on device")
        return _fake_runner()(command, log_path, timeout_s=timeout_s, stop=stop)

    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), until_empty=True, runner=broken_runner) == 0
    assert queue.get(first["request_id"]).reason == "worker test-worker: OSError: [Errno 28] No space left on device"
    assert queue.get(second["request_id"]).status == "finished"


def test_clips_that_do_not_decode_here_fail_the_request_not_the_model(tmp_path, data, board):
    queue, api, filed = board
    asked = api.request_evaluation(str(_local_model(tmp_path)))
    runner = _fake_runner(unreadable=("c0.mp4", "n1.mp4"))
    assert worker.serve(LocalTransport(api), _cfg(tmp_path, data), once=True, runner=runner) == 1
    assert not filed and queue.get(asked["request_id"]).reason == (
        "worker test-worker: 2 videos could not be read on this machine (c0.mp4, n1.mp4); not the model's fault: "
        "ask again")
